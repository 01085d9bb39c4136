"""Decide a feed document's character encoding and hand feedparser clean UTF-8.

Pure functions, no I/O. The rules, in order:

1. A byte-order mark wins (UTF-8, UTF-16, UTF-32): it cannot be there by accident.
2. Otherwise the labels from the HTTP ``charset`` and the XML declaration are tried, and
   the first that decodes the bytes *strictly* wins.
3. Then UTF-8 (a server that wrongly says ISO-8859-1 for a UTF-8 document is common),
   then any declared label that decodes every byte (Latin-1, windows-1252), then — only
   for documents that declare nothing usable — GB18030, then windows-1252.

Chinese labels are widened to their supersets, because publishers routinely declare
``gb2312`` for text that uses GBK-only characters (e.g. 镕, 喆) and ``big5`` for text with
HKSCS characters: GB18030 ⊃ GBK ⊃ GB2312, and Big5-HKSCS ⊃ Big5.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "cp936": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "cp950": "big5hkscs",
    "big5hkscs": "big5hkscs",
    "latin-1": "cp1252",  # WHATWG: the label iso-8859-1 means windows-1252
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "utf-16": "utf-16",
}

# Encodings that accept (nearly) every byte sequence: a successful decode proves nothing.
_PERMISSIVE = {"cp1252", "latin-1", "iso8859-15", "cp1251", "koi8-r", "mac-roman"}

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.I)
_XML_DECL_TEXT = re.compile(r"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])[A-Za-z0-9._:-]+\2", re.I)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A document re-encoded as UTF-8, with the encoding we decided on."""

    body: bytes  # UTF-8, XML declaration (if any) rewritten to say so
    encoding: str  # Python codec name that decoded the original bytes
    content_type: str  # media type to hand feedparser, with charset=utf-8


def normalise_label(label: str | None) -> str | None:
    """Map an encoding label to the Python codec we decode it with, or None if unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def _candidates(body: bytes, content_type: str | None) -> list[str]:
    declared: list[str] = []
    if content_type:
        match = _CHARSET.search(content_type)
        if match:
            declared.append(match.group(1))
    head = body[:1024]
    xml_match = _XML_DECL.match(head)
    if xml_match:
        declared.append(xml_match.group(1).decode("ascii"))
    labels = [normalise_label(d) for d in declared]
    strict = [n for n in labels if n is not None and n not in _PERMISSIVE]
    loose = [n for n in labels if n is not None and n in _PERMISSIVE]
    ordered = [*strict, "utf-8", *loose, "gb18030", "cp1252"]
    return list(dict.fromkeys(ordered))


def _decode(body: bytes, content_type: str | None) -> tuple[str, str]:
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace"), name
    # UTF-16/32 without a BOM, recognised by the XML declaration's NUL pattern.
    if body.startswith(b"<\x00?\x00x\x00"):
        return body.decode("utf-16-le", errors="replace"), "utf-16-le"
    if body.startswith(b"\x00<\x00?\x00x"):
        return body.decode("utf-16-be", errors="replace"), "utf-16-be"
    for name in _candidates(body, content_type):
        try:
            return body.decode(name), name
        except UnicodeDecodeError:
            continue
    # cp1252 leaves five bytes undefined; Latin-1 decodes every byte.
    return body.decode("latin-1"), "latin-1"


def decode_document(body: bytes, content_type: str | None = None) -> Decoded:
    """Decode a fetched feed document and re-encode it as UTF-8.

    Args:
        body: the bytes as fetched.
        content_type: the HTTP ``Content-Type`` header, if there was one.

    Returns:
        The UTF-8 body with its XML declaration corrected, the encoding used, and a
        content type for feedparser that says ``charset=utf-8``.
    """
    text, name = _decode(body, content_type)
    text = _XML_DECL_TEXT.sub(r"\1\2utf-8\2", text, count=1)
    media_type = (content_type or "").split(";", 1)[0].strip().lower() or "application/xml"
    return Decoded(
        body=text.encode("utf-8"),
        encoding=name,
        content_type=f"{media_type}; charset=utf-8",
    )
