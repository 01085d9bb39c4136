"""The dashboard in a real browser: Debian's chromium, headless, driven by playwright,
against `aggregator run` started as a user would. Screenshots go to tmp_path, and to
docs/ when AGGREGATOR_SCREENSHOTS=docs (that is how docs/*.png are made)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA, EXAMPLES, ROOT, MakeConfig, item, rss, start_run, wait_for
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from pytest_httpserver import HTTPServer

CHROMIUM = "/usr/bin/chromium"
SECRET = "browser test secret 42"
DEADLINE = 60.0


def png(width: int, height: int) -> bytes:
    """A small grey PNG, made here (no binary test data in the repository)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x88\x88\x88" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def running(httpserver: HTTPServer, make_config: MakeConfig, tmp_path: Path) -> Iterator[str]:
    image = httpserver.url_for("/img/cover.png")
    httpserver.expect_request("/img/cover.png").respond_with_data(
        png(64, 36), content_type="image/png"
    )
    body = f'<p>第一段正文，带一张图。</p><p><img src="{image}" width="640" height="360" alt="封面"></p>'
    httpserver.expect_request("/news").respond_with_data(
        rss(
            item("n1", "浏览器里的第一篇文章", body, link="https://news.example.cn/1")
            + item(
                "n2",
                "第二篇：很长很长的标题" * 6,
                "<p>第二篇正文</p>",
                link="https://news.example.cn/2",
            )
        ),
        content_type="application/rss+xml",
    )
    config = make_config(
        [
            {
                "url": httpserver.url_for("/news"),
                "categories": ["新闻", "本地示例站", "要闻频道"],
                "name": "news",
            },
            {
                # Served, not read from the repository: the screenshots in docs/ must not
                # show a path of the machine that made them (posts_dir and database are
                # relative to the config's folder, the process's working directory).
                "url": httpserver.url_for("/sina"),
                "categories": ["金融", "新浪财经", "新浪财经－国內"],
                "remove": [".appendQr_wrap", ".ori_titlesource", ".article-editor"],
            },
            {
                "url": httpserver.url_for("/gone"),
                "categories": ["新闻", "本地示例站", "失效频道"],
                "name": "broken",
            },
        ],
        schedule={"startup_spread": 0, "interval": 3600},
        server={"port": 0, "timezone": "Asia/Shanghai"},
    )
    httpserver.expect_request("/gone").respond_with_data("gone", status=410)
    # A site whose home page names two feeds, for the "Add source" form.
    pages = DATA / "discover"
    for path, name, kind in (
        ("/", "two-alternates.html", "text/html; charset=utf-8"),
        ("/blog/atom.xml", "atom.xml", "application/atom+xml"),
        ("/blog/comments/feed.json", "comments.json", "application/feed+json"),
    ):
        httpserver.expect_request(path).respond_with_data(
            (pages / name).read_bytes(), content_type=kind
        )
    httpserver.expect_request("/sina").respond_with_data(
        (EXAMPLES / "sina-finance-china.rss.xml").read_bytes(), content_type="application/rss+xml"
    )
    log = tmp_path / "run.log"
    process, base = start_run(config, log, {"AGGREGATOR_ADMIN_SECRET": SECRET})
    try:
        wait_for(lambda: len(list((tmp_path / "posts").rglob("*.md"))) == 3, "the articles")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0, log.read_text()


def shoot(page: Page, name: str, tmp_path: Path) -> None:
    # No page shows where the machine keeps things (the article page: its file under
    # posts_dir, not the absolute path).
    text = page.locator("body").inner_text()
    assert str(tmp_path) not in text and str(ROOT) not in text, name
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("AGGREGATOR_SCREENSHOTS") == "docs":
        page.screenshot(path=str(ROOT / "docs" / f"{name}.png"), full_page=True)


def test_dashboard_in_chromium(running: str, httpserver: HTTPServer, tmp_path: Path) -> None:
    site = httpserver.url_for("/")  # a home page with two feeds (see `running`)
    assert Path(CHROMIUM).exists(), "run tests/install-tools first (Debian's chromium)"
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport={"width": 1280, "height": 900}, color_scheme=scheme
                )
                page = context.new_page()
                page.on("console", lambda m: _console(m, problems))
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.goto(running)
                page.wait_for_selector("#sources tbody tr")
                assert page.locator("#sources tbody tr").count() == 3
                assert "gone" in page.locator("#sources").inner_text()
                shoot(page, f"overview-{scheme}", tmp_path)
                context.close()

            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: _console(m, problems))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(running)
            # Sorting is a link: the server orders the sources (every page, not only this one).
            page.click("#sources th a:has-text('State')")
            page.wait_for_url("**/?sort=state")
            assert "gone" in page.locator("#sources tbody tr").first.inner_text()
            page.click("#sources th a:has-text('State')")
            page.wait_for_url("**/?sort=-state")
            assert "ok" in page.locator("#sources tbody tr").first.inner_text()
            # A subscribe link gives a feed.
            with page.expect_response(lambda r: r.url.endswith(".rss")) as feed:
                page.click("#feeds a:has-text('RSS') >> nth=0")
            assert feed.value.status == 200
            assert "application/rss+xml" in feed.value.headers["content-type"]
            # The article page shows the cleaned article and its image.
            page.goto(running)
            page.click("#articles a:has-text('浏览器里的第一篇文章')")
            page.wait_for_function(
                "() => { const i = document.querySelector('article.body img');"
                " return i && i.complete && i.naturalWidth > 0; }"
            )
            assert page.locator("article.body img").evaluate("img => img.naturalWidth") == 64
            assert "title: '浏览器里的第一篇文章'" in page.locator("#front-matter").inner_text()
            shoot(page, "article", tmp_path)
            # The gone source suggests a config edit; log in and refresh it.
            page.goto(running + "sources/broken")
            assert "enabled: false" in page.locator("#suggestion").inner_text()
            assert page.locator("#refresh").count() == 0  # not logged in: no buttons
            page.goto(running + "login")
            page.fill("input[name=secret]", SECRET)
            page.click("button[type=submit]")
            page.wait_for_selector("text=Logged in.")
            page.goto(running + "sources/broken")
            page.click("#refresh")
            page.wait_for_selector("text=Refresh of broken scheduled.")
            shoot(page, "source", tmp_path)
            # The search box is a GET form the server answers: it works without JavaScript.
            nojs = browser.new_context(java_script_enabled=False)
            plain = nojs.new_page()
            plain.goto(running)
            plain.fill("#source-search", "金融")
            plain.press("#source-search", "Enter")
            plain.wait_for_url("**/?q=*")
            assert plain.locator("#sources tbody tr").count() == 1
            assert "金融" in plain.locator("#sources").inner_text()
            # The feed list is searched too: 金融 and its two levels below.
            assert plain.locator("#feeds li").count() == 3
            nojs.close()
            # Phone width: nothing overflows the page sideways.
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            small = phone.new_page()
            small.on("console", lambda m: _console(m, problems))
            small.goto(running)
            small.wait_for_selector("#sources")
            assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            shoot(small, "overview-phone", tmp_path)
            phone.close()
            # Add a source: a web page with two feeds, the second one chosen; `run`
            # reloads the edited config and the overview lists it.
            page.goto(running)
            page.click("#add-source-link")
            page.fill("input[name=url]", site)
            page.fill("input[name=categories]", "技术 / 阮一峰 / 评论")
            page.click("#add-source button[type=submit]")
            page.wait_for_selector("#choose-feed")
            assert page.locator("input[name=feed]").count() == 2
            page.check("input[name=feed] >> nth=1")
            page.click("#choose-feed button[type=submit]")
            page.wait_for_selector("text=Added 评论 (技术 › 阮一峰 › 评论).")
            page.goto(running)
            assert page.locator("#sources tbody tr").count() == 4
            assert "技术 › 阮一峰 › 评论" in page.locator("#sources").inner_text()
            context.close()
        finally:
            browser.close()
    assert problems == []


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type in ("error", "warning"):
        where = message.location.get("url", "") if message.location else ""
        problems.append(f"console {message.type}: {message.text} ({where})")
