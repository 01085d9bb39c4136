"""The only HTTP client, and the reader of local feed files.

Timeouts, a body size cap enforced while streaming, gzip/deflate, redirects with a cap,
and a User-Agent that names the project. Decoding of the *text* is ``encoding``'s job:
this module hands on bytes and headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from aggregator import __version__
from aggregator.errors import FetchError

USER_AGENT = f"aggregator/{__version__} (+self-hosted feed aggregator)"
MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched document."""

    url: str  # the final URL, after redirects
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


class Fetcher:
    """Fetches sources; one instance shares its connection pools across sources.

    Args:
        timeout: seconds for connecting and for each read.
        max_bytes: the largest body accepted; a larger one is a FetchError.
        user_agent: overrides the default User-Agent.
    """

    def __init__(
        self,
        timeout: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
        user_agent: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=4,
            headers={"User-Agent": user_agent or USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=urllib3.Retry(
                total=None,
                connect=0,
                read=0,
                status=0,
                redirect=MAX_REDIRECTS,
                raise_on_redirect=True,
            ),
        )

    def fetch(self, url: str) -> Fetched:
        """Fetch an http(s) URL or read a local file.

        Raises:
            FetchError: unreachable, timed out, an HTTP error status, too large, or a
                missing or unreadable file.
        """
        if url.startswith(("http://", "https://")):
            return self._fetch_http(url)
        return self._read_file(url)

    def _read_file(self, path: str) -> Fetched:
        file = Path(path)
        try:
            with file.open("rb") as f:
                body = f.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(path, f"cannot read file: {exc.strerror or exc}") from exc
        if len(body) > self.max_bytes:
            raise FetchError(path, f"file is larger than the {self.max_bytes}-byte limit")
        return Fetched(url=path, body=body)

    def _fetch_http(self, url: str) -> Fetched:
        try:
            response = self.pool.request(
                "GET",
                url,
                preload_content=False,
                decode_content=True,
                headers={
                    **self.pool.headers,
                    "Accept": "application/rss+xml, application/atom+xml, "
                    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
                },
            )
        except Urllib3Error as exc:
            raise FetchError(url, f"cannot fetch: {exc}") from exc
        try:
            if response.status >= 400:
                raise FetchError(url, f"HTTP {response.status} {response.reason or ''}".strip())
            chunks: list[bytes] = []
            size = 0
            for chunk in response.stream(64 * 1024):
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(url, f"body is larger than the {self.max_bytes}-byte limit")
                chunks.append(chunk)
        except Urllib3Error as exc:
            raise FetchError(url, f"cannot read the response: {exc}") from exc
        finally:
            response.release_conn()
        final = response.geturl() or url
        return Fetched(
            url=str(final),
            body=b"".join(chunks),
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
        )

    def close(self) -> None:
        """Close pooled connections."""
        self.pool.clear()
