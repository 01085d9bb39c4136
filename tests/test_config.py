"""Configuration: validated once, every problem reported with its YAML path and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from aggregator.config import load_config, parse_config
from aggregator.errors import ConfigError


def problems(text: str, tmp_path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", tmp_path)
    return caught.value.problems


def test_the_default_config_is_valid() -> None:
    config = load_config(ROOT / "config.yaml")
    names = [s.key for s in config.sources]
    assert "新浪财经－国內" in names
    sina = config.source("新浪财经－国內")
    assert sina is not None
    assert sina.categories == ("金融", "新浪财经", "新浪财经－国內")
    assert sina.site == "新浪财经"
    assert ".appendQr_wrap" in sina.remove
    assert Path(sina.url).is_file()  # a bundled local file, resolved against the config
    assert Path(config.settings.posts_dir).is_absolute()
    assert all(s.is_local for s in config.sources if s.enabled)


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    text = """\
settings:
  posts_dirx: a
  front_matter:
    date_style: bogus
    timezone: Mars/Base
  remove: ["div[", ".ok"]
sources:
  - url: ftp://example.com/feed
    categories: []
  - url: https://a.example/feed
    categories: [金融, 新浪财经, 国内]
    enabled: true
    enabled: false
  - url: https://b.example/feed
    categories: [x, y, 国内]
    keep_max: -1
  - categories: [z]
  - url: "https://"
    categories: [w]
    typo_key: 1
"""
    assert problems(text) == [
        "c.yaml:2: settings.posts_dirx: unknown key (check its spelling)",
        "c.yaml:4: settings.front_matter.date_style: Input should be 'rfc822' or 'iso8601'",
        "c.yaml:5: settings.front_matter.timezone: unknown time zone 'Mars/Base'",
        "c.yaml:6: settings.remove: invalid CSS selector 'div[': Expected ident or '*', got <EOF at 4>",
        "c.yaml:8: sources[0].url: URL scheme 'ftp' is not supported (use http, https or a path)",
        "c.yaml:9: sources[0].categories: Value should have at least 1 item after validation, not 0",
        "c.yaml:13: sources[1].enabled: duplicate key",
        "c.yaml:14: sources[2]: source name '国内' is already used by sources[1] "
        "(give one of them a distinct `name`)",
        "c.yaml:16: sources[2].keep_max: Input should be greater than 0",
        "c.yaml:17: sources[3].url: required key is missing",
        "c.yaml:18: sources[4].url: URL 'https://' has no host",
        "c.yaml:20: sources[4].typo_key: unknown key (check its spelling)",
    ]


def test_yaml_syntax_error_names_its_line() -> None:
    assert problems("sources:\n  - url: [unclosed\n    categories: [a]\n") == [
        "c.yaml:3: YAML syntax error: expected ',' or ']', but got ':'"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "c.yaml:1: the top level must be a mapping"),
        ("sources: {url: x}\n", "c.yaml:1: sources: Input should be a valid tuple"),
        (
            "sources:\n  - url: x\n    categories: 5\n",
            "c.yaml:3: sources[0].categories: Input should be a valid tuple",
        ),
        (
            "settings:\n  fetch:\n    timeout: 0\n",
            "c.yaml:3: settings.fetch.timeout: Input should be greater than 0",
        ),
        (
            "settings:\n  front_matter:\n    author: byline\n",
            "c.yaml:3: settings.front_matter.author: Input should be 'site' or 'entry'",
        ),
        (
            "sources:\n  - url: x\n    categories: [a]\n    enabled: maybe\n",
            "c.yaml:4: sources[0].enabled: Input should be a valid boolean, unable to interpret input",
        ),
        (
            "sources:\n  - url: javascript:alert(1)\n    categories: [a]\n",
            "c.yaml:2: sources[0].url: URL scheme 'javascript' is not supported (use http, https or a path)",
        ),
        (
            "settings:\n  server:\n    trusted_hosts: [feeds.example.org, 'https://x.example/']\n",
            "c.yaml:3: settings.server.trusted_hosts: 'https://x.example/' is not a host name with an optional :port",
        ),
        (
            "settings:\n  server:\n    connection_limit: 5\n",
            "c.yaml:3: settings.server.connection_limit: Input should be greater than or equal to 10",
        ),
        (  # 4 levels of 100 four-byte characters and 3 separators: over 1,000 bytes
            "sources:\n  - url: x\n    categories: [" + ", ".join(["𠀀" * 100] * 4) + "]\n",
            "c.yaml:3: sources[0].categories: a category path may be at most 1,000 bytes "
            "in UTF-8, this one is 1,603: shorten its names",
        ),
    ],
)
def test_single_problems(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_empty_file_is_a_valid_empty_config(tmp_path: Path) -> None:
    config = parse_config("", "c.yaml", tmp_path)
    assert config.sources == ()
    assert config.settings.posts_dir == str(tmp_path / "site/source/_posts")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = parse_config(
        "settings:\n  database: d/x.sqlite\n  fetch:\n    file_roots: [/]\nsources:\n  - url: feeds/a.xml\n    categories: [a]\n"
        "  - url: file:///srv/b.xml\n    categories: [b]\n",
        "c.yaml",
        tmp_path,
    )
    assert config.settings.database == str(tmp_path / "d" / "x.sqlite")
    assert config.sources[0].url == str(tmp_path / "feeds" / "a.xml")
    assert config.sources[1].url == "/srv/b.xml"


def test_names_site_and_author() -> None:
    config = parse_config(
        "sources:\n"
        "  - {url: 'https://a.example/f', categories: [金融, 新浪财经, 国内]}\n"
        "  - {url: 'https://a.example/g', categories: [Solo]}\n"
        "  - {url: 'https://a.example/h', categories: [A, B], name: h, author: Someone}\n",
        "c.yaml",
    )
    assert [(s.key, s.site) for s in config.sources] == [
        ("国内", "新浪财经"),
        ("Solo", "Solo"),
        ("h", "Someone"),
    ]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_sources_pasted_under_outputs_are_named_as_such() -> None:
    text = """\
sources:
  - url: https://a.example/feed
    categories: [A]
outputs:
  - name: all
  - url: https://b.example/feed
    categories: [B]
    interval: 1h
"""
    found = problems(text)
    assert (
        "c.yaml:6: outputs[1]: looks like a source pasted under `outputs:` (it has interval, "
        "url); move it under `sources:`"
    ) in found
    assert "c.yaml:6: outputs[1].url: unknown key (check its spelling)" in found
    assert not any("outputs[0]" in p for p in found)


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("example.com/feed.xml", "https://example.com/feed.xml"),
        ("www.foo.cn/rss", "https://www.foo.cn/rss"),
        ("news.example.org", "https://news.example.org"),
        ("//example.com/feed", "https://example.com/feed"),
        ("example.com:8080/feed", "https://example.com:8080/feed"),
    ],
)
def test_a_url_without_its_scheme_is_refused_with_a_hint(
    url: str, meant: str, tmp_path: Path
) -> None:
    text = f"sources:\n  - url: {url}\n    categories: [A]\n"
    [problem] = problems(text, tmp_path)
    assert problem == (
        f"c.yaml:2: sources[0].url: {url!r} looks like a host name; did you mean '{meant}'?"
    )


@pytest.mark.parametrize(
    "url",
    ["examples/feeds/example-blog.atom.xml", "feeds/feed.xml", "feed.xml", "site.example/x.xml"],
)
def test_relative_file_paths_stay_valid(url: str, tmp_path: Path) -> None:
    (tmp_path / "examples" / "feeds").mkdir(parents=True)
    (tmp_path / "examples" / "feeds" / "example-blog.atom.xml").write_text("<feed/>")
    (tmp_path / "site.example").mkdir()  # a folder named like a host is still a folder
    (tmp_path / "site.example" / "x.xml").write_text("<rss/>", encoding="utf-8")
    config = parse_config(f"sources:\n  - url: {url}\n    categories: [A]\n", "c.yaml", tmp_path)
    assert config.sources[0].url == str(tmp_path / url)
