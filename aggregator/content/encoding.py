"""Decide a feed document's character encoding and hand feedparser clean UTF-8.

Pure functions, no I/O. The rules, in order:

1. A byte-order mark wins (UTF-8, UTF-16, UTF-32): it cannot be there by accident. Without
   one, UTF-16 and UTF-32 show in the NULs around the first two (ASCII) characters.
2. Otherwise the labels from the HTTP ``charset`` and the XML declaration are tried, and
   the first that decodes the bytes *strictly* wins.
3. Then UTF-8 (a server that wrongly says ISO-8859-1 for a UTF-8 document is common),
   then any declared label that decodes every byte (Latin-1, windows-1252).
4. Only a document that declares nothing usable and is not UTF-8 gets here, and pays for
   it: charset-normalizer guesses (Shift_JIS, EUC-KR, Big5, KOI8-R...), and the guess is
   recorded (``guessed``). Where it reads the same language from GB18030 or windows-1252
   about as well as from its favourite, those win (the Web's defaults for undeclared
   Chinese and Western pages); with no guess at all, GB18030, then windows-1252.

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

# XML 1.0 appendix F and RFC 4627 §3: a feed's first two characters are ASCII, so which
# of its first four bytes are NUL tells UTF-16 and UTF-32 (and their byte order) apart.
_NUL_PATTERNS = {
    (False, True, True, True): "utf-32-le",
    (True, True, True, False): "utf-32-be",
    (False, True, False, True): "utf-16-le",
    (True, False, True, False): "utf-16-be",
}

# Guessing: what the Web assumes for undeclared pages (WHATWG), preferred to the
# detector's favourite when it reads the same language from them about as well.
_PREFERRED = ("gb18030", "cp1252")
_TIE = 0.1  # chaos (charset-normalizer's 0-1 "mess" ratio) within which one language ties

# The legacy encodings of the WHATWG Encoding Standard: what browsers read, so what Web
# publishers write. The detector guesses among these only (no hp-roman8, no cp1125).
_WEB_ENCODINGS = [
    *("cp866", "koi8_r", "koi8_u", "mac_cyrillic", "mac_roman", "cp874"),
    *(f"iso8859_{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)),
    *(f"cp{n}" for n in range(1250, 1259)),
    *("gb18030", "big5", "big5hkscs", "euc_jp", "cp932", "cp949"),
]

# How a guess is named in the poll's warning: the label a publisher would write.
_DISPLAY = {
    "cp932": "Shift_JIS",
    "shift_jis": "Shift_JIS",
    "shift_jis_2004": "Shift_JIS",
    "euc_jp": "EUC-JP",
    "euc_jis_2004": "EUC-JP",
    "cp949": "EUC-KR",
    "euc_kr": "EUC-KR",
    "big5hkscs": "Big5",
    "gb18030": "GB18030",
    "koi8-r": "KOI8-R",
    "koi8-u": "KOI8-U",
    "latin-1": "ISO-8859-1",
}


def _display(name: str) -> str:
    return _DISPLAY.get(name) or re.sub(r"^cp(12\d\d)$", r"windows-\1", name)


@dataclass(frozen=True, slots=True)
class Text:
    """A document's bytes decoded, and how."""

    text: str
    encoding: str  # Python codec name that decoded the bytes
    #: Set when the encoding was guessed (nothing usable declared, not UTF-8): what was
    #: declared and what was guessed, worded for the poll's warnings.
    guessed: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A document re-encoded as UTF-8, with the encoding we decided on."""

    body: bytes  # UTF-8, XML declaration (if any) rewritten to say so
    encoding: str  # Python codec name that decoded the original bytes
    content_type: str  # media type to hand feedparser, with charset=utf-8
    guessed: str | None = None  # as ``Text.guessed``


def normalise_label(label: str | None) -> str | None:
    """Map an encoding label to the Python codec we decode it with, or None if unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def _declared(body: bytes, content_type: str | None) -> list[str]:
    declared: list[str] = []
    if content_type:
        match = _CHARSET.search(content_type)
        if match:
            declared.append(match.group(1))
    xml_match = _XML_DECL.match(body[:1024])
    if xml_match:
        declared.append(xml_match.group(1).decode("ascii"))
    return declared


def _unicode_without_bom(body: bytes) -> str | None:
    if len(body) < 4:
        return None
    return _NUL_PATTERNS.get((body[0] == 0, body[1] == 0, body[2] == 0, body[3] == 0))


def decode_text(body: bytes, content_type: str | None = None) -> Text:
    """Decode a feed document (XML or JSON) by the rules above.

    Args:
        body: the bytes as fetched.
        content_type: the HTTP ``Content-Type`` header, if there was one.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return Text(body[len(bom) :].decode(name, errors="replace"), name)
    unicode = _unicode_without_bom(body)
    if unicode:
        return Text(body.decode(unicode, errors="replace"), unicode)
    declared = _declared(body, content_type)
    labels = [n for n in map(normalise_label, declared) if n is not None]
    strict = [n for n in labels if n not in _PERMISSIVE]
    loose = [n for n in labels if n in _PERMISSIVE]
    for name in dict.fromkeys([*strict, "utf-8", *loose]):
        try:
            return Text(body.decode(name), name)
        except UnicodeDecodeError:
            continue
    text, name = _guess(body)
    said = (
        f"declared encoding {', '.join(dict.fromkeys(declared))} does not fit"
        if declared
        else "encoding not declared"
    )
    return Text(text, name, f"{said}; guessed {_display(name)}")


def _guess(body: bytes) -> tuple[str, str]:
    """Read bytes that nothing declared fits, as the detector says.

    charset-normalizer is imported here: a document that never needs it does not even
    load it. Where GB18030 or windows-1252 reads as well as its favourite (a tie: too
    little text to tell), or nearly as well in the same language (it often ranks
    windows-1257 over windows-1252 for French), the Web's default wins.
    """
    from charset_normalizer import from_bytes

    matches = from_bytes(body, cp_isolation=_WEB_ENCODINGS)
    best = matches.best()
    names: list[str] = []
    if best is not None:
        for match in matches:
            name = normalise_label(match.encoding)
            margin = match.chaos - best.chaos
            tie = margin < 0.01 or (match.language == best.language and margin <= _TIE)
            if name in _PREFERRED and tie:
                names.append(name)
                break
        names.extend(n for n in map(normalise_label, (m.encoding for m in matches)) if n)
    # No reading at all (or none that decodes every byte): the Web's defaults.
    for name in dict.fromkeys([*names, "gb18030", "cp1252"]):
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
    decoded = decode_text(body, content_type)
    text = _XML_DECL_TEXT.sub(r"\1\2utf-8\2", decoded.text, count=1)
    media_type = (content_type or "").split(";", 1)[0].strip().lower() or "application/xml"
    return Decoded(
        body=text.encode("utf-8"),
        encoding=decoded.encoding,
        content_type=f"{media_type}; charset=utf-8",
        guessed=decoded.guessed,
    )
