"""Credentials and tokens out of URLs, before anyone but the owner sees them.

A feed URL may carry a secret: a user name and password (``https://user:pass@host/``)
or a token in its query (``?token=…``, ``?key=…``). The URL is the owner's; everything
shown to an anonymous visitor of the dashboard, ``/healthz`` and ``/opml``, every stored
error text and every log line goes through ``redact``. Pure: text in, text out.

The text may be a URL or a message that quotes one, in part: urllib3's errors say
``... with url: /feed?token=s3cret (Caused by ...)``, without the scheme and host. So
the patterns look for the secret-bearing parts wherever they are, not for whole URLs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://userinfo@ — greedy up to the last "@" before the path, so that a password
# with an unescaped "@" is masked whole.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")

# ?name=value, &name=value and #name=value (OAuth puts tokens in the fragment): the
# value, up to the next separator, whitespace or quote, or a colon before one (an error
# text's "url: message"). The name is kept, so the owner recognises the URL.
_PARAMETER = re.compile(r"([?&#][^=&#?\s]*=)[^&#\s'\"<>]+?(?=:?(?:[&#\s'\"<>]|$))")

# ?value and &value with no name (``https://host/feed?a1b2c3``: some services take the
# key as the whole query): all of it.
_BARE = re.compile(r"([?&])[^=&#?\s'\"<>:]+(?=:?(?:[&#\s'\"<>]|$))")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the userinfo and the query (and fragment) values of URLs masked
    (a query part without a name is masked whole), and every one of ``secrets`` (a
    source's header values, login, proxy: known, so masked wherever they appear).

    >>> redact("https://user:pass@host/feed?token=abc&page=2")
    'https://***@host/feed?token=***&page=***'
    >>> redact("cookie sid=s3cret refused", ["sid=s3cret"])
    'cookie *** refused'
    """
    # Longest first: a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    if not any(mark in text for mark in "@?&#"):  # nothing the patterns below could match
        return text
    text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
    return _BARE.sub(rf"\g<1>{MASK}", _PARAMETER.sub(rf"\g<1>{MASK}", text))


def redact_log_record(record: logging.LogRecord) -> bool:
    """A logging filter: the record's message, redacted (it is always let through).

    For loggers whose messages quote URLs we do not build ourselves (urllib3 logs each
    request line, query included, at DEBUG).
    """
    message = record.getMessage()
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    return True


def without_credentials(url: str) -> str:
    """``url`` without its user name and password.

    The base that a feed's relative links are resolved against: resolving keeps the
    base's userinfo, which would carry the owner's login into every article, its
    republished feeds and the pages that show them.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
