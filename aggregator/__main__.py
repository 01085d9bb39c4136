"""The ``aggregator`` command's entry point (also ``python -m aggregator``).

The stop handlers go in before the command line module is imported: that import takes
most of a second (pydantic, SQLAlchemy, feedparser), and a SIGTERM or Ctrl-C arriving
meanwhile must end the process as quietly as one arriving later, not with a traceback.
"""

from __future__ import annotations

from aggregator.signals import install_stop_handlers


def main() -> None:
    """Install the stop handlers, then run the command line."""
    install_stop_handlers()
    from aggregator.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
