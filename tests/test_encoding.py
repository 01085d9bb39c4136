"""Encodings: every document decodes to the right text, whatever its labels say."""

from __future__ import annotations

import codecs
import subprocess
import sys

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


# -- no BOM, no declaration ----------------------------------------------------------

NEWS = {  # enough text in each for a detector to tell the encodings apart
    "shift_jis": (
        "東京の桜が満開",
        "多くの人々が公園に集まり、花見を楽しんでいます。政府は新しい経済対策を発表しました。",
    ),
    "euc_jp": (
        "東京の桜が満開",
        "多くの人々が公園に集まり、花見を楽しんでいます。政府は新しい経済対策を発表しました。",
    ),
    "euc_kr": (
        "서울의 벚꽃이 만개",
        "많은 사람들이 공원에 모여 꽃구경을 즐기고 있습니다. 정부는 새로운 경제 대책을 발표했습니다.",
    ),
    "big5": (
        "臺北的櫻花盛開了",
        "許多人聚集在公園裡賞花。政府宣布了新的經濟措施，以支持中小企業的發展。",
    ),
    "koi8_r": (
        "В Москве расцвели деревья",
        "Многие люди гуляют в парках. Правительство объявило о новых экономических мерах.",
    ),
    "cp1251": (
        "В Москве расцвели деревья",
        "Многие люди гуляют в парках. Правительство объявило о новых экономических мерах.",
    ),
    "cp1252": (
        "Les cerisiers de Paris",
        "Aujourd’hui il fait beau ; beaucoup de gens se réunissent déjà dans les parcs. Le gouvernement a annoncé de nouvelles mesures économiques.",
    ),
}
SAID = {
    "shift_jis": "Shift_JIS",
    "euc_jp": "EUC-JP",
    "euc_kr": "EUC-KR",
    "big5": "Big5",
    "koi8_r": "KOI8-R",
    "cp1251": "windows-1251",
    "cp1252": "windows-1252",
}


def news(title: str, text: str, decl: str = "") -> str:
    return (
        f'<?xml version="1.0"{decl}?>\n<rss version="2.0"><channel><title>{title}</title>'
        f"<item><title>{title}</title><guid>n1</guid><description>{text}</description></item>"
        "</channel></rss>"
    )


@pytest.mark.parametrize("codec", NEWS)
def test_undeclared_legacy_encoding_is_detected_and_said(codec: str) -> None:
    title, text = NEWS[codec]
    parsed = parse_feed("https://news.example/feed", news(title, text).encode(codec))
    assert parsed.title == title
    assert [(e.title, e.content_html) for e in parsed.entries] == [(title, text)]
    assert parsed.encoding_warning == f"encoding not declared; guessed {SAID[codec]}"


def test_a_declared_encoding_that_does_not_fit_is_said_too() -> None:
    title, text = NEWS["shift_jis"]
    body = news(title, text, ' encoding="utf-8"').encode("shift_jis")
    parsed = parse_feed("https://news.example/feed", body, {"Content-Type": "text/xml"})
    assert parsed.entries[0].title == title
    assert parsed.encoding_warning == "declared encoding utf-8 does not fit; guessed Shift_JIS"


@pytest.mark.parametrize("case", ["utf-8 declared", "utf-8 undeclared", "gbk", "big5"])
def test_a_declared_or_utf8_document_is_not_a_guess(case: str) -> None:
    [(_, body, _)] = [c for c in CASES if c[0] == case]
    assert parse_feed("https://example.cn/feed", body).encoding_warning is None


def test_short_gbk_text_keeps_the_gb18030_preference() -> None:
    """Two characters are too few for any detector: where it cannot choose between
    readings, GB18030 (what an undeclared Chinese page means on the Web) wins."""
    parsed = parse_feed("u", feed(None, "北京", "新闻").encode("gbk"))
    assert [e.title for e in parsed.entries] == ["北京"]
    assert parsed.encoding_warning == "encoding not declared; guessed GB18030"


def test_short_text_is_a_guess_that_may_be_wrong_and_says_so() -> None:
    """One Russian word in KOI8-R is a handful of bytes that many code pages read as
    plausible text: the document is still read (it may come out garbled) and the poll
    says the encoding was guessed, so whoever reads the warning can look."""
    body = news("Москва", "Новости").encode("koi8_r")
    parsed = parse_feed("u", body)
    assert len(parsed.entries) == 1
    assert parsed.encoding_warning is not None
    assert parsed.encoding_warning.startswith("encoding not declared; guessed ")


@pytest.mark.parametrize("codec", ["utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("declared", [True, False])
def test_utf16_and_utf32_without_bom_by_their_nul_pattern(codec: str, declared: bool) -> None:
    """XML 1.0 appendix F: the first characters are ASCII, so the NULs give the encoding."""
    body = feed(codec[:6] if declared else None)
    parsed = parse_feed("u", body.encode(codec))
    assert [e.title for e in parsed.entries] == [TITLE]
    assert parsed.encoding_warning is None


def test_only_a_guess_loads_the_detector() -> None:
    """UTF-8 and declared documents never pay for charset-normalizer, not even its
    import (a fresh interpreter, so no other test has loaded it)."""
    script = """
import sys
from aggregator.content.parse import parse_feed
for body in sys.argv[1:4]:
    parse_feed("u", bytes.fromhex(body))
print("charset_normalizer" in sys.modules)
parse_feed("u", bytes.fromhex(sys.argv[4]))
print("charset_normalizer" in sys.modules)
"""
    title, text = NEWS["shift_jis"]
    bodies = [
        feed(None).encode("utf-8"),
        feed("gb2312").encode("gbk"),
        news("Café", "déjà vu", ' encoding="iso-8859-1"').encode("latin-1"),
        news(title, text).encode("shift_jis"),
    ]
    ran = subprocess.run(
        [sys.executable, "-c", script, *(b.hex() for b in bodies)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.split() == ["False", "True"]
