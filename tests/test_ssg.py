"""The article folder as Hexo and Hugo read it: real builds, no mocks.

Articles are made by a poll of the bundled examples plus titles built to break YAML;
then Hexo (from the npm registry, installed by tests/install-tools) loads them and
Hugo (Debian's package) builds a site from them. Both must see the same titles, dates
and categories we wrote, render every paragraph, and leave no template syntax behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DATA, EXAMPLES, ROOT, HarnessFactory, MakeConfig, item, rss

SSG = ROOT / "tests" / "ssg"
MEDIA = DATA / "authors-media"
TITLES = [
    "He said \"don't\" — 'quoted': #1",
    "[bracket] - dash --- {{ braces }} {% tag %}",
    "null",
    "2024-01-01",
]


@pytest.fixture
def posts(make_config: MakeConfig, harness: HarnessFactory, tmp_path: Path) -> Path:
    tricky = tmp_path / "tricky.xml"
    body = "<p>One {{ x }} and {% y %}.</p>\n<pre><code>    indented\n\n    code</code></pre><p>Two.</p>"
    tricky.write_text(
        rss(
            "".join(
                item(
                    f"t{n}",
                    t.replace("&", "&amp;"),
                    body,
                    date=f"Wed, 0{n + 1} May 2024 08:30:00 +0800",
                )
                for n, t in enumerate(TITLES)
            )
        ),
        encoding="utf-8",
    )
    h = harness(
        make_config(
            [
                {
                    "url": str(EXAMPLES / "sina-finance-china.rss.xml"),
                    "categories": ["金融", "新浪财经", "新浪财经－国內"],
                    "remove": [".appendQr_wrap", ".ori_titlesource", ".article-editor"],
                },
                {
                    "url": str(EXAMPLES / "example-daily-gbk.rss.xml"),
                    "categories": ["新闻", "示例日报", "要闻"],
                },
                {
                    "url": str(EXAMPLES / "example-blog.atom.xml"),
                    "categories": ["Tech", "Example Blog", "Engineering"],
                    "name": "blog",
                },
                {"url": str(tricky), "categories": ["Tests", "Tricky"], "name": "tricky"},
                # Bylines (a CJK name among them) and enclosures with their players.
                *(
                    {"url": str(MEDIA / f"{name}.xml"), "categories": ["Media", name]}
                    for name in ("newspaper.rss", "several-authors.atom", "podcast.rss")
                ),
            ],
            fetch={"file_roots": [str(tmp_path), str(EXAMPLES), str(MEDIA)]},
        )
    )
    assert all(o.ok for o in h.poll())
    return h.posts


def written(posts: Path) -> dict[str, dict[str, Any]]:
    """What we wrote: front matter by file, with the body's paragraph count."""
    found = {}
    for path in posts.rglob("*.md"):
        _, front, body = path.read_text(encoding="utf-8").split("---\n", 2)
        data = yaml.safe_load(front)
        data["paragraphs"] = body.count("<p>")
        data["pres"] = body.count("<pre>")
        found[str(path.relative_to(posts))] = data
    return found


def iso(date: object) -> str:
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(str(date)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_hexo_reads_every_article_as_written(posts: Path, tmp_path: Path) -> None:
    assert (SSG / "hexo" / "node_modules" / "hexo").is_dir(), "run tests/install-tools first"
    site = tmp_path / "hexo"
    site.mkdir()
    for name in ("package.json", "_config.yml", "check.js"):
        shutil.copy(SSG / "hexo" / name, site / name)
    (site / "node_modules").symlink_to(SSG / "hexo" / "node_modules")
    shutil.copytree(posts, site / "source" / "_posts")
    result = subprocess.run(
        ["node", "check.js"], cwd=site, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    hexo = {
        json.loads(line)["source"].removeprefix("_posts/"): json.loads(line)
        for line in result.stdout.splitlines()
    }
    ours = written(posts)
    assert set(hexo) == set(ours)
    for path, front in ours.items():
        post = hexo[path]
        assert post["title"] == front["title"], path
        assert post["date"].removesuffix(".000Z") == iso(front["date"]), path
        assert post["categories"] == front["categories"], path
        assert post["tags"] == front.get("tags", []), path
        assert post["paragraphs"] == front["paragraphs"], path  # marked kept every <p>
        assert post["codeBlocks"] == front["pres"], path  # no indentation became code
        assert not post["templateLeft"], path  # {{ }} and {% %} did not reach the template engine
        assert post["link"] == front.get("link"), path
        assert post["headimg"] == front["headimg"], path
        assert post["author"] == front["author"], path
        assert post["byline"] == front.get("byline"), path
        assert post["enclosures"] == front.get("enclosures"), path


def test_hugo_builds_a_site_from_the_articles(posts: Path, tmp_path: Path) -> None:
    hugo = shutil.which("hugo")
    assert hugo is not None, "run tests/install-tools first (Debian's hugo)"
    site = tmp_path / "hugo"
    shutil.copytree(SSG / "hugo", site)
    shutil.copytree(posts, site / "content" / "posts")
    result = subprocess.run(
        [hugo, "--quiet"], cwd=site, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = {p for p in (site / "public" / "posts").rglob("index.html") if p.parent.name != "posts"}
    ours = written(posts)
    assert len(pages) == len(ours)
    by_id = {}
    for page_file in pages:
        html = page_file.read_text(encoding="utf-8")
        found = re.search(r'<meta name="entry-id" content="([0-9a-f]+)">', html)
        assert found is not None, page_file
        by_id[found.group(1)] = html
    for path, front in ours.items():
        page = by_id[str(front["entry_id"])]
        title = re.search(r"<h1>(.*?)</h1>", page, re.S)
        assert title is not None
        assert unescape(title.group(1)) == front["title"], path
        assert f"<time>{iso(front['date'])}Z</time>" in page, path
        for category in front["categories"]:
            assert f"<li>{category}</li>" in page, path
        head = page.split("<h1>", 1)[0]

        def meta(name: str, head: str = head) -> list[str]:
            return [
                unescape(v) for v in re.findall(rf'<meta name="{name}" content="([^"]*)">', head)
            ]

        assert meta("author") == [str(front["author"])], path
        assert meta("byline") == ([front["byline"]] if "byline" in front else []), path
        assert meta("enclosure") == [e["url"] for e in front.get("enclosures", [])], path
        assert page.count("<p>") == front["paragraphs"], path
        assert page.count("<pre>") == front["pres"], path
        assert "raw HTML omitted" not in page
        body = page.split("<main>", 1)[1]
        assert "{{" not in body and "{%" not in body, path  # braces in bodies stay entities
