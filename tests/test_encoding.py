"""Encodings: every document decodes to the right text, whatever its labels say."""

from __future__ import annotations

import codecs

import pytest

from aggregator.content.encoding import decode_document
from aggregator.content.parse import parse_feed

TITLE = "朱镕基、陶喆与「全角」标点"  # 镕 and 喆 are in GBK but not in GB2312


def feed(encoding_label: str | None, title: str = TITLE, channel: str = "频道") -> str:
    decl = f' encoding="{encoding_label}"' if encoding_label else ""
    return (
        f'<?xml version="1.0"{decl}?>\n<rss version="2.0"><channel><title>{channel}</title>'
        f"<link>https://example.cn/</link><description>d</description><item>"
        f"<title>{title}</title><guid>g1</guid><description>正文</description>"
        "</item></channel></rss>"
    )


CASES = [
    # (case, bytes, HTTP Content-Type)
    ("utf-8 declared", feed("utf-8").encode("utf-8"), None),
    ("utf-8 undeclared", feed(None).encode("utf-8"), None),
    ("utf-8 with BOM", codecs.BOM_UTF8 + feed("utf-8").encode("utf-8"), None),
    ("gb2312 label, GBK-only characters", feed("gb2312").encode("gbk"), None),
    ("gbk", feed("gbk").encode("gbk"), None),
    ("gb18030", feed("GB18030", TITLE + "𠀀").encode("gb18030"), None),
    ("gbk bytes, label only in HTTP", feed(None).encode("gbk"), "text/xml; charset=GBK"),
    ("gbk bytes, no label at all", feed(None).encode("gbk"), None),
    ("big5", feed("big5", "繁體中文標題：臺灣", "頻道").encode("big5"), None),
    ("big5-hkscs characters", feed("big5", "香港增補字符：㗎", "頻道").encode("big5hkscs"), None),
    ("utf-16 LE with BOM", codecs.BOM_UTF16_LE + feed("utf-16").encode("utf-16-le"), None),
    ("utf-16 BE with BOM", codecs.BOM_UTF16_BE + feed("utf-16").encode("utf-16-be"), None),
    (
        "HTTP says ISO-8859-1, document is UTF-8",
        feed("utf-8").encode("utf-8"),
        "application/rss+xml; charset=ISO-8859-1",
    ),
    (
        "HTTP says UTF-8, document is GBK declared gb2312",
        feed("gb2312").encode("gbk"),
        "text/xml; charset=utf-8",
    ),
    (
        "HTTP says gb2312, document is UTF-8",
        feed("utf-8").encode("utf-8"),
        "text/xml; charset=gb2312",
    ),
]


def expected_title(case: str) -> str:
    if case.startswith("big5-hkscs"):
        return "香港增補字符：㗎"
    if case.startswith("big5"):
        return "繁體中文標題：臺灣"
    if case == "gb18030":
        return TITLE + "𠀀"
    return TITLE


@pytest.mark.parametrize(("case", "body", "content_type"), CASES, ids=[c[0] for c in CASES])
def test_feed_decodes_to_the_right_text(case: str, body: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    parsed = parse_feed("https://example.cn/feed", body, headers)
    assert parsed.title == ("頻道" if case.startswith("big5") else "频道")
    assert [e.title for e in parsed.entries] == [expected_title(case)]
    assert parsed.entries[0].content_html == "正文"


def test_declaration_is_rewritten_to_utf8() -> None:
    decoded = decode_document(feed("gb2312").encode("gbk"))
    assert decoded.encoding == "gb18030"
    assert decoded.body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    assert decoded.content_type == "application/xml; charset=utf-8"


def test_unknown_label_falls_back_to_sniffing() -> None:
    decoded = decode_document(feed("x-no-such-charset").encode("utf-8"), "text/xml; charset=bogus")
    assert TITLE in decoded.body.decode("utf-8")
    assert decoded.encoding == "utf-8"


def test_latin1_document_keeps_its_accents() -> None:
    body = feed("iso-8859-1", "Café déjà vu", "Canal").replace("正文", "Corps").encode("latin-1")
    parsed = parse_feed("u", body)
    assert parsed.entries[0].title == "Café déjà vu"
    assert parsed.title == "Canal"
