"""The rule language: a table of matches, ingest drops with their audit, rebuild, dry run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FeedFile, HarnessFactory, MakeConfig, item, rss

from aggregator.cli import cli
from aggregator.config import parse_config
from aggregator.content.filter import Rule, verdict
from aggregator.errors import ConfigError
from aggregator.models import Person

pytestmark = pytest.mark.both_dialects


@dataclass(frozen=True)
class Item:
    title: str = "Python 3.13 发布：更快的解释器"
    summary: str = "摘要 summary"
    body_html: str = "<p>Body with <b>ＦＵＬＬ</b>-width text and 广告</p>"
    author: str = "Example Blog"  # the site
    authors: tuple[Person, ...] = ()  # the entry's own: none
    link: str | None = "https://blog.example.org/python?utm=x"
    tags: tuple[str, ...] = ("python", "Release")
    categories: tuple[str, ...] = ("Tech", "Example Blog", "Engineering")


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        (Rule("block", "python"), True),  # keywords ignore case by default
        (Rule("block", "python", case=True), False),
        (Rule("block", "Python", case=True), True),
        (Rule("block", "发布"), True),  # CJK substring
        (Rule("block", "解释器", field="summary"), False),
        (Rule("block", "full-width", field="content"), True),  # ＦＵＬＬ folds to full
        (Rule("block", "广告", field="content"), True),
        (Rule("block", "<b>", field="content"), False),  # tags are not content
        (Rule("block", "example", field="author"), True),
        (Rule("block", "utm=", field="link"), True),
        (Rule("block", "release", field="tags"), True),
        (Rule("block", "rel", field="tags"), True),
        (Rule("block", "Example Blog › Engineering", field="category"), True),
        (Rule("block", "Tech", field="category"), True),
        (Rule("block", "广告", field="any"), True),
        (Rule("block", "摘要", field="title"), False),
        (Rule("block", r"3\.1[0-9]", match="regex"), True),
        (Rule("block", r"^python", match="regex"), True),
        (Rule("block", r"^python", match="regex", case=True), False),
        (Rule("block", r"\d{4}", match="regex"), False),
    ],
)
def test_rule_matches(rule: Rule, matches: bool) -> None:
    assert rule.matches(Item()) is matches


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("jane", True),  # any of the entry's authors
        ("roe", True),
        ("doe, john", False),  # each name on its own, not the joined line
        ("tips@paper.example", True),  # one named only by an email
        ("example blog", False),  # the site is not the byline of an entry that has one
    ],
)
def test_author_rules_match_the_byline(pattern: str, matches: bool) -> None:
    item = Item(authors=(Person("Jane Doe"), Person("John Roe"), Person("", "tips@paper.example")))
    assert Rule("block", pattern, field="author").matches(item) is matches
    # An entry whose feed names no author is the site's.
    assert Rule("block", "example blog", field="author").matches(Item())


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ((), None),
        ((Rule("block", "java"),), None),
        ((Rule("block", "python"),), "block title contains 'python'"),
        ((Rule("keep", "python", field="tags"),), None),
        ((Rule("keep", "rust", field="tags"),), "no keep rule matched (keep tags contains 'rust')"),
        (
            (Rule("keep", "python", field="tags"), Rule("block", "广告", field="content")),
            "block content contains '广告'",
        ),  # a block rule wins over a keep rule
        (
            (Rule("block", r"^\w+ 3", match="regex", case=True),),
            "block title matches '^\\\\w+ 3' (case-sensitive)",
        ),
    ],
)
def test_verdict(rules: tuple[Rule, ...], expected: str | None) -> None:
    assert verdict(rules, Item()) == expected


@pytest.mark.parametrize("case", [False, True])
def test_a_catastrophic_regex_matches_in_linear_time(case: bool) -> None:
    # Under Python's backtracking re this search does not end (2**100000 ways to fail).
    rule = Rule("block", "(a+)+$", match="regex", case=case)
    assert rule.matches(Item(title="a" * 100_000 + "b")) is False
    assert rule.matches(Item(title="b" + "a" * 100_000)) is True


@pytest.mark.parametrize(
    ("rules_yaml", "line", "problem"),
    [
        (
            "- block: '('\n      match: regex",
            5,
            "sources[0].rules[0]: invalid regular expression '('",
        ),
        (
            "- keep: a\n      block: b",
            5,
            "sources[0].rules[0]: a rule needs exactly one of `keep:` or `block:`",
        ),
        (
            "- field: title",
            5,
            "sources[0].rules[0]: a rule needs exactly one of `keep:` or `block:`",
        ),
        (
            "- block: x\n      field: body",
            6,
            "sources[0].rules[0].field: Input should be 'title', 'summary'",
        ),
        (
            "- block: x\n      match: glob",
            6,
            "sources[0].rules[0].match: Input should be 'keyword' or 'regex'",
        ),
        ("- block: '  '", 5, "sources[0].rules[0]: a rule's pattern is empty"),
        # RE2 matches in linear time; what needs backtracking is refused, saying why.
        (
            "- block: '(a)\\1'\n      match: regex",
            5,
            "sources[0].rules[0]: invalid regular expression '(a)\\\\1': invalid escape "
            "sequence: \\1 (backreferences are not supported: rules use RE2 syntax",
        ),
        (
            "- block: 'a(?!b)'\n      match: regex",
            5,
            "sources[0].rules[0]: invalid regular expression 'a(?!b)': invalid perl operator: "
            "(?! (lookahead and lookbehind are not supported",
        ),
    ],
)
def test_invalid_rules_are_config_errors_with_their_path(
    rules_yaml: str, line: int, problem: str
) -> None:
    text = f"sources:\n  - url: https://a.example/f\n    categories: [a]\n    rules:\n    {rules_yaml}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    [reported] = caught.value.problems
    assert reported.startswith(f"c.yaml:{line}: {problem}")


def test_check_config_refuses_a_backreference_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "sources:\n  - url: https://a.example/f\n    categories: [a]\n    rules:\n"
        "      - block: '(\\w+) \\1'\n        match: regex\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config)])
    assert result.exit_code != 0
    assert f"{config}:5: sources[0].rules[0]: invalid regular expression" in result.output
    assert "backreferences are not supported" in result.output


FEED = rss(
    item("a", "Python 发布", "<p>keep me</p>", link="https://e.example/a")
    + item("b", "每日广告推荐", "<p>ad</p>", link="https://e.example/b")
    + item("c", "Rust news", "<p>rust</p>", link="https://e.example/c")
)


def test_ingest_rules_drop_entries_and_keep_an_audit(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", FEED)
    h = harness(
        make_config(
            [{"url": str(path), "categories": ["A"], "name": "s", "rules": [{"block": "rust"}]}],
            rules=[{"block": "广告"}],
        )
    )
    [outcome] = h.poll()
    assert (outcome.new, outcome.dropped) == (1, 2)
    assert [p.name for p in h.files()] == ["Python-发布.md"]
    audit = {d["title"]: d["dropped_by"] for d in h.store.dropped("s")}
    assert audit == {
        "每日广告推荐": "block title contains '广告'",
        "Rust news": "block title contains 'rust'",
    }
    assert h.store.count_entries("s") == 1
    assert all(d["dropped_at"] == h.now for d in h.store.dropped("s"))


def test_rebuild_applies_changed_rules_both_ways(
    make_config: MakeConfig, harness: HarnessFactory, feed_file: FeedFile
) -> None:
    path = feed_file("f.xml", FEED)
    config_path = make_config([{"url": str(path), "categories": ["A"], "name": "s"}])
    h = harness(config_path)
    h.poll()
    assert len(h.files()) == 3
    names = sorted(p.name for p in h.files())
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(
        text.replace("name: s", "name: s\n  rules:\n  - keep: python"), encoding="utf-8"
    )
    h.close()
    h.reload()
    [outcome] = h.poller.rebuild(h.config.sources)
    assert outcome.dropped == 2
    assert [p.name for p in h.files()] == ["Python-发布.md"]
    assert len(h.store.dropped("s")) == 2
    config_path.write_text(text, encoding="utf-8")  # the rule goes again
    h.close()
    h.reload()
    h.poller.rebuild(h.config.sources)
    assert sorted(p.name for p in h.files()) == names
    assert h.store.dropped("s") == []


def test_test_rules_dry_run(
    make_config: MakeConfig, feed_file: FeedFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = feed_file("f.xml", FEED)
    config_path = make_config([{"url": str(path), "categories": ["A"], "name": "s"}])
    monkeypatch.chdir(tmp_path)  # the commands find config.yaml where they run

    def run(*args: str) -> str:
        """The command in this process (the dry run's logic, not start-up, is tested)."""
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    run("poll")
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(
        text.replace("name: s", "name: s\n  rules:\n  - block: 广告"), encoding="utf-8"
    )
    out = run("test-rules")
    assert "DROP  by block title contains '广告' s: 每日广告推荐  [stored; was kept]" in out
    assert out.rstrip().endswith(
        "3 entries: 2 kept, 1 dropped, 1 would change (run `aggregator rebuild` to apply the rules to stored entries)"
    )
    fetched = run("test-rules", "--fetch")
    assert "6 entries: 4 kept, 2 dropped, 1 would change" in fetched
    assert "[fetched]" in fetched
    assert len(list((tmp_path / "posts").rglob("*.md"))) == 3  # a dry run changes nothing
