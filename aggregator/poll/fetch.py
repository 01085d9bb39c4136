"""The only HTTP client, and the reader of local feed files.

Timeouts (connect, read, and a total deadline), a body size cap enforced while
streaming, gzip/deflate (and brotli when installed), a User-Agent that names the project,
conditional GET (ETag / Last-Modified), redirects followed with a cap and reported, and a
per-host limit on requests at once. A source's own ``FetchOptions`` (headers, basic auth,
User-Agent, proxy) apply to its requests only; its credentials go to its own origin only.
Decoding the *text* is ``encoding``'s job: this module hands on bytes and headers.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import make_headers

from aggregator import __version__
from aggregator.errors import FetchError
from aggregator.redact import redact, redact_log_record

USER_AGENT = f"aggregator/{__version__} (+self-hosted feed aggregator)"
MAX_REDIRECTS = 5
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)

# urllib3 decodes "br" by itself when a brotli module is importable.
ACCEPT_ENCODING = "gzip, deflate, br" if find_spec("brotli") else "gzip, deflate"

# urllib3's loggers quote request paths, query strings (tokens) included.
URLLIB3_LOGGERS = (
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
)


@dataclass(frozen=True, slots=True)
class Redirect:
    """One redirect on the way to the final URL."""

    status: int  # 301, 302, 303, 307 or 308
    source: str
    target: str

    @property
    def permanent(self) -> bool:
        """True for 301/308: the feed has moved and the config should say so."""
        return self.status in (301, 308)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched document (or a 304: not modified, no body)."""

    url: str  # the final URL, after redirects
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    redirects: tuple[Redirect, ...] = ()
    duration: float = 0.0  # seconds

    @property
    def not_modified(self) -> bool:
        """True for a 304 answer to a conditional GET."""
        return self.status == 304

    @property
    def moved_to(self) -> str | None:
        """Where a permanent redirect points, if the way here had one."""
        return next((r.target for r in reversed(self.redirects) if r.permanent), None)


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """How one source is fetched, besides the global settings (its config's fetch options).

    The secret fields are left out of the repr: an options object in a traceback or a log
    line shows that they are set, not what they are.
    """

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    user_agent: str | None = None
    proxy: str | None = field(default=None, repr=False)  # its URL, login included

    def credentials(self) -> dict[str, str]:
        """The headers that go to the source's own origin only: all of ``headers`` (a
        custom header is a credential more often than not: Cookie, Authorization,
        X-Api-Key...) and the basic auth."""
        sent = dict(self.headers)
        if self.username is not None:
            login = f"{self.username}:{self.password or ''}"
            sent.update(make_headers(basic_auth=login))
        return sent

    def secrets(self) -> tuple[str, ...]:
        """Every secret value these options hold or send, to mask in error texts."""
        values = [value for _, value in self.headers]
        values += [v for v in (self.username, self.password) if v]
        if self.username is not None:
            values.append(self.credentials()["authorization"].removeprefix("Basic "))
        if self.proxy:  # its address too: where a source is fetched from is the owner's
            parts = urlsplit(self.proxy)
            values += [self.proxy, *(v for v in (parts.username, parts.password) if v)]
            values += [parts.netloc.rpartition("@")[2], parts.hostname or ""]
        return tuple(v for v in values if v)


NO_OPTIONS = FetchOptions()


def same_origin(configured: str, target: str) -> bool:
    """True when the credentials for ``configured`` may go to ``target``.

    The same host and port under the same scheme, or the step from http on port 80 up to
    https on port 443 of the same host; never another host, another port, or a step down
    from https to http (the credentials would cross the network in clear).
    """
    try:
        first, then = urlsplit(configured), urlsplit(target)
        first_port, then_port = first.port, then.port
    except ValueError:
        return False
    if (first.hostname or "").lower() != (then.hostname or "").lower():
        return False
    ports = {"http": 80, "https": 443}
    first_port = first_port or ports.get(first.scheme.lower())
    then_port = then_port or ports.get(then.scheme.lower())
    schemes = (first.scheme.lower(), then.scheme.lower())
    if schemes[0] == schemes[1]:
        return first_port == then_port
    return schemes == ("http", "https") and (first_port, then_port) == (80, 443)


def field_value(value: str) -> str:
    """A response header's value (or the status line's reason) with each NUL, CR and LF
    replaced by a space, as RFC 9110 §5.5 tells a recipient to before processing it:
    an ETag or a Location goes into the index, and PostgreSQL's text cannot hold a NUL
    (the source's state, and the poll, would fail to be stored there)."""
    return value.translate(_FIELD_CONTROLS)


_FIELD_CONTROLS = {0x00: " ", 0x0A: " ", 0x0D: " "}


class Fetcher:
    """Fetches sources; one instance shares its connection pools across threads.

    Args:
        timeout: seconds for connecting and for each read.
        max_bytes: the largest body accepted; a larger one is a FetchError.
        user_agent: overrides the default User-Agent.
        total_timeout: seconds for the whole response, however it trickles in.
        per_host: requests at once to one host (politeness: a thousand RSSHub routes on
            one host are never fetched all at once).
        block_private: refuse hosts that resolve to private, loopback, link-local or
            otherwise non-public addresses, at every redirect too (SSRF).
        file_roots: local files may only be read under these folders (None: anywhere).
        is_blocked: which addresses ``block_private`` refuses (tests narrow it).
    """

    def __init__(
        self,
        timeout: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
        user_agent: str | None = None,
        *,
        total_timeout: float | None = None,
        per_host: int = 2,
        block_private: bool = False,
        file_roots: Sequence[str] | None = None,
        is_blocked: Callable[[IPAddress], bool] | None = None,
    ) -> None:
        self.timeout = timeout
        self.total_timeout = total_timeout if total_timeout is not None else timeout * 4
        self.max_bytes = max_bytes
        self.per_host = per_host
        self.block_private = block_private
        self.is_blocked = is_blocked or is_private_address
        self.file_roots = None if file_roots is None else [Path(r).resolve() for r in file_roots]
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        for name in URLLIB3_LOGGERS:
            logging.getLogger(name).addFilter(redact_log_record)  # added once: a set
        self._pool_options: dict[str, Any] = {
            "maxsize": max(per_host, 1),
            "headers": {
                "User-Agent": user_agent or USER_AGENT,
                "Accept-Encoding": ACCEPT_ENCODING,
                "Accept": ACCEPT,
            },
            "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        }
        self.pool = urllib3.PoolManager(num_pools=256, **self._pool_options)
        # One manager per proxy URL, made on first use: a proxy is some sources' only.
        self._proxied: dict[str, urllib3.PoolManager] = {}

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        """The semaphore that limits requests at once to the URL's host."""
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError as exc:
            raise FetchError(url, f"invalid URL: {exc}") from exc
        slot = self._slots.get(host)
        if slot is None:
            with self._slots_lock:
                slot = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        return slot

    def _manager(self, proxy: str | None) -> urllib3.PoolManager:
        """The connection manager for requests through ``proxy`` (None: direct)."""
        if proxy is None:
            return self.pool
        with self._slots_lock:
            manager = self._proxied.get(proxy)
            if manager is None:
                manager = self._proxied[proxy] = proxy_manager(proxy, self._pool_options)
            return manager

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        options: FetchOptions = NO_OPTIONS,
        origin: str | None = None,
    ) -> Fetched:
        """Fetch an http(s) URL (conditionally, when validators are given) or read a file.

        Args:
            options: the source's own headers, login, User-Agent and proxy.
            origin: the URL whose origin the options' credentials belong to (the source's
                feed, when ``url`` is one of its entries' pages); default: ``url``.

        Raises:
            FetchError: unreachable, timed out, an HTTP error status (with ``status`` and
                ``retry_after`` set), too large, or a missing or unreadable file. Its text
                never holds one of the options' secrets.
        """
        if not url.startswith(("http://", "https://")):
            return self._read_file(url)
        secrets = options.secrets()
        try:
            with self._host_slot(url):
                fetched = self._fetch_http(url, etag, last_modified, options, origin or url)
        except FetchError as exc:
            if not secrets:
                raise
            # Whatever a library put in its message (a proxy URL, an echoed header).
            raise FetchError(
                exc.url,
                redact(exc.message, secrets),
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None
        if secrets and fetched.redirects:
            # A redirect is shown as a suggested config edit (moved_to): one that echoes
            # a credential into its path must not show it.
            masked = tuple(
                Redirect(r.status, redact(r.source, secrets), redact(r.target, secrets))
                for r in fetched.redirects
            )
            fetched = replace(fetched, redirects=masked)
        return fetched

    def _read_file(self, path: str) -> Fetched:
        start = time.perf_counter()
        try:
            fd = open_within(path, self.file_roots)
        except OSError as exc:
            raise FetchError(path, f"cannot read file: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "rb") as f:
                body = f.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(path, f"cannot read file: {exc.strerror or exc}") from exc
        if len(body) > self.max_bytes:
            raise FetchError(path, f"file is larger than the {self.max_bytes}-byte limit")
        return Fetched(url=path, body=body, duration=time.perf_counter() - start)

    def _fetch_http(
        self,
        url: str,
        etag: str | None,
        last_modified: str | None,
        options: FetchOptions,
        origin: str,
    ) -> Fetched:
        start = time.perf_counter()
        manager = self._manager(options.proxy)
        headers = dict(self.pool.headers)
        if options.user_agent:
            headers["User-Agent"] = options.user_agent
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        credentials = options.credentials()
        redirects: list[Redirect] = []
        current = url
        # Redirects are followed here, not by urllib3, so every hop is checked (private
        # addresses, schemes) and recorded, and the credentials go only where they belong.
        while True:
            self._check_target(current)
            sent = {**headers, **credentials} if same_origin(origin, current) else headers
            try:
                response = manager.request(
                    "GET",
                    current,
                    headers=sent,
                    preload_content=False,
                    decode_content=True,
                    retries=False,
                    redirect=False,
                )
            except Urllib3Error as exc:
                raise FetchError(url, f"cannot fetch: {exc}") from exc
            location = field_value(response.headers.get("Location") or "")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                break
            response.drain_conn()
            response.release_conn()
            try:
                target = urljoin(current, location.strip())
            except ValueError as exc:
                raise FetchError(url, f"invalid redirect location {location!r}") from exc
            if len(redirects) >= MAX_REDIRECTS:
                raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")
            if not target.startswith(("http://", "https://")):
                raise FetchError(url, f"redirect to a non-http URL refused: {target}")
            redirects.append(Redirect(response.status, current, target))
            current = target
        final = current
        response_headers = {k.lower(): field_value(v) for k, v in response.headers.items()}
        try:
            if response.status >= 400:
                # The error page is not read, so its connection cannot be reused: closed
                # now, not when the traceback that holds the response is collected.
                response.close()
                raise FetchError(
                    url,
                    f"HTTP {response.status} {field_value(response.reason or '')}".strip(),
                    status=response.status,
                    retry_after=retry_after_seconds(response_headers.get("retry-after")),
                )
            body = b""
            if response.status != 304:
                body = self._read_body(url, response, start)
        except Urllib3Error as exc:
            raise FetchError(url, f"cannot read the response: {exc}") from exc
        finally:
            response.release_conn()
        return Fetched(
            url=str(final),
            body=body,
            status=response.status,
            headers=response_headers,
            redirects=tuple(redirects),
            duration=time.perf_counter() - start,
        )

    def _check_target(self, url: str) -> None:
        """Refuse a URL whose host resolves to a private address (when so configured)."""
        if not self.block_private:
            return
        try:
            host = urlsplit(url).hostname or ""
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError) as exc:
            raise FetchError(url, f"cannot resolve {host!r}: {exc}") from exc
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if self.is_blocked(address):
                raise FetchError(
                    url,
                    f"refused: {host} resolves to {address}, a private or local address "
                    "(settings.fetch.block_private_addresses)",
                )

    def _read_body(self, url: str, response: urllib3.BaseHTTPResponse, start: float) -> bytes:
        # A read waits for a whole chunk, and every byte that arrives restarts the read
        # timeout: a server trickling a byte a second trips neither. So at the deadline a
        # timer shuts the socket down, which ends the read in progress.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            response.shutdown()

        timer = threading.Timer(
            max(0.0, self.total_timeout - (time.perf_counter() - start)), expire
        )
        timer.daemon = True
        timer.start()
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.stream(64 * 1024):
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(url, f"body is larger than the {self.max_bytes}-byte limit")
                if expired.is_set():
                    break
                chunks.append(chunk)
        except (Urllib3Error, OSError):
            if not expired.is_set():
                raise
        finally:
            timer.cancel()
        if expired.is_set():  # what was read so far may look whole, and is not
            raise FetchError(url, f"response took longer than {self.total_timeout:g} s")
        return b"".join(chunks)

    def close(self) -> None:
        """Close pooled connections."""
        self.pool.clear()
        with self._slots_lock:
            for manager in self._proxied.values():
                manager.clear()


def proxy_manager(proxy: str, pool_options: dict[str, Any]) -> urllib3.PoolManager:
    """A connection manager that sends every request through ``proxy``.

    An http(s) proxy's login goes in a Proxy-Authorization header (urllib3 does not read it
    from the URL), and the URL it keeps is without it; a socks proxy (PySocks) takes it
    from the URL.
    """
    parts = urlsplit(proxy)
    scheme = parts.scheme.lower()
    if scheme.startswith("socks"):
        from urllib3.contrib.socks import SOCKSProxyManager  # needs PySocks

        return SOCKSProxyManager(proxy, num_pools=64, **pool_options)
    proxy_headers: dict[str, str] = {}
    if parts.username is not None:
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        proxy_headers = make_headers(proxy_basic_auth=login)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return urllib3.ProxyManager(bare, num_pools=64, proxy_headers=proxy_headers, **pool_options)


def open_within(path: str, roots: Sequence[Path] | None) -> int:
    """Open a local feed file for reading; its descriptor, once it is known to be allowed.

    Raises:
        FetchError: not a regular file, or outside ``roots`` (None: anywhere is allowed).
        OSError: it cannot be opened.
    """
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer, forever. (Python
    # opens descriptors close-on-exec already: workers never inherit it.)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        check_opened(fd, path, roots)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_opened(fd: int, path: str, roots: Sequence[Path] | None) -> None:
    """Refuse the open file ``fd`` unless it is a regular file under one of ``roots``.

    The decision is about the file actually opened, not about the path: checking the path
    and then opening it would let a folder swapped for a symlink in between lead outside
    the roots. Here the path is resolved after the open, checked, and must name the very
    file that is open (same device and inode): a swap before the open changes the file
    opened, a swap after it changes what the path names; either way they differ.

    Raises:
        FetchError: not a regular file, or not the file the path resolves to under
            ``roots``.
    """
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        raise FetchError(path, "refused: not a regular file")
    if roots is None:
        return
    real = Path(path).resolve()
    inside = any(real.is_relative_to(root) for root in roots)
    if not inside or not os.path.samestat(opened, real.stat()):
        raise FetchError(path, "refused: the file is outside settings.fetch.file_roots")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_private_address(address: IPAddress) -> bool:
    """True for addresses a feed fetcher exposed to users must never reach."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delta-seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)
