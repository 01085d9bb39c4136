"""Telling the site that articles changed: ``on_change`` commands and webhooks.

After a pass that wrote or deleted article files, the ``settings.hooks.on_change``
commands run (``hexo generate``, ``hugo``, a git commit and push), one after the other,
in ``hooks.cwd``, with the changed paths in a file named by ``$AGGREGATOR_CHANGED_FILE``.
In ``aggregator run`` they are debounced: runs start at least ``debounce`` seconds apart,
and changes that arrive while a run goes on or inside that window are passed on by
exactly one later run, so the last pass is always followed by one. A command that fails
or hangs (killed with its process group at ``timeout``) is recorded, and polling goes
on: the commands run in a thread of their own, never in a poll's.

``settings.hooks.webhooks`` get a JSON document of the new and updated entries, POSTed
from another thread, signed like Miniflux's webhooks (hex HMAC-SHA256 of the body with
the secret, here in ``X-Aggregator-Signature``), retried with exponential backoff.
Webhook URLs are the owner's own and are not held to ``block_private_addresses``: a
receiver on localhost (a local CI) is the usual case.

Every command run and delivery is recorded in the index (``Store.record_hook_run``) for
the dashboard. Stopping kills a running command's process group and waits for neither
a pending run nor a pending delivery: what they would have told is logged as dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import urllib3

from aggregator import __version__
from aggregator.config import HooksSettings, WebhookConfig
from aggregator.models import Changes, EntryChange, Person, byline
from aggregator.redact import redact
from aggregator.store import Store
from aggregator.store.records import HookRun

log = logging.getLogger(__name__)

OUTPUT_MAX = 16 * 1024  # bytes of a command's output kept (its last ones)
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a command's process group
WEBHOOK_TIMEOUT = 30.0  # seconds for a webhook's connect, and for its answer
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})  # worth another try
SIGNATURE_HEADER = "X-Aggregator-Signature"
EVENT_HEADER = "X-Aggregator-Event-Type"

Command = str | Sequence[str]


def command_text(command: Command) -> str:
    """A command as the dashboard shows it (an argv list quoted for the shell)."""
    return command if isinstance(command, str) else shlex.join(command)


def _now() -> datetime:
    return datetime.now(UTC)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """End a command and everything it started in its process group: TERM, then KILL."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace)
            # The leader is gone; what it started in its group may not be.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(
    command: Command,
    *,
    cwd: str,
    env: dict[str, str],
    timeout: float,
    stop: threading.Event | None = None,
    files: int = 0,
) -> HookRun:
    """Run one command to its end, its timeout or ``stop``; never raises for its failure.

    A string runs through ``/bin/sh -c``, a list is the program and its arguments. It
    gets a session (so a process group) of its own: Ctrl-C at the terminal does not
    reach it, and a timeout or a stop kills all of it, children included.
    """
    started = _now()
    clock = time.monotonic()
    text = command_text(command)
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                command if isinstance(command, str) else list(command),
                shell=isinstance(command, str),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return HookRun(
                "command",
                text,
                started,
                time.monotonic() - clock,
                False,
                files=files,
                error=str(exc),
            )
        error = None
        try:
            deadline = clock + timeout
            while True:
                try:
                    process.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if stop is not None and stop.is_set():
                    error = "stopped: the service is shutting down"
                    break
                if time.monotonic() >= deadline:
                    error = f"timed out after {timeout:g} s: killed"
                    break
        finally:
            if process.returncode is None:
                if error is None:
                    error = "interrupted: killed"
                _kill_group(process)
        output.seek(0, os.SEEK_END)
        size = output.tell()
        output.seek(max(0, size - OUTPUT_MAX))
        # Output is kept as text: a NUL is no more text than invalid UTF-8 (and
        # PostgreSQL's text cannot hold one: the run would go unrecorded there).
        tail = output.read().decode("utf-8", "replace").replace("\x00", "\ufffd")
    code = process.returncode
    if error is None and code != 0:
        error = f"exit status {code}"
    return HookRun(
        kind="command",
        target=text,
        started_at=started,
        duration=time.monotonic() - clock,
        ok=error is None,
        exit_code=code,
        files=files,
        error=error,
        output=tail or None,
    )


def _person(person: Person) -> dict[str, str]:
    fields = (("name", person.name), ("email", person.email), ("url", person.url))
    return {key: value for key, value in fields if value}


def webhook_document(entries: Sequence[EntryChange], sent_at: datetime) -> bytes:
    """The JSON document a webhook receives (UTF-8)."""
    return json.dumps(
        {
            "event_type": "entries",
            "sent_at": sent_at.isoformat(timespec="seconds"),
            "entries": [
                {
                    "change": e.kind,
                    "uid": e.uid,
                    "source": e.source,
                    "title": e.title,
                    "link": e.link,
                    "byline": byline(e.authors),
                    "authors": [
                        {
                            k: v
                            for k, v in (("name", a.name), ("email", a.email), ("url", a.url))
                            if v
                        }
                        for a in e.authors
                    ],
                    "categories": list(e.categories),
                    "tags": list(e.tags),
                    "date": e.date.isoformat(),
                    "path": e.path,
                }
                for e in entries
            ],
        },
        ensure_ascii=False,
    ).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The ``X-Aggregator-Signature`` of a body: hex HMAC-SHA256 with the secret as key."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def deliver(
    http: urllib3.PoolManager,
    webhook: WebhookConfig,
    body: bytes,
    *,
    retries: int,
    backoff: float,
    entries: int = 0,
    stop: threading.Event | None = None,
) -> HookRun:
    """POST a document to a webhook, retrying a failure ``retries`` times with backoff
    (``backoff`` s, then twice that, and so on). A 2xx answer is success; a redirect or
    another 4xx than 408, 425 and 429 fails at once (asking again would not help)."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"aggregator/{__version__}",
        EVENT_HEADER: "entries",
    }
    if webhook.secret:
        headers[SIGNATURE_HEADER] = signature(webhook.secret, body)
    started = _now()
    clock = time.monotonic()
    status: int | None = None
    error: str | None = None
    attempt = 0
    while True:
        attempt += 1
        try:
            response = http.request(
                "POST",
                webhook.url,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=WEBHOOK_TIMEOUT, read=WEBHOOK_TIMEOUT),
            )
            status = response.status
            error = None if 200 <= status < 300 else f"HTTP {status}"
            retry = status in RETRY_STATUSES
        except urllib3.exceptions.HTTPError as exc:
            status, error, retry = None, redact(str(exc)), True
        if error is None or not retry or attempt > retries:
            break
        if (stop or threading.Event()).wait(backoff * 2 ** (attempt - 1)):
            error += "; stopped before the next attempt"
            break
    return HookRun(
        kind="webhook",
        target=redact(webhook.url),
        started_at=started,
        duration=time.monotonic() - clock,
        ok=error is None,
        exit_code=status,
        attempts=attempt,
        files=entries,
        error=error,
    )


class Hooks:
    """Runs the ``on_change`` commands and the webhooks of a service or a command.

    ``notify`` hands a pass's changes over and returns at once (the service); ``run_now``
    runs everything for one set of changes and returns when done (``aggregator poll``).

    Args:
        settings: ``settings.hooks``.
        store: where runs are recorded (and the posts folder the paths are relative to).
        on_run: called with every run recorded (the command line prints them).
    """

    def __init__(
        self,
        settings: HooksSettings,
        store: Store,
        on_run: Callable[[HookRun], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_run = on_run
        self._http = urllib3.PoolManager(num_pools=4, maxsize=1)
        self._stop = threading.Event()
        self._cond = threading.Condition()  # guards the fields below
        self._pending = Changes()  # files for the next command run
        self._entries: list[EntryChange] = []  # entries for the next deliveries
        self._running = False  # a command run is going on
        self._delivering = False  # webhook deliveries are going on
        self._last_start = float("-inf")  # monotonic time the last command run started
        self._threads: list[threading.Thread] = []

    @property
    def configured(self) -> bool:
        """True when there is a command or a webhook to tell."""
        return bool(self.settings.on_change or self.settings.webhooks)

    # -- the service ---------------------------------------------------------------------

    def notify(self, changes: Changes) -> None:
        """A pass changed these files and entries: tell the site, soon (never blocks)."""
        settings = self.settings
        with self._cond:
            if self._stop.is_set():
                return
            if settings.on_change and changes.files:
                self._pending = self._pending + changes
            if settings.webhooks and changes.entries:
                self._entries.extend(changes.entries)
            if not self._threads and (self._pending.files or self._entries):
                self._start_threads()
            self._cond.notify_all()

    def _start_threads(self) -> None:
        for name, target in (("hooks", self._command_loop), ("webhooks", self._webhook_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _command_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop.is_set():
                    wait = self._last_start + self.settings.debounce - time.monotonic()
                    if self._pending.files and wait <= 0:
                        break
                    self._cond.wait(wait if self._pending.files else None)
                if self._stop.is_set():
                    return
                changes, self._pending = self._pending, Changes()
                self._running = True
                self._last_start = time.monotonic()
            try:
                self._run_commands(changes)
            except Exception:  # a bug here must not end the thread: the next pass may run
                log.exception("hooks: running the on_change commands failed")
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _webhook_loop(self) -> None:
        while True:
            with self._cond:
                while not self._entries and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                entries, self._entries = self._entries, []
                self._delivering = True
            try:
                self._deliver_all(entries)
            except Exception:
                log.exception("hooks: webhook delivery failed")
            finally:
                with self._cond:
                    self._delivering = False  # webhook deliveries are going on
                    self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or running (tests, and a command's end)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    not (self._running or self._delivering or self._entries or self._pending.files)
                ),
                timeout,
            )

    def close(self, timeout: float = KILL_GRACE + 3.0) -> None:
        """Stop: kill a running command's process group, drop what is pending."""
        with self._cond:
            self._stop.set()
            dropped = len(self._pending.files), len(self._entries)
            self._cond.notify_all()
        if any(dropped):
            log.warning("hooks: stopping; %d changed files and %d entries not passed on", *dropped)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._http.clear()

    # -- running ---------------------------------------------------------------------------

    def run_now(self, changes: Changes) -> list[HookRun]:
        """Run the commands (if files changed) and the webhooks (if entries did), now."""
        runs: list[HookRun] = []
        if self.settings.on_change and changes.files:
            runs += self._run_commands(changes)
        if self.settings.webhooks and changes.entries:
            runs += self._deliver_all(list(changes.entries))
        return runs

    def _run_commands(self, changes: Changes) -> list[HookRun]:
        settings = self.settings
        files = changes.files
        posts_dir = str(self.store.files.posts_dir)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", prefix="aggregator-changed-", suffix=".txt", delete=False
        ) as listing:
            listing.write("".join(f"{path}\n" for path in files))
        new = sum(1 for e in changes.entries if e.kind == "new")
        env = {
            **os.environ,
            "AGGREGATOR_NEW": str(new),
            "AGGREGATOR_UPDATED": str(len(changes.entries) - new),
            "AGGREGATOR_CHANGED_FILE": listing.name,
            "AGGREGATOR_POSTS_DIR": posts_dir,
            "AGGREGATOR_CHANGED": str(len(files)),
            "AGGREGATOR_WRITTEN": str(len(set(changes.written))),
            "AGGREGATOR_DELETED": str(len(set(changes.deleted))),
        }
        runs = []
        try:
            for command in settings.on_change:
                if self._stop.is_set():
                    break
                run = run_command(
                    command,
                    cwd=settings.cwd,
                    env=env,
                    timeout=settings.timeout,
                    stop=self._stop,
                    files=len(files),
                )
                self._record(run)
                runs.append(run)
        finally:
            with contextlib.suppress(OSError):
                Path(listing.name).unlink()
        return runs

    def _deliver_all(self, entries: list[EntryChange]) -> list[HookRun]:
        body = webhook_document(entries, _now())
        runs = []
        for webhook in self.settings.webhooks:
            if self._stop.is_set():
                break
            run = deliver(
                self._http,
                webhook,
                body,
                retries=self.settings.retries,
                backoff=self.settings.backoff,
                entries=len(entries),
                stop=self._stop,
            )
            self._record(run)
            runs.append(run)
        return runs

    def _record(self, run: HookRun) -> None:
        level = logging.INFO if run.ok else logging.WARNING
        log.log(
            level,
            "hook kind=%s target=%r ok=%s code=%s attempts=%d ms=%d%s",
            run.kind,
            run.target,
            str(run.ok).lower(),
            run.exit_code if run.exit_code is not None else "-",
            run.attempts,
            round(run.duration * 1000),
            f" error={run.error!r}" if run.error else "",
        )
        try:
            self.store.record_hook_run(run)
        except Exception:  # a full disk must not end the hooks' thread
            log.exception("hooks: cannot record a run")
        if self.on_run is not None:
            self.on_run(run)
