"""One exception tree for the whole package.

Foreign errors (urllib3, SQLAlchemy, OSError, YAML) are translated at the boundary of
the module that met them, with ``raise ... from``, so callers only catch these.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(AggregatorError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        """Return the problems as one human-readable block, one problem a line."""
        count = len(self.problems)
        head = f"{self.path}: {count} problem{'s' if count != 1 else ''}"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


class SourceError(AggregatorError):
    """Something went wrong with one source; carries its URL."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.message = message
        super().__init__(f"{url}: {message}")


class FetchError(SourceError):
    """The source could not be fetched (network, HTTP status, size cap, missing file)."""

    def __init__(
        self,
        url: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(url, message)
        self.status = status  # the HTTP status, when the server answered with an error
        self.retry_after = retry_after  # seconds, from a Retry-After header


class ParseError(SourceError):
    """The fetched document is not a usable feed."""


class StoreError(AggregatorError):
    """The database or the article folder could not be read or written."""


class LocalFaultError(StoreError):
    """Our own disk or database refused a write (full, read-only, over quota, I/O error,
    damaged): the service's problem, not the source's, so no source is blamed for it."""
