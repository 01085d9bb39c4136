"""Conversion: front matter that any YAML reader gets back exactly, names, identity."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
import yaml

from aggregator.content.clean import CleanOptions, clean_html, sanitise
from aggregator.content.convert import (
    MAX_NAME_BYTES,
    TITLE_CHARS,
    RenderOptions,
    SourceView,
    alt_key,
    article_dir,
    article_name,
    assign_keys,
    bounded_key,
    convert_entry,
    derive_title,
    entry_key,
    fold_name,
    fold_path,
    format_date,
    keep_one_per_entry,
    media_players,
    pick_image,
    render_article,
    safe_segment,
    trusted_date,
    untrusted_dates,
)
from aggregator.models import Article, Enclosure, ParsedEntry, Person

WHEN = datetime(2021, 10, 12, 9, 0, 27, tzinfo=UTC)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # the time of the poll
SEED_KEYS = ["title", "categories", "headimg", "author", "comments", "date", "thumbnail"]
# hexo-front-matter's split (lib/split.js): the block between the first two --- lines.
HEXO_SPLIT = re.compile(
    r"^(-{3,}|;{3,})[\r\n]{1,2}([\s\S]+?)[\r\n]{1,2}\1(?:$|[\r\n]{1,2}([\s\S]*)$)"
)


def entry(**changes: object) -> ParsedEntry:
    base: dict[str, object] = {
        "guid": "g-1",
        "link": "https://example.com/a?utm_source=rss",
        "title": "A title",
        "content_html": "<p>Body {{ x }}</p>",
        "summary_html": "",
        "published": WHEN,
        "updated": None,
        "authors": (),
        "tags": ("t1", "标签"),
        "images": (),
    }
    base.update(changes)
    # The fields travel as one table of objects: the dataclass's own types are not checked.
    return ParsedEntry(**base)  # type: ignore[arg-type]


VIEW = SourceView("src", ("金融", "新浪财经", "新浪财经－国內"), "新浪财经", CleanOptions())


def render(article: Article, options: RenderOptions | None = None) -> tuple[dict[str, object], str]:
    text = render_article(article, "uid123", WHEN, options or RenderOptions())
    match = HEXO_SPLIT.match(text)
    assert match is not None, text
    return yaml.safe_load(match.group(2)), match.group(3)


HOSTILE_TITLES = [
    "He said \"don't\" — 'quoted' twice",
    "Key: value # not a comment",
    "[leading bracket] stays",
    "- leading dash",
    "line one\nline two",
    "---",
    "before\n---\nafter",
    "{{ hexo_tag }} and {% raw %}",
    "&anchor *alias !tag %directive @at `tick` |pipe >fold",
    "null",
    "true",
    "2024-01-01",
    "0o17",
    "1e3",
    "  ",
    "trailing spaces   ",
    "tab\tinside",
    "全角：冒号，“引号”与『括号』",
    "emoji 🎉 and 𠀀",
    "?question",
    "' leading single quote",
    '" leading double quote',
    "a" * 3000,
]


@pytest.mark.parametrize("title", HOSTILE_TITLES, ids=range(len(HOSTILE_TITLES)))
def test_hostile_titles_round_trip(title: str) -> None:
    article = convert_entry(entry(title=title), VIEW, NOW)
    front, _body = render(article)
    expected = title.strip() or "Body {{ x }}"  # a blank title: the body's first words
    if len(expected) > TITLE_CHARS:  # a huge title is cut, with an ellipsis
        expected = expected[: TITLE_CHARS - 1] + "…"
    assert front["title"] == expected
    assert list(front)[:7] == SEED_KEYS


def test_control_characters_never_reach_yaml() -> None:
    article = convert_entry(entry(title="bell\x07 nul\x00 esc\x1b c1\x85 ok"), VIEW, NOW)
    front, _ = render(article)
    assert front["title"] == "bell nul esc c1 ok"


def test_front_matter_keys_order_and_values() -> None:
    article = convert_entry(entry(images=("https://img.example.com/cover.jpg",)), VIEW, NOW)
    text = render_article(article, "uid123", WHEN, RenderOptions())
    front, body = render(article)
    assert list(front) == [*SEED_KEYS, "link", "tags", "entry_id"]
    assert front["categories"] == ["金融", "新浪财经", "新浪财经－国內"]
    assert front["author"] == "新浪财经"
    assert front["comments"] is False
    assert front["date"] == "Tue, 12 Oct 2021 09:00:27 GMT"
    assert front["headimg"] == front["thumbnail"] == "https://img.example.com/cover.jpg"
    assert front["link"] == "https://example.com/a"
    assert front["tags"] == ["t1", "标签"]
    assert front["entry_id"] == "uid123"
    # The seed quotes the title and the image URLs.
    assert "\ntitle: 'A title'\n" in text
    assert "{" not in body
    assert "&#123;&#123; x &#125;&#125;" in body


def test_braces_are_escaped_in_the_body_only() -> None:
    article = convert_entry(entry(title="{{ t }}"), VIEW, NOW)
    front, body = render(article)
    assert front["title"] == "{{ t }}"
    assert "&#123;&#123; x &#125;&#125;" in body
    _, raw_body = render(article, RenderOptions(escape_braces=False))
    assert "{{ x }}" in raw_body


@pytest.mark.parametrize(
    ("style", "zone", "expected"),
    [
        ("rfc822", "UTC", "Tue, 12 Oct 2021 09:00:27 GMT"),
        ("rfc822", "Asia/Shanghai", "Tue, 12 Oct 2021 09:00:27 GMT"),
        ("iso8601", "UTC", "2021-10-12T09:00:27+00:00"),
        ("iso8601", "Asia/Shanghai", "2021-10-12T17:00:27+08:00"),
    ],
)
def test_date_styles(style: Literal["rfc822", "iso8601"], zone: str, expected: str) -> None:
    options = RenderOptions(date_style=style, timezone=zone)
    assert format_date(WHEN, options) == expected
    front, _ = render(convert_entry(entry(), VIEW, NOW), options)
    assert str(front["date"]) == expected


def test_one_digit_day_and_named_zone_are_rewritten_from_utc() -> None:
    # The feed said "Tue, 1 Oct 2021 08:00:00 CST"; parse gives UTC, convert writes UTC.
    utc = datetime(2021, 10, 1, 14, 0, 0, tzinfo=UTC)
    assert format_date(utc, RenderOptions()) == "Fri, 01 Oct 2021 14:00:00 GMT"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Hello World", "Hello-World"),
        (
            "政企合作促数字化转型 上海虹口区首推转型创新基地",
            "政企合作促数字化转型-上海虹口区首推转型创新基地",
        ),
        ('a/b\\c:d*e?f"g<h>i|j', "a-b-c-d-e-f-g-h-i-j"),
        ("../../etc/passwd", "etc-passwd"),
        ("/absolute/path", "absolute-path"),
        (".hidden", "hidden"),
        ("...", "untitled"),
        ("", "untitled"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("lpt1", "_lpt1"),
        ("console", "console"),
        ("tab\tand\nnewline", "tab-and-newline"),
        ("全角　空格", "全角-空格"),
        ("hash # and 100%", "hash-and-100"),
        ("trailing dot.", "trailing-dot"),
        ("---", "untitled"),
        ("ctrl\x00\x1fchars", "ctrl-chars"),
    ],
)
def test_safe_segment(title: str, expected: str) -> None:
    assert safe_segment(title) == expected


def test_long_cjk_name_is_cut_on_a_character_boundary() -> None:
    name = article_name("长" * 300)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name.endswith(".md")
    name.encode("utf-8").decode("utf-8")  # a cut inside a character would not decode
    suffixed = article_name("长" * 300, "0123456789abcdef")
    assert len(suffixed.encode("utf-8")) <= MAX_NAME_BYTES
    assert suffixed.endswith("-01234567.md")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("The Restful Web (Amazon's SQS)", "The Restful Web: Amazon's SQS"),  # one Hugo URL
        ("Release Notes", "release-notes"),  # case; Hugo and Jekyll make spaces "-"
        ("a.b c", "a_b-c"),  # Jekyll: any run of other characters is one "-"
        ("Café", "Cafe\u0301"),  # NFC and NFD: one name on macOS
        ("Résumé", "RESUME"),  # Hugo's removePathAccents
        ("Straße", "STRASSE"),  # caseless: ß is ss
        ("ＡＢＣ１２３", "abc123"),  # full width letters and digits
        ("İstanbul", "istanbul"),
        ("x ① Ⅻ ™", "x"),  # Hugo keeps letters and decimal digits only: these go
        ("新浪 财经", "新浪·财经"),
    ],
)
def test_names_one_generator_or_file_system_confuses_fold_together(one: str, other: str) -> None:
    assert fold_name(one) == fold_name(other)
    assert fold_name(article_name(one)) == fold_name(article_name(other))


@pytest.mark.parametrize(
    ("one", "other"),
    [("Post 1", "Post 2"), ("ab", "ba"), ("新浪财经", "新浪財經"), ("Ελλάδα", "Ελλαδι")],
)
def test_names_that_differ_in_letters_or_digits_keep_their_folds_apart(
    one: str, other: str
) -> None:
    assert fold_name(one) != fold_name(other)


def test_a_path_folds_its_folders_and_its_name_without_the_extension() -> None:
    assert fold_path("Tech/Example Blog/Post.md") == "tech/exampleblog/post"
    assert fold_path("tech/example-blog/POST.html") == "tech/exampleblog/post"
    assert fold_path("Tech/v1.2") == "tech/v1"  # a file: its extension goes
    assert fold_path("Tech/v1.2", extension=False) == "tech/v12"  # a folder's name stays whole
    assert fold_path("Tech/.md") == "tech/md"  # no stem: nothing to leave out


def test_article_dir_keeps_cjk_and_full_width_names() -> None:
    assert article_dir(("金融", "新浪财经", "新浪财经－国內")) == (
        "金融",
        "新浪财经",
        "新浪财经－国內",
    )
    assert article_dir(("a/b", "..", "")) == ("a-b", "uncategorised", "uncategorised")


def test_entry_key_prefers_guid_then_link_then_hash() -> None:
    assert entry_key(entry()) == "g-1"
    assert entry_key(entry(guid=None)) == "https://example.com/a?utm_source=rss"
    hashed = entry_key(entry(guid=None, link=None))
    assert hashed.startswith("sha1:")
    assert hashed == entry_key(entry(guid=None, link=None))
    assert hashed != entry_key(entry(guid=None, link=None, title="Other"))
    assert alt_key(entry()) != alt_key(entry(title="Other"))


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        ("g-1", True),
        ("x" * 1000, True),  # at the bound
        ("x" * 1001, False),
        ("é" * 500, True),  # 1,000 bytes of UTF-8
        ("é" * 501, False),  # 1,002: an index holds bytes, so bytes are counted
    ],
)
def test_a_key_over_the_bound_is_kept_as_its_digest(key: str, kept: bool) -> None:
    digest = "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    assert bounded_key(key) == (key if kept else digest)


def test_a_long_guid_or_link_gives_a_short_key_and_alt_key() -> None:
    long = "https://example.com/" + "a" * 2000
    assert entry_key(entry(guid=f" {long} ")) == bounded_key(long)  # stripped first
    assert entry_key(entry(guid=None, link=long)) == bounded_key(long)
    alt = alt_key(entry(guid=long))
    assert alt.startswith(bounded_key(long) + "#") and len(alt) == 71 + 13
    assert alt != alt_key(entry(guid=long, title="Other"))


@pytest.mark.parametrize(
    ("entries", "stored", "expected"),
    [
        # Unique keys: plain keys.
        ([("a", ("a#1",)), ("b", ("b#1",))], {}, ["a", "b"]),
        # One key for two different items, nothing stored: the first takes the plain key.
        ([("g", ("g#1",)), ("g", ("g#2",))], {}, ["g", "g#2"]),
        # The second item is the one stored under the plain key.
        ([("g", ("g#1",)), ("g", ("g#2",))], {"g": "g#2"}, ["g#1", "g"]),
        # Later poll: an item once stored under its alt key keeps it, even alone.
        ([("g", ("g#2",))], {"g": "g#1", "g#2": "g#2"}, ["g#2"]),
        # Alone, and the plain key's stored item changed its title: still the plain key.
        ([("g", ("g#9",))], {"g": "g#1"}, ["g"]),
        # Two versions of one entry, stored apart by an older version (its first under
        # the plain key, the rest under the last's alt key): the one kept updates the
        # alt key's article, and no third one is made.
        ([("g", ("g#2", "g#1"))], {"g": "g#1", "g#2": "g#2"}, ["g#2"]),
        # ... and when the kept version is the first one: still that article.
        ([("g", ("g#1", "g#2"))], {"g": "g#1", "g#2": "g#2"}, ["g#2"]),
        # The plain key's item, known by any of its versions' alt keys.
        ([("g", ("g#3", "g#1")), ("g", ("g#2",))], {"g": "g#1"}, ["g", "g#2"]),
    ],
)
def test_assign_keys(
    entries: list[tuple[str, tuple[str, ...]]], stored: dict[str, str], expected: list[str]
) -> None:
    assert assign_keys(entries, stored) == expected


@pytest.mark.parametrize(
    ("declared", "body", "expected"),
    [
        (
            ("https://a.example/thumb.jpg",),
            ("https://a.example/body.jpg",),
            "https://a.example/thumb.jpg",
        ),
        ((), ("https://a.example/body.jpg",), "https://a.example/body.jpg"),
        (("data:image/png;base64,xx",), (), ""),
        (("https://pixel.wp.com/g.gif",), ("https://a.example/b.jpg",), "https://a.example/b.jpg"),
        ((), (), ""),
    ],
)
def test_pick_image(declared: tuple[str, ...], body: tuple[str, ...], expected: str) -> None:
    assert pick_image(declared, body) == expected


def test_raw_entry_round_trips_through_json() -> None:
    original = entry(
        updated=WHEN,
        authors=(Person("作者", "a@example.com", "https://x.example/me"), Person("B")),
        images=("https://x.example/i.png",),
        enclosures=(Enclosure("https://x.example/a.mp3", "audio/mpeg", 123),),
        content_base="https://x.example/posts/",
    )
    assert ParsedEntry.from_json(original.to_json()) == original
    bare = entry()
    assert ParsedEntry.from_json(bare.to_json()) == bare


def test_raw_entries_stored_by_older_versions_are_read() -> None:
    """Before authors, the entry's author was one string under "author"."""
    new = entry(authors=(Person("Jo"),))
    data = json.loads(new.to_json())
    del data["authors"]
    assert ParsedEntry.from_json(json.dumps({**data, "author": "Jo"})) == new
    assert ParsedEntry.from_json(json.dumps({**data, "author": None})) == entry()


# -- titles of untitled entries ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("  \n ", ""),
        ("Short note", "Short note"),
        ("The first sentence. The second one.", "The first sentence"),
        ("Is it a question? Yes.", "Is it a question?"),
        ("Done!", "Done!"),
        ("… And then. More.", "… And then"),
        # A sentence that would end just past the limit is not a sentence that fits.
        ("w" * 80 + ". More", "w" * 79 + "…"),
        ("Version 2.0 is out. Upgrade now.", "Version 2.0 is out"),
        ("Lower case after a dot, e.g. this. Then more.", "Lower case after a dot, e.g. this"),
        ("今日は晴れ。明日は雨です。", "今日は晴れ"),
        ("你好！世界", "你好！"),
        # Too long: cut on a word boundary, before the 80th character, with an ellipsis.
        (
            "After months of public consultations and several heated meetings, the transport "
            "committee agreed",
            "After months of public consultations and several heated meetings, the transport…",
        ),
        ("word " * 30, " ".join(["word"] * 16) + "…"),
        # No spaces in CJK text: cut between any two characters.
        ("国" * 100, "国" * 79 + "…"),
        # A long first sentence is cut like any long text.
        ("a" * 10 + " " + "b" * 100 + ". Next.", "a" * 10 + " " + "b" * 68 + "…"),
        # One word longer than a title (a URL): cut inside it.
        ("x" * 120, "x" * 79 + "…"),
        # Punctuation before the cut goes.
        (
            "Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi, omicron pi",
            "Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi…",
        ),
    ],
)
def test_derive_title(text: str, expected: str) -> None:
    title = derive_title(text)
    assert title == expected
    assert len(title) <= 80


def test_untitled_entry_takes_its_first_words_everywhere_the_title_goes() -> None:
    article = convert_entry(
        entry(title="", content_html="<p>Hello <b>there</b>. More.</p>"), VIEW, NOW
    )
    assert article.title == "Hello there"
    assert render(article)[0]["title"] == "Hello there"
    assert article_name(article.title) == "Hello-there.md"
    # Text only in the summary: the summary's words.
    article = convert_entry(
        entry(
            title="",
            content_html="<p><img src='https://x.example/a.png'></p>",
            summary_html="<p>From the summary</p>",
        ),
        VIEW,
        NOW,
    )
    assert article.title == "From the summary"
    # No text at all: no title (the file is untitled.md, the feeds say "(untitled)").
    article = convert_entry(entry(title="", content_html=""), VIEW, NOW)
    assert article.title == ""
    # The identity never depends on the made-up title.
    assert alt_key(entry(title="")) == alt_key(entry(title="", content_html="<p>Other</p>"))


# -- dates from the future ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ahead", "trusted"),
    [
        (timedelta(days=-3650), True),
        (timedelta(0), True),
        (timedelta(hours=23, minutes=59), True),
        (timedelta(days=1), True),
        (timedelta(days=1, seconds=1), False),
        (timedelta(days=365 * 77), False),
    ],
)
def test_trusted_date(ahead: timedelta, trusted: bool) -> None:
    when = NOW + ahead
    assert trusted_date(when, NOW) == (when if trusted else None)
    assert trusted_date(None, NOW) is None


def test_a_date_far_ahead_of_the_poll_is_dropped_and_reported() -> None:
    future = datetime(2103, 1, 1, tzinfo=UTC)
    parsed = entry(published=future, updated=WHEN)
    article = convert_entry(parsed, VIEW, NOW)
    assert (article.published, article.updated) == (None, WHEN)
    assert untrusted_dates(parsed, NOW) == (
        "dates more than a day after the poll (2026-01-02T03:04:05+00:00) not trusted: "
        "published 2103-01-01T00:00:00+00:00"
    )
    assert untrusted_dates(entry(), NOW) is None
    # The raw original keeps what the feed said: a later conversion may trust it.
    assert ParsedEntry.from_json(article.raw_json).published == future
    assert convert_entry(parsed, VIEW, future).published == future


# -- one id repeated in a document -------------------------------------------------------


def version(
    title: str = "T",
    link: str | None = "https://e.x/1",
    body: str = "<p>b</p>",
    guid: str = "g",
    **changes: object,
) -> Article:
    """A converted entry, key "g" unless said (its alt key follows its link and title)."""
    return convert_entry(
        entry(guid=guid, title=title, link=link, content_html=body, **changes), VIEW, NOW
    )


DAY1 = datetime(2024, 3, 1, tzinfo=UTC)
DAY2 = datetime(2024, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("versions", "kept", "warnings"),
    [
        # Repeated to the letter: one, no twin.
        ([version(), version()], [1], ["appears 2 times in the document; kept the last ('T')"]),
        # Revisions (same link, other title): the newest, wherever it is.
        (
            [version(updated=DAY1), version("T2", updated=DAY2), version("T3", updated=DAY1)],
            [1],
            ["appears 3 times in the document; kept the newest ('T2')"],
        ),
        # Same title, another link: the same entry too.
        ([version(), version(link="https://e.x/2")], [1], ["kept the last"]),
        # The last has no body: the last with one.
        ([version(), version(body="")], [0], ["kept the last with a body ('T')"]),
        # Titles and links both differ: two items (a constant guid), kept apart.
        (
            [version("A", "https://e.x/a"), version("B", "https://e.x/b")],
            [0, 1],
            ["is given to 2 different items (their titles and links differ): kept apart"],
        ),
        # No links: titles tell items apart.
        ([version("A", None), version("B", None)], [0, 1], ["kept apart"]),
        # A third version that shares the first's link and the second's title: all one.
        (
            [
                version("A", "https://e.x/a"),
                version("B", "https://e.x/b"),
                version("B", "https://e.x/a"),
            ],
            [2],
            ["appears 3 times in the document; kept the last ('B')"],
        ),
    ],
)
def test_keep_one_per_entry(versions: list[Article], kept: list[int], warnings: list[str]) -> None:
    result, said = keep_one_per_entry([version("other", "https://e.x/o", guid="o"), *versions])
    assert result[0].article.key == "o"  # a lone entry is left as it is
    assert [k.article for k in result[1:]] == [versions[i] for i in kept]
    assert len(said) == len(warnings)
    for message, expected in zip(said, warnings, strict=True):
        assert message.startswith("id 'g' ") and expected in message
    for k in result:
        assert k.alt_keys[0] == k.article.alt_key


def test_the_kept_version_carries_every_alt_key_of_its_entry() -> None:
    first, second = version("A"), version("B")
    [one] = keep_one_per_entry([first, second])[0]
    assert one.alt_keys == (second.alt_key, first.alt_key)
    assert one.article == second


# -- authors, enclosures, players ----------------------------------------------------------

PODCAST = (
    Enclosure("https://cdn.example/ep/12.mp3", "audio/mpeg", 29884416),
    Enclosure("https://cdn.example/ep/12.pdf", "", None),
)


def test_byline_and_enclosures_come_after_the_seeds_keys() -> None:
    article = convert_entry(
        entry(
            authors=(Person("Jane Doe", "jane@x.example"), Person("John Roe")), enclosures=PODCAST
        ),
        VIEW,
        NOW,
    )
    front, _ = render(article)
    assert list(front) == [*SEED_KEYS, "link", "tags", "byline", "enclosures", "entry_id"]
    assert front["author"] == "新浪财经"  # the default: the seed's contract, the site
    assert front["byline"] == "Jane Doe, John Roe"
    assert front["enclosures"] == [
        {"url": "https://cdn.example/ep/12.mp3", "type": "audio/mpeg", "length": 29884416},
        {"url": "https://cdn.example/ep/12.pdf"},  # no type or length made up
    ]


def test_front_matter_author_entry_uses_the_byline_else_the_site() -> None:
    options = RenderOptions(author="entry")
    front, _ = render(
        convert_entry(entry(authors=(Person("", "desk@x.example"),)), VIEW, NOW), options
    )
    assert front["author"] == front["byline"] == "desk@x.example"
    front, _ = render(convert_entry(entry(), VIEW, NOW), options)
    assert front["author"] == "新浪财经"
    assert "byline" not in front and "enclosures" not in front
    assert list(front) == [*SEED_KEYS, "link", "tags", "entry_id"]


@pytest.mark.parametrize("name", [*HOSTILE_TITLES[:-1], "a" * 3000, "bell\x07 and c1\x85"])
def test_hostile_bylines_are_plain_yaml_strings(name: str) -> None:
    article = convert_entry(entry(authors=(Person(name), Person("Second"))), VIEW, NOW)
    for options in (RenderOptions(), RenderOptions(author="entry")):
        front, _ = render(article, options)
        # One line: whitespace runs (line breaks, NEL) are one space; controls go.
        expected = ", ".join(" ".join(n.split()) for n in (name, "Second") if n.split())
        expected = expected.replace("\x07", "")
        if len(expected) > TITLE_CHARS:
            expected = expected[: TITLE_CHARS - 1] + "…"
        assert front["byline"] == expected
        assert isinstance(front["byline"], str)
        assert front["author"] == (expected if options.author == "entry" else "新浪财经")


def test_players_for_audio_and_video_enclosures_only() -> None:
    enclosures = (
        Enclosure("https://cdn.example/ep/12.mp3", "audio/mpeg", 1),
        Enclosure("https://cdn.example/v/12.webm"),  # the type from the extension
        Enclosure("https://cdn.example/cover.jpg", "image/jpeg"),  # an image: no player
        Enclosure("https://cdn.example/notes.pdf", "application/pdf"),
        Enclosure("http://cdn.example/old.mp3?a=1&b=2", "audio/mpeg"),
    )
    html = media_players(enclosures, poster="https://cdn.example/still.jpg")
    assert html == (
        '<p><audio controls="" preload="none"><source src="https://cdn.example/ep/12.mp3" '
        'type="audio/mpeg"></audio></p>'
        '<p><video controls="" preload="none" poster="https://cdn.example/still.jpg">'
        '<source src="https://cdn.example/v/12.webm" type="video/webm"></video></p>'
        '<p><audio controls="" preload="none"><source src="http://cdn.example/old.mp3?a=1&amp;b=2" '
        'type="audio/mpeg"></audio></p>'
    )
    assert media_players(()) == ""
    assert media_players((Enclosure("https://cdn.example/a"),)) == ""  # type unknown


def test_players_pass_our_own_sanitiser_unchanged() -> None:
    """What we build needs no exception in the allow-list: cleaning it changes nothing."""
    enclosures = (
        Enclosure("https://cdn.example/a b\"c'<d>.mp3", "audio/mpeg"),
        Enclosure("https://cdn.example/v.mp4", 'video/mp4; codecs="avc1"'),
    )
    for poster in ("", "https://cdn.example/p.jpg", "javascript:alert(1)"):
        html = media_players(enclosures, poster)
        assert sanitise(html) == html
        assert "javascript" not in html
    # The whole cleaning too (lxml percent-encodes a space in a src, nothing else changes).
    html = media_players((Enclosure("https://cdn.example/e.mp3"),), "https://cdn.example/p.jpg")
    assert clean_html(html).html == f"<div>{html}</div>"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:audio/mpeg;base64,SUQz",
        "mailto:x@example.com",
        "/relative/ep.mp3",
        "ftp://files.example/ep.mp3",
        " javascript:alert(2)",
    ],
)
def test_players_and_front_matter_take_web_addresses_only(url: str) -> None:
    article = convert_entry(entry(enclosures=(Enclosure(url, "audio/mpeg"),)), VIEW, NOW)
    front, body = render(article)
    assert "enclosures" not in front
    assert "<audio" not in body
    assert media_players((Enclosure(url, "audio/mpeg"),)) == ""


def test_the_player_goes_inside_the_bodys_one_html_block() -> None:
    article = convert_entry(
        entry(enclosures=PODCAST, images=("https://x.example/i.png",)), VIEW, NOW
    )
    _, body = render(article)
    lines = body.strip().split("\n")
    assert lines[0].startswith("<div>") and lines[-1] == "</div>"
    assert any(line.startswith("<p><audio controls") for line in lines)
    assert all(line.strip() and not line.startswith((" ", "\t")) for line in lines)
    assert "&#123;&#123; x &#125;&#125;" in body  # braces still escaped
