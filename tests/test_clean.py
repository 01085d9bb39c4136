"""Cleaning, table-driven: tests/data/clean/NAME.in.html must clean to NAME.out.html."""

from __future__ import annotations

import pytest
from conftest import DATA

from aggregator.config import DEFAULT_IFRAME_HOSTS
from aggregator.content.clean import CleanOptions, clean_html, strip_tracking

CASES = DATA / "clean"
BASE = "https://example.com/blog/2024/post.html"
# Per case: the removal selectors (all cases use the default iframe allow-list).
SELECTORS = {"sina-promo": (".appendQr_wrap", ".ori_titlesource", ".article-editor")}
# Per case: the images the cleaner must report, in order.
IMAGES = {
    "comments-and-scripts": (),
    "lazy-images": (
        "https://example.com/img/a.jpg",
        "https://cdn.example.com/b.jpg",
        "https://example.com/blog/2024/c.jpg",
        "https://example.com/img/d-1280.jpg",
        "https://example.com/e.jpg",
    ),
    "relative-urls": ("https://example.com/blog/images/pic.png",),
    "tracking": ("https://example.com/photo.jpg?w=800",),
    "iframes": (),
    "hostile-attributes": ("https://example.com/blog/2024/x",),
    "layout": (),
    "sina-promo": (),
    "media-players": (),
}
NAMES = sorted(p.name.removesuffix(".in.html") for p in CASES.glob("*.in.html"))


def test_every_case_has_a_table_row() -> None:
    assert set(NAMES) == set(IMAGES)


@pytest.mark.parametrize("name", NAMES)
def test_clean(name: str) -> None:
    source = (CASES / f"{name}.in.html").read_text(encoding="utf-8")
    expected = (CASES / f"{name}.out.html").read_text(encoding="utf-8").rstrip("\n")
    options = CleanOptions(SELECTORS.get(name, ()), DEFAULT_IFRAME_HOSTS)
    cleaned = clean_html(source, BASE, options)
    assert cleaned.html == expected
    assert cleaned.images == IMAGES[name]


@pytest.mark.parametrize("name", NAMES)
def test_cleaned_body_is_one_markdown_html_block(name: str) -> None:
    """No blank line and no indented line: Markdown keeps the whole body as raw HTML."""
    source = (CASES / f"{name}.in.html").read_text(encoding="utf-8")
    html = clean_html(source, BASE, CleanOptions(SELECTORS.get(name, ()))).html
    lines = html.split("\n")
    assert all(line.strip() for line in lines)
    assert not any(line.startswith((" ", "\t")) for line in lines)
    assert html.startswith("<div>")
    assert html.endswith("</div>")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/x?utm_source=rss", "https://a.example/x"),
        ("https://a.example/x?id=1&utm_medium=feed&utm_campaign=c", "https://a.example/x?id=1"),
        ("https://a.example/x?fbclid=1&gclid=2&q=%E4%B8%AD", "https://a.example/x?q=%E4%B8%AD"),
        ("https://a.example/x?spm=a.b.c&mc_cid=9#frag", "https://a.example/x#frag"),
        ("https://a.example/x?utm=keep", "https://a.example/x?utm=keep"),
        ("https://a.example/x", "https://a.example/x"),
    ],
)
def test_strip_tracking(url: str, expected: str) -> None:
    assert strip_tracking(url) == expected


@pytest.mark.parametrize("body", ["", "   ", "\x00", "plain text only", "<p>unclosed <b>bold"])
def test_degenerate_bodies_do_not_raise(body: str) -> None:
    cleaned = clean_html(body, BASE)
    assert cleaned.html.startswith("<div>")
    assert "\x00" not in cleaned.html


def test_invalid_selector_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid CSS selector"):
        CleanOptions(["div["])


def test_promo_image_removed_with_its_block_never_becomes_an_image() -> None:
    source = (CASES / "sina-promo.in.html").read_text(encoding="utf-8")
    cleaned = clean_html(source, BASE, CleanOptions([".appendQr_wrap"]))
    assert "343233024.png" not in cleaned.html
    assert cleaned.images == ()


@pytest.mark.parametrize(
    "body",
    [
        '<iframe src="http://[::1"></iframe><p>x</p>',
        '<img src="http://[bad"><a href="http://[::1/x">l</a>',
        '<a href="%%%">pct</a><img data-src="//cdn.example.com/a.jpg">',
    ],
)
def test_malformed_urls_do_not_raise(body: str) -> None:
    cleaned = clean_html(body, BASE, CleanOptions([], DEFAULT_IFRAME_HOSTS))
    assert "<iframe" not in cleaned.html
