"""File names that one static-site generator or file system would confuse stay apart.

Titles that differ only in case, punctuation, spacing or Unicode normalisation are
distinct for us, but Hugo gives them one page URL and keeps one page, silently; macOS and
Windows give them one file. A new article's name must not share its fold
(``convert.fold_path``) with an indexed article, a file or folder in its folder, or an
earlier entry of the same poll: it gets the entry's id as a suffix, as exact namesakes do.

The golden case is a feed file (tests/data/names/NAME.xml) and the article files its poll
writes (NAME.json); ``AGGREGATOR_REGOLD=1`` rewrites the golden (then read the diff).
Hugo (Debian's package, tests/install-tools) then builds every one of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, ROOT, FeedFile, HarnessFactory, MakeConfig, item, rss

from aggregator.content.convert import fold_path

pytestmark = pytest.mark.both_dialects

CASES = DATA / "names"
NAMES = sorted(p.stem for p in CASES.glob("*.xml"))
REGOLD = os.environ.get("AGGREGATOR_REGOLD") == "1"
FOLDER = "Tests/Names"


def relative_files(posts: Path) -> list[str]:
    return sorted(p.relative_to(posts).as_posix() for p in posts.rglob("*.md"))


def entry_ids(posts: Path) -> set[str]:
    found = set()
    for path in posts.rglob("*.md"):
        match = re.search(r"^entry_id: ([0-9a-f]+)$", path.read_text(encoding="utf-8"), re.M)
        assert match is not None, path
        found.add(match.group(1))
    return found


def hugo_pages(posts: Path, site: Path) -> set[str]:
    """The entry_ids of the pages Hugo builds from a posts folder."""
    hugo = shutil.which("hugo")
    assert hugo is not None, "run tests/install-tools first (Debian's hugo)"
    shutil.copytree(ROOT / "tests" / "ssg" / "hugo", site)
    shutil.copytree(posts, site / "content" / "posts")
    result = subprocess.run(
        [hugo, "--quiet"], cwd=site, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = set()
    for page in (site / "public").rglob("index.html"):
        match = re.search(r'<meta name="entry-id" content="([0-9a-f]+)">', page.read_text("utf-8"))
        if match:
            found.add(match.group(1))
    return found


@pytest.mark.parametrize("name", NAMES)
def test_golden_names(
    name: str,
    make_config: MakeConfig,
    harness: HarnessFactory,
    feed_file: FeedFile,
    tmp_path: Path,
) -> None:
    feed = feed_file(f"{name}.xml", (CASES / f"{name}.xml").read_bytes())
    h = harness(make_config([{"url": str(feed), "categories": FOLDER.split("/")}]))
    [outcome] = h.poll()
    assert outcome.ok and outcome.failed == 0
    files = relative_files(h.posts)
    assert outcome.new == len(files)
    golden = CASES / f"{name}.json"
    actual = json.dumps(files, ensure_ascii=False, indent=1) + "\n"
    if REGOLD:
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")
    assert len({fold_path(f) for f in files}) == len(files)
    # Hugo builds a page for every one of them: none is lost to a namesake.
    assert hugo_pages(h.posts, tmp_path / "hugo") == entry_ids(h.posts)


def test_every_input_has_its_golden_and_every_golden_its_input() -> None:
    assert NAMES
    assert {p.stem for p in CASES.glob("*.json")} == set(NAMES)


def one_source(make_config: MakeConfig, feed: Path) -> Path:
    return make_config([{"url": str(feed), "categories": FOLDER.split("/"), "name": "s"}])


def test_a_name_that_folds_like_an_indexed_article_is_suffixed(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    feed = feed_file("f.xml", rss(item("a", "Release Notes")))
    h = harness(one_source(make_config, feed))
    h.poll()
    feed_file("f.xml", rss(item("b", "release notes!") + item("a", "Release Notes")))
    [outcome] = h.poll()
    assert (outcome.new, outcome.unchanged) == (1, 1)
    names = [p.name for p in h.files()]
    assert names[0] == "Release-Notes.md"
    assert re.fullmatch(r"release-notes!-[0-9a-f]{8}\.md", names[1]), names


def test_someone_elses_files_and_folders_count(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    feed = feed_file("f.xml", rss(item("a", "Release Notes") + item("b", "Photos")))
    h = harness(one_source(make_config, feed))
    folder = h.posts / FOLDER
    folder.mkdir(parents=True)
    (folder / "release_notes.html").write_text("<p>mine</p>", encoding="utf-8")
    (folder / "PHOTOS").mkdir()  # a Hugo page bundle, say
    (folder / "PHOTOS" / "index.md").write_text("---\ntitle: mine\n---\n", encoding="utf-8")
    [outcome] = h.poll()
    assert outcome.new == 2
    ours = sorted(p.name for p in folder.glob("*.md"))
    assert len(ours) == 2
    assert all(re.fullmatch(r"(Photos|Release-Notes)-[0-9a-f]{8}\.md", n) for n in ours), ours
    assert (folder / "release_notes.html").read_text(encoding="utf-8") == "<p>mine</p>"


def test_names_are_kept_whatever_the_title_becomes(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    feed = feed_file("f.xml", rss(item("a", "First title") + item("b", "Other")))
    h = harness(one_source(make_config, feed))
    h.poll()
    before = relative_files(h.posts)
    # Retitled: a (now "other") and b's names fold together, yet neither file moves.
    feed_file("f.xml", rss(item("a", "OTHER", "<p>new</p>") + item("b", "Other")))
    [outcome] = h.poll()
    assert outcome.updated == 1
    assert relative_files(h.posts) == before
