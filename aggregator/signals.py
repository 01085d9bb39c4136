"""How every command stops on SIGTERM and SIGINT: cleanly once, at once the second time.

The first signal raises ``Interrupted`` in the main thread, wherever it is, so ``with``
blocks and ``finally`` clauses clean up as they do on Ctrl-C: process pools shut down,
polls already in flight end and are recorded, the store is closed. A second signal
while that cleanup runs ends the process on the spot: the way out when the cleanup waits
on something stuck (a source that never answers). Either way the exit status is
128 + the signal's number, as a shell reports a process killed by it; ``run`` and
``serve`` exit 0 instead, since a signal is how they are meant to stop.

``main`` installs the handlers before it does anything else, so a signal that arrives
during start-up ends the process the same way (and before any child process exists).
"""

from __future__ import annotations

import os
import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(SystemExit):
    """Raised in the main thread by the first SIGTERM or SIGINT.

    A SystemExit, because waitress's loop (asyncore) lets only SystemExit and
    KeyboardInterrupt out of a connection's handler: any other exception raised while a
    request is being handled would be logged and swallowed, and the server kept running.
    It is not a KeyboardInterrupt, which click turns into "Aborted!" and exit status 1.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)


def install_stop_handlers() -> None:
    """Make SIGTERM and SIGINT raise ``Interrupted`` once, then exit at once."""
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        # os.write, not print or logging: the interrupted code may be inside either.
        if received:
            os.write(2, f"{name} again: exiting now, without waiting\n".encode())
            os._exit(128 + signum)
        received.append(signum)
        os.write(2, f"{name}: shutting down (send it again to stop at once)\n".encode())
        raise Interrupted(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
