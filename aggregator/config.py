"""Load ``config.yaml`` once, validate all of it, and report every problem with its line.

The YAML is read with the safe loader; the node tree gives each key's line, so a
problem reads ``config.yaml:14: sources[2].categories: …``. Unknown keys are errors: a
typo must not be silently ignored.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import glob
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aggregator.content.clean import compile_selector
from aggregator.content.convert import AuthorStyle, DateStyle
from aggregator.content.filter import Action, Match, Rule, RuleField
from aggregator.errors import ConfigError

DEFAULT_IFRAME_HOSTS = (
    "www.youtube.com",
    "www.youtube-nocookie.com",
    "player.vimeo.com",
    "player.bilibili.com",
    "v.qq.com",
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: object) -> object:
    """Accept 90, 90.5, "90s", "30m", "2h", "1d" as seconds."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text and text[-1] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
            return float(text[:-1]) * _UNITS[text[-1]]
        if text.replace(".", "", 1).isdigit():
            return float(text)
        raise ValueError(f"{value!r} is not a duration (use seconds, or e.g. 90s, 30m, 2h, 1d)")
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


def _no_slash(value: str) -> str:
    if "/" in value:
        raise ValueError(
            f"a category name cannot contain '/' (it separates levels in URLs): {value!r}"
        )
    return value


def _category_path(value: object) -> object:
    """A category path given as a list, or as one string with levels separated by '/'."""
    if isinstance(value, str):
        return [part.strip() for part in value.split("/") if part.strip()]
    return value


#: A category path's most bytes in UTF-8, its levels and their separators counted: the
#: index keeps it whole in B-tree entries, which hold at most 2,704 bytes on PostgreSQL
#: (beside a date, or an entry's file path).
MAX_CATEGORY_BYTES = 1000


def _category_bytes(value: tuple[str, ...]) -> tuple[str, ...]:
    size = sum(len(level.encode()) for level in value) + len(value) - 1
    if size > MAX_CATEGORY_BYTES:
        raise ValueError(
            f"a category path may be at most {MAX_CATEGORY_BYTES:,} bytes in UTF-8, "
            f"this one is {size:,}: shorten its names"
        )
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CategoryName = Annotated[Name, AfterValidator(_no_slash)]
CategoryPath = Annotated[
    tuple[CategoryName, ...],
    BeforeValidator(_category_path),
    Field(min_length=1, max_length=5),
    AfterValidator(_category_bytes),
]
Positive = Annotated[int, Field(gt=0)]
MAX_BODY = 64 * 1024  # the largest request body the app reads (its forms need a few KB)
_HOST = re.compile(
    r"(?P<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's name (lowercased, IPv6 in brackets) and port; None if malformed."""
    found = _HOST.fullmatch(value.strip().lower())
    if found is None:
        return None
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    return found["name"], port


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_selectors(selectors: tuple[str, ...]) -> tuple[str, ...]:
    for selector in selectors:
        compile_selector(selector)  # raises ValueError with the reason
    return selectors


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _resolve_path(value: str, info: ValidationInfo) -> str:
    base = Path((info.context or {}).get("base_dir", "."))
    return str((base / Path(value).expanduser()).resolve())


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _database(value: str, info: ValidationInfo) -> str:
    """``settings.database``: a SQLite file's path or ``sqlite:///path`` (the path,
    resolved against the config's folder), or a PostgreSQL URL (``postgresql://`` is
    read as ``postgresql+psycopg://``: psycopg 3, the ``aggregator[postgres]`` extra).

    A message never quotes the URL: it may hold a password.
    """
    found = _URL_SCHEME.match(value)
    if not found:
        return _resolve_path(value, info)
    scheme, rest = found.group(1).lower(), value[found.end() :]
    if scheme in ("sqlite", "sqlite+pysqlite"):
        # sqlite:///relative/path, sqlite:////absolute/path: the path after the third /.
        path = rest[1:] if rest.startswith("/") else ""
        if not path or path == ":memory:":
            raise ValueError("a sqlite URL needs a file's path (sqlite:///data/index.sqlite)")
        return _resolve_path(path, info)
    if scheme in ("postgresql", "postgresql+psycopg"):
        if not urlsplit(value).path.strip("/"):
            raise ValueError("a postgresql URL needs a database name (.../aggregator)")
        return "postgresql+psycopg://" + rest
    raise ValueError(
        f"database URL scheme {scheme!r} is not supported: give a SQLite file's path, "
        "sqlite:///path, or postgresql+psycopg://user@host:port/database"
    )


def database_connections(config: Config) -> int:
    """How many database connections a process may use at once (a PostgreSQL pool's
    size): each web thread one, and the store's writer, the claim loop, the scheduler's
    reads and a health check."""
    return config.settings.server.threads + 4


def is_database_url(database: str) -> bool:
    """True when a validated ``settings.database`` is a server's URL, not a file's path."""
    return database.startswith("postgresql+psycopg://")


# Endings of feed files, not top-level domains: "feed.xml" is a file name, not a host.
_FILE_ENDINGS = frozenset({"xml", "rss", "atom", "rdf", "json", "html", "htm", "txt", "opml"})
_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _looks_like_host(value: str) -> bool:
    """True when a URL's first segment reads as a host name (``www.foo.cn/rss``).

    A feed URL pasted without its scheme once passed check-config as a relative path and
    failed at poll time as a missing file.
    """
    first = value.lstrip("/").split("/", 1)[0].split(":", 1)[0].lower()
    labels = first.split(".")
    tld = labels[-1]
    return (
        len(labels) >= 2
        and all(_HOST_LABEL.match(label) for label in labels)
        and tld.isalpha()
        and 2 <= len(tld) <= 24
        and tld not in _FILE_ENDINGS
    )


def _host_hint(value: str) -> str:
    return f"{value!r} looks like a host name; did you mean 'https://{value.lstrip('/')}'?"


class RuleConfig(_Model):
    """One keep/block rule (see ``aggregator.content.filter``)."""

    keep: str | None = None
    block: str | None = None
    field: RuleField = "title"
    match: Match = "keyword"
    case: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> RuleConfig:
        if (self.keep is None) == (self.block is None):
            raise ValueError("a rule needs exactly one of `keep:` or `block:`")
        if not (self.keep or self.block or "").strip():
            raise ValueError("a rule's pattern is empty")
        self.rule()  # an invalid regular expression is reported here
        return self

    def rule(self) -> Rule:
        """The compiled rule."""
        action: Action = "keep" if self.keep is not None else "block"
        return Rule(
            action,
            self.keep if self.keep is not None else self.block or "",
            self.field,
            self.match,
            self.case,
        )


class FrontMatter(_Model):
    """How article files are written."""

    date_style: DateStyle = "rfc822"
    timezone: str = "UTC"
    escape_braces: bool = True
    comments: bool = False
    author: AuthorStyle = "site"  # `author:` is the site (the seed's), or the entry's byline

    _zone = field_validator("timezone")(_known_zone)


class FetchSettings(_Model):
    """Limits for fetching http(s) sources."""

    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_bytes: Positive = 10 * 1024 * 1024
    max_entries: Annotated[int, Field(ge=1, le=100000)] = 500  # per document, first ones
    user_agent: str | None = None
    # Refuse hosts that resolve to private/loopback/link-local addresses, also after
    # redirects (turn on when untrusted people can add sources).
    block_private_addresses: bool = False
    # Local file sources must lie under these folders; default: the config file's folder.
    file_roots: tuple[str, ...] | None = Field(None, validate_default=True)

    @field_validator("file_roots")
    @classmethod
    def _roots(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...]:
        if value is None:
            return (str(Path((info.context or {}).get("base_dir", ".")).resolve()),)
        return tuple(_resolve_path(v, info) for v in value)


class ScheduleSettings(_Model):
    """When sources are polled by ``aggregator run``."""

    interval: Duration = 1800.0  # default for sources that do not set one
    floor: Duration = 60.0  # never more often than this, whatever a feed says
    ceiling: Duration = 86400.0  # never less often than this
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1  # ± this fraction of each delay
    backoff_cap: Duration = 6 * 3600.0  # longest delay after failures (before the ceiling)
    max_failures: Annotated[int, Field(ge=1)] = 10  # failures in a row that pause a source
    startup_spread: Annotated[float, BeforeValidator(_seconds), Field(ge=0)] = 60.0
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 100  # sources polled at once
    per_host: Annotated[int, Field(ge=1, le=64)] = 2  # requests at once to one host
    history: Annotated[int, Field(ge=1, le=10000)] = 50  # polls kept per source

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleSettings:
        if self.floor > self.ceiling:
            raise ValueError(f"floor ({self.floor:g} s) is above ceiling ({self.ceiling:g} s)")
        return self


class ServerSettings(_Model):
    """Where the web app listens, and how it shows things."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    threads: Annotated[int, Field(ge=1, le=64)] = 4
    timezone: str = "UTC"  # the dashboard shows times in this zone
    # Admin actions (refresh, pause, resume, rebuild) need this secret; none: read-only.
    # $AGGREGATOR_ADMIN_SECRET overrides it (keep secrets out of files you share).
    admin_secret: str | None = None
    # Bounds on clients (waitress's defaults let 100 idle connections lock everyone out):
    connection_limit: Annotated[int, Field(ge=10, le=10000)] = 500  # open at once
    channel_timeout: Annotated[int, Field(ge=1, le=3600)] = 30  # s; idle ones are closed
    max_body: Annotated[int, Field(ge=1024, le=MAX_BODY)] = MAX_BODY  # bytes; larger: 413
    # Host headers whose name may appear in self links when publish.base_url is not set
    # ("name" or "name:port"); loopback names and `host` are always trusted.
    trusted_hosts: tuple[str, ...] = ()

    _zone = field_validator("timezone")(_known_zone)

    @field_validator("trusted_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if split_host(host) is None:
                raise ValueError(f"{host!r} is not a host name with an optional :port")
        return tuple(host.lower() for host in value)

    @field_validator("admin_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 12:
            raise ValueError("admin_secret must be at least 12 characters")
        return value


class PublishSettings(_Model):
    """The republished feeds."""

    title: str = "aggregator"  # prefix of every feed's title
    description: str = "Feeds republished by aggregator"
    base_url: str | None = None  # absolute URL of the app for self links; default: request's
    max_age: Annotated[float, BeforeValidator(_seconds), Field(ge=0)] = 300.0
    default_limit: Annotated[int, Field(ge=1, le=10000)] = 50
    max_limit: Annotated[int, Field(ge=1, le=10000)] = 200
    cache_entries: Annotated[int, Field(ge=0, le=100000)] = 256  # rendered feeds kept
    cache_mb: Annotated[float, Field(ge=0, le=4096)] = 64.0  # and their total size
    # Every feed also written as static files here, after each pass that changed entries
    # (relative to the config's folder); their self links need base_url.
    static_dir: str | None = None

    @field_validator("static_dir")
    @classmethod
    def _static_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve_path(value, info)

    @model_validator(mode="after")
    def _static_needs_base(self) -> PublishSettings:
        if self.static_dir is not None and self.base_url is None:
            raise ValueError(
                "static_dir needs base_url: the absolute URL the folder is served at "
                "(the static feeds' self links start with it)"
            )
        return self

    @field_validator("base_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an absolute http(s) URL, not {value!r}")
        return value.rstrip("/") + "/"


class WebhookConfig(_Model):
    """A URL told of new and updated entries (an item of ``settings.hooks.webhooks``)."""

    url: str
    # HMAC-SHA256 key of the X-Aggregator-Signature header; none: no signature.
    secret: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a webhook needs an absolute http(s) URL, not {value!r}")
        return value.strip()


def _command(value: object) -> object:
    """A hook command: a non-empty string (run by the shell) or argv list."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("a command cannot be empty")
    if isinstance(value, list | tuple) and not value:
        raise ValueError("a command's argument list cannot be empty")
    return value


Command = Annotated[str | tuple[str, ...], BeforeValidator(_command)]


class HooksSettings(_Model):
    """What tells the site that articles changed (``aggregator/hooks.py``)."""

    # Run after a pass that wrote or deleted article files: a string goes to /bin/sh -c,
    # a list is the program and its arguments. In order; one failing does not stop the next.
    on_change: tuple[Command, ...] = ()
    cwd: str = Field(".", validate_default=True)  # their working folder (config-relative)
    debounce: Annotated[float, BeforeValidator(_seconds), Field(ge=0)] = 30.0  # s between runs
    timeout: Duration = 600.0  # a command still running then is killed (its process group)
    webhooks: tuple[WebhookConfig, ...] = ()
    retries: Annotated[int, Field(ge=0, le=20)] = 5  # further attempts of a failed POST
    backoff: Duration = 5.0  # s before the first retry; doubled each time

    _cwd = field_validator("cwd")(_resolve_path)


class Settings(_Model):
    """Global defaults (the ``settings:`` block)."""

    # validate_default: relative defaults too are resolved against the config's folder.
    posts_dir: str = Field("site/source/_posts", validate_default=True)
    # A SQLite file's path, or a PostgreSQL URL (``_database``).
    database: str = Field("data/aggregator.sqlite", validate_default=True)
    front_matter: FrontMatter = FrontMatter()
    fetch: FetchSettings = Field(default_factory=dict, validate_default=True)
    schedule: ScheduleSettings = ScheduleSettings()
    server: ServerSettings = ServerSettings()
    publish: PublishSettings = PublishSettings()
    hooks: HooksSettings = Field(default_factory=dict, validate_default=True)
    rules: tuple[RuleConfig, ...] = ()  # ingest rules for every source
    remove: tuple[str, ...] = ()
    iframe_hosts: tuple[str, ...] = DEFAULT_IFRAME_HOSTS
    keep_days: Positive | None = None
    keep_max: Positive | None = None
    workers: Annotated[int, Field(ge=0, le=64)] = 0  # 0: one per CPU
    full_text: bool = False  # fetch each new entry's page for its full text (per source too)

    _paths = field_validator("posts_dir")(_resolve_path)
    _db = field_validator("database")(_database)
    _selectors = field_validator("remove")(_check_selectors)


# -- per-source fetch options (README: "Fetching: credentials, headers, proxies") ----------

#: The SourceConfig fields that change how a source is fetched, not what its articles are.
FETCH_OPTIONS = ("headers", "username", "password", "user_agent", "proxy")
_FETCH_OPTION_SET = set(FETCH_OPTIONS)  # as model_dump's exclude wants it (never changed)
#: The ones whose values are secrets: never shown, logged or stored in clear.
SECRET_OPTIONS = ("headers", "username", "password", "proxy")
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name
# Headers the fetcher owns: framing and connection handling (a wrong one breaks the
# request or smuggles another), the conditional GET, decoding, and those a setting of its
# own sets (user_agent, username/password, proxy).
_OWN_HEADERS = {
    "host": "the URL's host is sent",
    "content-length": "a GET has no body",
    "transfer-encoding": "a GET has no body",
    "connection": "the fetcher manages connections",
    "keep-alive": "the fetcher manages connections",
    "upgrade": "the fetcher manages connections",
    "te": "the fetcher manages connections",
    "trailer": "a GET has no body",
    "expect": "a GET has no body",
    "proxy-connection": "the fetcher manages connections",
    "proxy-authorization": "give the proxy's login in `proxy:` (http://user:pass@host:port)",
    "if-none-match": "the conditional GET sets it",
    "if-modified-since": "the conditional GET sets it",
    "accept-encoding": "the fetcher decodes only what it asks for",
    "user-agent": "use `user_agent:`",
}


def _header_items(value: object) -> object:
    """``headers:`` as a mapping in YAML, kept as (name, value) pairs (hashable)."""
    if isinstance(value, Mapping):
        return tuple((str(k), v) for k, v in value.items())
    if value is None:
        return ()
    raise ValueError("headers must be a mapping of header names to values")


def _sendable(value: str, what: str) -> None:
    """Refuse what http.client would refuse at poll time, without quoting the value (an
    error text is shown and stored: it must never carry a secret)."""
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
        raise ValueError(f"{what} has a control character (a line break?)")
    if any(ord(c) > 255 for c in value):
        raise ValueError(f"{what} has characters that HTTP cannot send (outside Latin-1)")


Headers = Annotated[tuple[tuple[str, SecretStr], ...], BeforeValidator(_header_items)]


class SourceConfig(_Model):
    """One feed (an item of ``sources:``)."""

    url: str
    categories: CategoryPath
    name: Name | None = None
    author: Name | None = None
    enabled: bool = True
    interval: Duration | None = None  # default: settings.schedule.interval
    remove: tuple[str, ...] = ()
    rules: tuple[RuleConfig, ...] = ()  # ingest rules, after the global ones
    keep_days: Positive | None = None
    keep_max: Positive | None = None
    # Full text: None takes settings.full_text; the selector names the page's body
    # element exactly (no guessing), as Miniflux's scraper rules do.
    full_text: bool | None = None
    full_text_selector: str | None = None
    # Fetch options (http(s) sources). Values may be ${VAR}, read from the environment at
    # load; the secret ones are SecretStr, so no repr, dump or error message shows them.
    headers: Headers = ()
    username: SecretStr | None = None
    password: SecretStr | None = None
    user_agent: str | None = None  # default: settings.fetch.user_agent, else the project's
    proxy: SecretStr | None = None  # http, https, socks4(a) or socks5(h) URL

    _selectors = field_validator("remove")(_check_selectors)

    @field_validator("full_text_selector")
    @classmethod
    def _valid_body_selector(cls, value: str | None) -> str | None:
        if value is not None:
            compile_selector(value)  # raises ValueError with the reason
        return value

    @field_validator("headers")
    @classmethod
    def _allowed_headers(
        cls, value: tuple[tuple[str, SecretStr], ...]
    ) -> tuple[tuple[str, SecretStr], ...]:
        seen: set[str] = set()
        for name, secret in value:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            lower = name.lower()
            if lower in _OWN_HEADERS:
                raise ValueError(f"header {name} cannot be set here: {_OWN_HEADERS[lower]}")
            if lower in seen:
                raise ValueError(f"header {name} is given twice (names ignore case)")
            seen.add(lower)
            _sendable(secret.get_secret_value(), f"header {name}'s value")
        return value

    @field_validator("username", "password", "proxy")
    @classmethod
    def _sendable_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            _sendable(value.get_secret_value(), str(info.field_name))
        return value

    @field_validator("user_agent")
    @classmethod
    def _sendable_agent(cls, value: str | None) -> str | None:
        if value is not None:
            _sendable(value, "user_agent")
            if not value.strip():
                raise ValueError("user_agent is empty")
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value.get_secret_value())
            parts.port  # noqa: B018 (a bad port raises here)
        except ValueError:
            raise ValueError("proxy is not a URL (scheme://[user:pass@]host:port)") from None
        scheme = parts.scheme.lower()
        if scheme not in PROXY_SCHEMES or not parts.hostname:
            raise ValueError(
                f"proxy must be a URL with a host and one of the schemes {', '.join(PROXY_SCHEMES)}"
            )
        if scheme.startswith("socks") and find_spec("socks") is None:
            raise ValueError("a socks proxy needs PySocks (pip install PySocks)")
        return value

    @model_validator(mode="after")
    def _fetch_options_apply(self) -> SourceConfig:
        if self.password is not None and self.username is None:
            raise ValueError("`password:` needs a `username:`")
        if self.username is not None and ":" in self.username.get_secret_value():
            raise ValueError("username cannot contain ':' (HTTP basic auth splits on it)")
        if self.username is not None and any(n.lower() == "authorization" for n, _ in self.headers):
            raise ValueError("give either `username:`/`password:` or an Authorization header")
        if self.is_local and self.fetch_options_set():
            raise ValueError(
                f"{', '.join(self.fetch_options_set())}: only for http(s) sources, "
                "not for a local file"
            )
        return self

    def fetch_options_set(self) -> tuple[str, ...]:
        """The names of the fetch options this source sets (for messages and the admin)."""
        return self._options_set

    @functools.cached_property
    def _options_set(self) -> tuple[str, ...]:
        # Asked by every fingerprint and sync: once per source.
        return tuple(name for name in FETCH_OPTIONS if getattr(self, name) not in (None, ()))

    def fetch_summary(self) -> tuple[str, ...]:
        """What the admin may see of the fetch options: which are set, never a value."""
        shown = []
        if self.headers:
            shown.append(f"headers {', '.join(name for name, _ in self.headers)}")
        if self.username is not None:
            shown.append("basic auth")
        if self.user_agent is not None:
            shown.append("own User-Agent")
        if self.proxy is not None:
            scheme = urlsplit(self.proxy.get_secret_value()).scheme.lower()
            shown.append(f"{scheme} proxy")
        return tuple(shown)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            if not parts.hostname:
                raise ValueError(f"URL {value!r} has no host")
            return value
        if scheme == "file":
            return _resolve_path(parts.path, info)
        if len(scheme) > 1:  # one letter: a Windows drive, still a path
            if _looks_like_host(value):  # "example.com:8080/feed" reads as a scheme
                raise ValueError(_host_hint(value))
            raise ValueError(f"URL scheme {scheme!r} is not supported (use http, https or a path)")
        if not value:
            raise ValueError("url is empty")
        path = _resolve_path(value, info)
        if (parts.netloc or _looks_like_host(value)) and not Path(path).exists():
            raise ValueError(_host_hint(value))
        return path

    @property
    def key(self) -> str:
        """The source's name: given, else the last category."""
        return self.name or self.categories[-1]

    @property
    def site(self) -> str:
        """The site, written as each article's author: given, else the middle category."""
        if self.author:
            return self.author
        return self.categories[1] if len(self.categories) >= 2 else self.categories[-1]

    def fingerprint(self) -> str:
        """A hash of this source's settings: a change unpauses a paused source."""
        return self._fingerprint

    @functools.cached_property
    def plain_settings(self) -> str:
        """The settings but the fetch options, as JSON (what the fingerprint hashes, and
        what the index keeps of the source)."""
        return self.model_dump_json(exclude=_FETCH_OPTION_SET)

    @functools.cached_property
    def _fingerprint(self) -> str:
        # Once per configuration: every poll compares it and records it. A source without
        # fetch options hashes as before they existed (an upgrade changes nothing).
        text = self.plain_settings
        if self.fetch_options_set():
            text += "\0" + json.dumps([self.user_agent, self._secrets_digest()])
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def _secrets_digest(self) -> str | None:
        """The secret options through scrypt, salted with the URL (docs/RELIABILITY.md).

        The fingerprint is stored in the index: a plain hash of a password in it could be
        guessed offline by anyone with a copy of the database at billions of tries a
        second; scrypt makes each try cost ~30 ms and 16 MB. A change still shows.
        """
        secrets = {name: getattr(self, name) for name in SECRET_OPTIONS}
        if all(value in (None, ()) for value in secrets.values()):
            return None
        material = json.dumps(
            {
                "headers": [[n, v.get_secret_value()] for n, v in self.headers],
                **{
                    name: value.get_secret_value() if value is not None else None
                    for name in ("username", "password", "proxy")
                    for value in [getattr(self, name)]
                },
            },
            sort_keys=True,
        )
        salt = f"aggregator fetch options\0{self.url}".encode()
        return hashlib.scrypt(material.encode(), salt=salt, n=2**14, r=8, p=1, dklen=16).hex()

    @property
    def is_local(self) -> bool:
        """True for a file path source."""
        return not self.url.startswith(("http://", "https://"))


class OutputConfig(_Model):
    """A named, filtered feed (an item of ``outputs:``), served at /outputs/<name>.<format>."""

    name: Name
    title: Name | None = None
    description: str | None = None
    categories: tuple[CategoryPath, ...] = ()  # category paths (any level); none: all
    sources: tuple[Name, ...] = ()  # source names; none: all
    tags: tuple[Name, ...] = ()  # entries with at least one of these tags; none: all
    rules: tuple[RuleConfig, ...] = ()
    limit: Annotated[int, Field(ge=1, le=10000)] | None = None


class Config(_Model):
    """The whole validated configuration."""

    settings: Settings = Field(default_factory=dict, validate_default=True)
    sources: tuple[SourceConfig, ...] = ()
    outputs: tuple[OutputConfig, ...] = ()
    # Globs of files that hold more sources (relative to the config's folder); their
    # sources are already in ``sources``. Kept so that a reload can watch those files.
    include: tuple[str, ...] = ()

    def output(self, name: str) -> OutputConfig | None:
        """The output with this name, if any."""
        return next((o for o in self.outputs if o.name == name), None)

    def categories(self) -> set[tuple[str, ...]]:
        """Every level of the category tree: each source's path and all its prefixes."""
        tree: set[tuple[str, ...]] = set()
        for source in self.sources:
            for depth in range(1, len(source.categories) + 1):
                tree.add(source.categories[:depth])
        return tree

    def source(self, name: str) -> SourceConfig | None:
        """The source with this name, if any (a dict built once per configuration: every
        poll looks its source up, and a scan of 100,000 would cost milliseconds)."""
        return self._by_key.get(name)

    @functools.cached_property
    def _by_key(self) -> dict[str, SourceConfig]:
        return {s.key: s for s in self.sources}


# -- loading -----------------------------------------------------------------------------

Loc = tuple[str | int, ...]
# (file's order: 0 the config, then the included files; line; the whole message)
Problem = tuple[int, int, str]

# What reads the YAML: libyaml's parser when PyYAML was built with it (10× faster).
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A plain scalar starting with none of these is a string: no implicit type starts so.
_TYPED_START = frozenset(c for c in yaml.resolver.Resolver.yaml_implicit_resolvers if c)
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TYPES = frozenset(
    f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "timestamp")
)


class _Unusual(Exception):
    """The document uses YAML the fast reader leaves to PyYAML's own constructor
    (anchors, aliases, tags, merge keys, complex keys, several documents)."""


def _fast_data(text: str) -> tuple[Any, bool]:
    """The document's data, built straight from the parser's events; and whether a
    mapping repeats a key (the line of each then comes from ``_Lines``).

    PyYAML's loader first builds a node per value, resolving each scalar's type with a
    few regular expressions, then constructs the data from the nodes: for a config of
    100,000 sources that is 10 s even with libyaml. Here each event becomes its value at
    once, and a plain scalar is typed only when it could be something else than a
    string (by its first character), through PyYAML's own resolver and constructors,
    once per distinct text. The result equals ``yaml.safe_load``'s.

    Raises:
        yaml.YAMLError: the text is not YAML.
        _Unusual: a feature this reader does not handle was met.
    """
    loader = _Loader(text)
    constructor = yaml.constructor.SafeConstructor()
    resolve: Callable[..., str] = yaml.resolver.Resolver().resolve
    typed: dict[str, Any] = {}
    get: Callable[[], Any] = loader.get_event  # typed here: PyYAML's is not
    scalar_event, mapping_start = yaml.ScalarEvent, yaml.MappingStartEvent
    sequence_start = yaml.SequenceStartEvent
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    no_key = object()
    duplicates = False
    try:
        get()  # stream start
        if isinstance(get(), yaml.StreamEndEvent):
            return None, False
        root: Any = None
        stack: list[Any] = []  # open containers, innermost last
        keys: list[Any] = []  # per open container: a mapping's pending key
        while True:
            event = get()
            kind = type(event)
            if kind is scalar_event:
                if event.anchor is not None or event.tag is not None:
                    raise _Unusual
                value: Any = event.value
                if event.implicit[0] and (not value or value[0] in _TYPED_START):
                    if value in typed:
                        value = typed[value]
                    else:
                        tag = resolve(yaml.ScalarNode, value, (True, False))
                        if tag != _STR_TAG:
                            if tag not in _PLAIN_TYPES:
                                raise _Unusual  # a merge key "<<", or "="
                            node = yaml.ScalarNode(tag, value)
                            value = constructor.yaml_constructors[tag](constructor, node)
                        typed[event.value] = value
            elif kind is mapping_start or kind is sequence_start:
                if event.anchor is not None or event.tag is not None:
                    raise _Unusual
                value = {} if kind is mapping_start else []
            elif kind in ends:
                stack.pop()
                keys.pop()
                continue
            elif isinstance(event, yaml.DocumentEndEvent):
                break
            else:  # an alias
                raise _Unusual
            if not stack:
                root = value
            else:
                parent = stack[-1]
                if type(parent) is list:
                    parent.append(value)
                elif keys[-1] is no_key:
                    if type(value) is dict or type(value) is list:
                        raise _Unusual  # a complex key: PyYAML says what is wrong
                    keys[-1] = value
                    continue
                else:
                    key = keys[-1]
                    duplicates = duplicates or key in parent
                    parent[key] = value
                    keys[-1] = no_key
            if type(value) is dict or type(value) is list:
                stack.append(value)
                keys.append(no_key)
        if not isinstance(get(), yaml.StreamEndEvent):
            raise _Unusual  # a second document: PyYAML's error names it
        return root, duplicates
    finally:
        loader.dispose()


class _Lines(Mapping[Loc, int]):
    """The line of each location of a document, worked out only when a message needs
    one (a valid config never does), with its duplicate keys."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines: dict[Loc, int] | None = None
        self._duplicates: list[tuple[int, str]] = []

    def _load(self) -> dict[Loc, int]:
        if self._lines is None:
            lines: dict[Loc, int] = {}
            loader = _Loader(self._text)
            try:
                node = loader.get_single_node()
                if node is not None:
                    _walk(node, (), lines, self._duplicates)
            finally:
                loader.dispose()
            self._lines = lines
        return self._lines

    def duplicates(self) -> list[tuple[int, str]]:
        """Every repeated key of a mapping: (its line, the message)."""
        self._load()
        return self._duplicates

    def __getitem__(self, loc: Loc) -> int:
        return self._load()[loc]

    def __iter__(self) -> Iterator[Loc]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[tuple[int, str]]
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append((line, f"{_dotted((*loc, key))}: duplicate key"))
            seen.add(key)
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines, problems)


def _read_yaml(text: str, path: str) -> tuple[Any, _Lines, list[tuple[int, str]]]:
    """A document's data, its lines, and its duplicate keys.

    Raises:
        ConfigError: the text is not YAML (the message is PyYAML's pure-Python parser's,
            whose wording users have seen so far).
    """
    lines = _Lines(text)
    try:
        try:
            data, duplicates = _fast_data(text)
        except _Unusual:
            loader = _Loader(text)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
            duplicates = True  # look for them, as before
    except yaml.YAMLError:
        loader = yaml.SafeLoader(text)
        try:
            loader.get_single_data()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise ConfigError(path, [f"{path}:{line}: YAML syntax error: {exc.problem}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(path, [f"{path}: cannot read YAML: {exc}"]) from exc
        finally:
            loader.dispose()
        raise ConfigError(path, [f"{path}: cannot read YAML"]) from None
    return data, lines, lines.duplicates() if duplicates else []


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


class _Places:
    """Where each location of the merged data was written: which file, which line, and
    its name in that file (an included file's sources are ``[3].url`` there).

    Args:
        path: the config file's name, as messages show it.
        lines: the config's lines.
    """

    def __init__(self, path: str, lines: Mapping[Loc, int]) -> None:
        self.path = path
        self.lines = lines
        self.files: list[tuple[int, int, str, Mapping[Loc, int]]] = []  # start, end, path, lines

    def add_file(self, start: int, count: int, path: str, lines: Mapping[Loc, int]) -> None:
        """Sources ``start`` to ``start + count`` of the merged list came from ``path``."""
        self.files.append((start, start + count, path, lines))

    def locate(self, loc: Loc) -> tuple[int, str, Loc, Mapping[Loc, int]]:
        """(file's order, file's name, the location in that file, that file's lines)."""
        if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
            for order, (start, end, path, lines) in enumerate(self.files, 1):
                if start <= loc[1] < end:
                    return order, path, (loc[1] - start, *loc[2:]), lines
        return 0, self.path, loc, self.lines

    def where(self, loc: Loc) -> str:
        """``file:line`` of a location."""
        _, path, local, lines = self.locate(loc)
        return f"{path}:{_line_of(local, lines)}"

    def problem(self, loc: Loc, text: str) -> Problem:
        """A message about a location: ``file:line: dotted.location: text``."""
        order, path, local, lines = self.locate(loc)
        line = _line_of(local, lines)
        return order, line, f"{path}:{line}: {_dotted(local)}: {text}"

    def at_line(self, order: int, line: int, text: str) -> Problem:
        """A message about a line of the config (0) or an included file (1...)."""
        path = self.path if order == 0 else self.files[order - 1][2]
        return order, line, f"{path}:{line}: {text}"


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _pydantic_loc(loc: tuple[Any, ...]) -> Loc:
    # Pydantic inserts validator names (e.g. "function-after[...]") into some locations.
    return tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))


def _include_patterns(
    data: dict[str, Any], places: _Places
) -> tuple[tuple[str, ...], list[Problem]]:
    """The ``include:`` globs (a list of strings; one string is one glob)."""
    value = data.get("include")
    if value is None:
        return (), []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        problem = places.problem(("include",), "must be a list of file globs (strings)")
        return (), [problem]
    return tuple(i.strip() for i in items), []


def _read_includes(
    patterns: tuple[str, ...], path: str, base_dir: Path, places: _Places, first: int
) -> tuple[list[Any], list[Problem]]:
    """The sources of the files the globs match (in name order, each file once), and
    the problems met; ``places`` learns which file each came from."""
    sources: list[Any] = []
    found: list[Problem] = []
    shown_dir = Path(path).parent
    seen: set[Path] = set()
    for index, pattern in enumerate(patterns):
        matches = included_files(base_dir, (pattern,))
        if not matches and not glob.has_magic(pattern):
            found.append(places.problem(("include", index), f"no such file: {pattern}"))
        for file in matches:
            if file in seen:
                continue
            seen.add(file)
            try:
                shown = str(shown_dir / file.relative_to(base_dir))
            except ValueError:  # an absolute glob elsewhere
                shown = str(file)
            try:
                text = file.read_text(encoding="utf-8-sig")
                items, lines, duplicates = _read_yaml(text, shown)
            except (OSError, UnicodeDecodeError) as exc:
                found.append(places.problem(("include", index), f"cannot read {shown}: {exc}"))
                continue
            except ConfigError as exc:
                order = len(places.files) + 1
                found.extend((order, 0, problem) for problem in exc.problems)
                places.add_file(first + len(sources), 0, shown, _Lines(""))
                continue
            order = len(places.files) + 1
            if items is None:
                items = []
            if not isinstance(items, list):
                places.add_file(first + len(sources), 0, shown, lines)
                found.append(places.at_line(order, 1, "an included file holds a list of sources"))
                continue
            places.add_file(first + len(sources), len(items), shown, lines)
            found.extend(places.at_line(order, line, text) for line, text in duplicates)
            sources.extend(items)
    return sources, found


def included_files(base_dir: Path, patterns: Iterable[str]) -> list[Path]:
    """The files the ``include:`` globs match now, in name order (hidden files never:
    an editor's swap file must not become sources)."""
    files: list[Path] = []
    for pattern in patterns:
        full = Path(base_dir) / Path(pattern).expanduser()  # an absolute glob stays itself
        # glob.glob, as Path.glob takes no absolute pattern.
        found = sorted(glob.glob(str(full), recursive=True))  # noqa: PTH207
        files.extend(file for file in map(Path, found) if file.is_file())
    return files


#: A config file's identity for a watch: (path, mtime_ns, size) of it and of each file
#: its ``include:`` globs match.
Stamp = tuple[tuple[str, int, int], ...]


def config_stamp(path: Path, include: Iterable[str]) -> Stamp | None:
    """The size and time of the config file and of each file its ``include:`` globs
    match now (one added or removed changes it too); None: the config is unreadable."""
    try:
        stat = path.stat()
    except OSError:
        return None
    stamps = [(str(path), stat.st_mtime_ns, stat.st_size)]
    for file in included_files(path.resolve().parent, include):
        try:
            stat = file.stat()
        except OSError:  # removed meanwhile: the next check sees it gone
            continue
        stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def parse_config(
    text: str,
    path: str = "config.yaml",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate configuration text, and the files its ``include:`` names.

    Args:
        text: the YAML.
        path: the file's name, used in messages.
        base_dir: relative paths in the config are resolved against it.
        environ: where ``${VAR}`` in fetch options is looked up (default: os.environ).

    Raises:
        ConfigError: with every problem found, each with its file and line.
    """
    with _collector_paused():
        return _parse_config(text, path, base_dir, environ)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a config is built: its hundreds of thousands
    of new containers would set it off again and again, each pass walking all that was
    built so far (a quarter of the load time at 100,000 sources); nothing here makes
    cycles, and the collector runs as usual afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_config(
    text: str,
    path: str,
    base_dir: Path | None,
    environ: Mapping[str, str] | None,
) -> Config:
    data, lines, duplicates = _read_yaml(text, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path}:1: the top level must be a mapping"])
    places = _Places(path, lines)
    found: list[Problem] = [places.at_line(0, line, text) for line, text in duplicates]
    base = base_dir or Path.cwd()
    patterns, problems = _include_patterns(data, places)
    found.extend(problems)
    if patterns:
        data["include"] = list(patterns)
        own = data.get("sources")
        own = [] if own is None else own
        if isinstance(own, list):
            included, problems = _read_includes(patterns, path, base, places, len(own))
            found.extend(problems)
            data["sources"] = [*own, *included]
    elif "include" in data:
        del data["include"]  # invalid: reported above

    found.extend(_expand_environment(data, places, os.environ if environ is None else environ))
    context = {"base_dir": str(base)}
    config: Config | None = None
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        for error in exc.errors():
            found.append(places.problem(_pydantic_loc(error["loc"]), _message(error)))
    found.extend(_duplicate_names(data, places))
    found.extend(_sources_under_outputs(data, places))
    if config is not None:
        found.extend(_output_problems(config, places))
        found.extend(_file_problems(config, places))
    if found or config is None:
        raise ConfigError(path, [text for _, _, text in sorted(found, key=lambda p: p[:2])])
    return config


# $${ is a literal "${"; ${NAME} is the variable; any other "${" is a mistake. A lone "$"
# is itself (a password may well contain one).
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def expand_variables(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with each ``${NAME}`` replaced by that environment variable.

    Raises:
        ValueError: a variable is not set, or a ``${`` is not followed by ``NAME}``; the
            message names the variable, never a value.
    """

    def value(match: re.Match[str]) -> str:
        if match[0] == "$${":
            return "${"
        name = match[1]
        if name is None:
            raise ValueError(
                "`${` must be followed by a variable name and `}` (`$${` is a literal `${`)"
            )
        if name not in environ:
            raise ValueError(f"environment variable {name} is not set")
        return environ[name]

    return _VARIABLE.sub(value, text)


def _expand_environment(
    data: Mapping[str, Any], places: _Places, environ: Mapping[str, str]
) -> list[Problem]:
    """Replace ``${VAR}`` in every source's fetch options, in place; the problems found.

    Only there: they are what holds secrets, and nowhere else did ``${`` mean anything
    before (a title or a rule may contain it as text).
    """
    sources = data.get("sources")
    if not isinstance(sources, list):
        return []
    found: list[Problem] = []

    def expand(container: dict[Any, Any], key: Any, loc: Loc) -> None:
        value = container[key]
        if not isinstance(value, str):
            return
        try:
            container[key] = expand_variables(value, environ)
        except ValueError as exc:
            found.append(places.problem(loc, str(exc)))

    for index, item in enumerate(sources):
        if not isinstance(item, dict):
            continue
        for name in FETCH_OPTIONS:
            if name == "headers" and isinstance(item.get(name), dict):
                for header in item[name]:
                    expand(item[name], header, ("sources", index, name, str(header)))
            elif name != "headers" and name in item:
                expand(item, name, ("sources", index, name))
    return found


def _file_problems(config: Config, places: _Places) -> list[Problem]:
    """Local file sources must lie under settings.fetch.file_roots."""
    roots = [Path(r) for r in config.settings.fetch.file_roots or ()]
    found: list[Problem] = []
    for index, source in enumerate(config.sources):
        if source.is_local and not any(Path(source.url).is_relative_to(r) for r in roots):
            found.append(
                places.problem(
                    ("sources", index, "url"),
                    f"{source.url} is outside settings.fetch.file_roots "
                    f"({', '.join(str(r) for r in roots)}); add its folder there to allow it",
                )
            )
    return found


def _output_problems(config: Config, places: _Places) -> list[Problem]:
    """Outputs must have distinct names and name only sources that exist."""
    found: list[Problem] = []
    seen: set[str] = set()
    for index, output in enumerate(config.outputs):
        if output.name in seen:
            found.append(
                places.problem(
                    ("outputs", index, "name"), f"output name {output.name!r} is used twice"
                )
            )
        seen.add(output.name)
        for position, source in enumerate(output.sources):
            if config.source(source) is None:
                loc: Loc = ("outputs", index, "sources", position)
                found.append(places.problem(loc, f"no source named {source!r}"))
    return found


def _sources_under_outputs(data: Mapping[str, Any], places: _Places) -> list[Problem]:
    """Name the likely cause when ``outputs:`` items carry a source's keys.

    Sources pasted at the end of the file land under ``outputs:`` when that is the last
    list, and then every one of their keys is reported as unknown, which hides the cause.
    """
    outputs = data.get("outputs")
    if not isinstance(outputs, list):
        return []
    source_keys = set(SourceConfig.model_fields) - set(OutputConfig.model_fields)
    found: list[Problem] = []
    for index, item in enumerate(outputs):
        keys = sorted(source_keys & item.keys()) if isinstance(item, dict) else []
        if keys:
            found.append(
                places.problem(
                    ("outputs", index),
                    f"looks like a source pasted under `outputs:` (it has "
                    f"{', '.join(keys)}); move it under `sources:`",
                )
            )
    return found


def _duplicate_names(data: Mapping[str, Any], places: _Places) -> list[Problem]:
    """Two sources with one name (given, or their last category) would share articles;
    the message names the other's place (its file and line, when in another file)."""
    sources = data.get("sources")
    if not isinstance(sources, list):
        return []
    found: list[Problem] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(sources):
        if not isinstance(item, dict):
            continue
        categories = item.get("categories")
        if isinstance(categories, str):  # "a/b/c" is a path too
            categories = [p.strip() for p in categories.split("/") if p.strip()]
        name = item.get("name") or (
            categories[-1] if isinstance(categories, list) and categories else None
        )
        if not isinstance(name, str):
            continue
        name = name.strip()
        if name in seen:
            loc: Loc = ("sources", index, "name") if item.get("name") else ("sources", index)
            first: Loc = ("sources", seen[name])
            order, _, other, _ = places.locate(first)
            there = _dotted(other)
            if order != places.locate(loc)[0]:
                there = f"{places.where(first)} ({there})"
            found.append(
                places.problem(
                    loc,
                    f"source name {name!r} is already used by {there} "
                    "(give one of them a distinct `name`)",
                )
            )
        seen.setdefault(name, index)
    return found


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; relative paths in it are relative to its folder;
    ``${VAR}`` in fetch options is read from ``environ`` (default: os.environ).

    Raises:
        ConfigError: the file cannot be read, or with every problem found in it.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), [f"{file}: cannot read: {exc}"]) from exc
    return parse_config(text, str(file), file.resolve().parent, environ)
