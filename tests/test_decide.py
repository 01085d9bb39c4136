"""The "what changed" decision, from tables: no database, no files, a fixed clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.config import parse_config
from aggregator.content.convert import entry_uid, fold_path, render_article, text_hash
from aggregator.models import Article, Counts, Prerendered, WriteFailure
from aggregator.poll.decide import (
    Known,
    Look,
    OnDisk,
    Plan,
    decide,
    files_to_examine,
    make_batch,
    wanted_paths,
)
from aggregator.poll.resolve import ResolvedSource, resolve_source
from aggregator.store.records import StoredEntry

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CONFIG = parse_config(
    """
settings: {keep_days: 30}
sources:
  - {url: "https://example.com/feed.xml", categories: [A], name: S,
     rules: [{block: sponsored}]}
"""
)
SOURCE = resolve_source(CONFIG, CONFIG.sources[0])
OLD_KEY = "0123456789abcdef"  # a render key other than SOURCE's


def article(key: str, title: str = "Post", version: str = "1", days_old: int = 1) -> Article:
    """An entry as converted; ``version`` stands for its upstream bytes."""
    return Article(
        key=key,
        alt_key=f"alt-{key}",
        raw_json=f'{{"v": "{version}"}}',
        raw_hash=f"raw-{version}",
        title=title,
        link=f"https://example.com/{key}",
        categories=("A",),
        author="A",
        published=NOW - timedelta(days=days_old),
        updated=None,
        headimg="",
        tags=(),
        summary="",
        body_html=f"<p>{version}</p>",
    )


def text(a: Article, source: ResolvedSource = SOURCE) -> str:
    """The article file ``decide`` renders for ``a``."""
    assert a.published is not None
    return render_article(a, entry_uid(source.name, a.key), a.published, source.options)


def stored(
    a: Article,
    *,
    path: str | None = "A/Post.md",
    version: str = "1",
    render_key: str | None = None,
    file_same: bool = True,
    pruned: bool = False,
) -> StoredEntry:
    """The index row of ``a`` as an earlier poll left it."""
    return StoredEntry(
        id=1,
        key=a.key,
        uid=entry_uid(SOURCE.name, a.key),
        path=path,
        raw_hash=f"raw-{version}",
        file_hash=text_hash(text(a)) if file_same else "stale",
        render_key=render_key or SOURCE.render_key,
        first_seen=NOW - timedelta(days=2),
        pruned=pruned,
        dropped_by=None,
    )


@dataclass(frozen=True)
class Case:
    articles: tuple[Article, ...]
    entries: Mapping[str, StoredEntry] = field(default_factory=dict)
    files: Mapping[str, OnDisk] = field(default_factory=dict)
    taken: frozenset[str] = frozenset()
    orphans: Mapping[str, str] = field(default_factory=dict)
    rebuild: bool = False
    force: bool = False


def summary(plan: Plan) -> dict[str, object]:
    """A plan in a few comparable values: row kinds and paths, files, counts."""
    return {
        "rows": {p.row.key: (p.change.value, p.row.path) for p in plan.rows},
        "writes": sorted(plan.writes),
        "deletes": list(plan.deletes),
        "seen_again": list(plan.seen_again),
        "unchanged": plan.unchanged,
        "dropped": plan.dropped,
        "warnings": list(plan.warnings),
    }


def expect(
    rows: dict[str, tuple[str, str | None]] | None = None,
    writes: tuple[str, ...] = (),
    deletes: tuple[str, ...] = (),
    seen_again: tuple[str, ...] = (),
    unchanged: int = 0,
    dropped: int = 0,
    warnings: tuple[str, ...] = (),
) -> dict[str, object]:
    return {
        "rows": rows or {},
        "writes": sorted(writes),
        "deletes": list(deletes),
        "seen_again": list(seen_again),
        "unchanged": unchanged,
        "dropped": dropped,
        "warnings": list(warnings),
    }


A = article("a")
A2 = article("a", version="2")  # the same entry, changed upstream
SPONSORED = article("a", title="Sponsored post")
UID_A = entry_uid("S", "a")
UID_B = entry_uid("S", "b")
RESTFUL = ("The Restful Web (Amazon's SQS)", "The Restful Web: Amazon's SQS")
RESTFUL_NAMES = ("The-Restful-Web-(Amazon's-SQS).md", "The-Restful-Web-Amazon's-SQS.md")
RESTFUL_SUFFIXED = f"The-Restful-Web-Amazon's-SQS-{UID_B[:8]}.md"
HERE = {"A/Post.md": OnDisk()}  # the file the index records is there
OWN = {"A/Post.md": OnDisk(entry_id=UID_A, content=text(A).encode())}

CASES = {
    # -- a poll --------------------------------------------------------------------------
    "new entry: new file named after its title": (
        Case((A,)),
        expect({"a": ("new", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    "unchanged, file in place: only seen again": (
        Case((A,), {"a": stored(A)}, HERE),
        expect(seen_again=("a",), unchanged=1),
    ),
    "unchanged but its file was deleted: written again": (
        Case((A,), {"a": stored(A)}),
        expect({"a": ("updated", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    "changed upstream: rewritten in place": (
        Case((A2,), {"a": stored(A, file_same=False)}, HERE),
        expect({"a": ("updated", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    "new render settings, same bytes: row only, no write": (
        Case((A,), {"a": stored(A, render_key=OLD_KEY)}, HERE),
        expect({"a": ("unchanged", "A/Post.md")}),
    ),
    "forced (rebuild of one entry), same bytes: row only": (
        Case((A,), {"a": stored(A)}, HERE, force=True),
        expect({"a": ("unchanged", "A/Post.md")}),
    ),
    "pruned before: stays pruned": (
        Case((A,), {"a": stored(A, path=None, pruned=True)}),
        expect(dropped=1),
    ),
    "new but older than keep_days: not kept": (
        Case((article("a", days_old=31),)),
        expect(dropped=1),
    ),
    "older than keep_days but already kept: stays (retention prunes it)": (
        Case((article("a", days_old=31),), {"a": stored(A)}, HERE),
        expect(seen_again=("a",), unchanged=1),
    ),
    "dropped by a rule when new: the row is the audit, no file": (
        Case((SPONSORED,)),
        expect({"a": ("dropped", None)}, dropped=1),
    ),
    "dropped by a rule added later (a new render key): its file goes": (
        Case((SPONSORED,), {"a": stored(A, render_key=OLD_KEY)}, HERE),
        expect({"a": ("dropped", None)}, deletes=("A/Post.md",), dropped=1),
    ),
    "repeated to the letter: counts once": (
        Case((A, A)),
        expect({"a": ("new", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    # -- names ---------------------------------------------------------------------------
    "namesake in the index: suffixed with the entry's id": (
        Case((A,), taken=frozenset({fold_path("A/Post.md")})),
        expect({"a": ("new", f"A/Post-{UID_A[:8]}.md")}, writes=(f"A/Post-{UID_A[:8]}.md",)),
    ),
    "a name one page URL with a taken one (another case): suffixed": (
        Case((A,), taken=frozenset({"a/post"})),
        expect({"a": ("new", f"A/Post-{UID_A[:8]}.md")}, writes=(f"A/Post-{UID_A[:8]}.md",)),
    ),
    "namesake in the same batch: the second is suffixed": (
        Case((A, article("b"))),
        expect(
            {"a": ("new", "A/Post.md"), "b": ("new", f"A/Post-{UID_B[:8]}.md")},
            writes=("A/Post.md", f"A/Post-{UID_B[:8]}.md"),
        ),
    ),
    "names that differ only in punctuation in the same batch: the second is suffixed": (
        Case((article("a", RESTFUL[0]), article("b", RESTFUL[1]))),
        expect(
            {"a": ("new", f"A/{RESTFUL_NAMES[0]}"), "b": ("new", f"A/{RESTFUL_SUFFIXED}")},
            writes=(f"A/{RESTFUL_NAMES[0]}", f"A/{RESTFUL_SUFFIXED}"),
        ),
    ),
    "a name that folds to nothing (Hugo: the folder's own page): suffixed": (
        Case((article("a", "!!!"),)),
        expect({"a": ("new", f"A/!!!-{UID_A[:8]}.md")}, writes=(f"A/!!!-{UID_A[:8]}.md",)),
    ),
    "an orphan adopted earlier in the batch claims its name's fold": (
        Case((article("b"), A), orphans={UID_B: "A/POST.md"}),
        expect(
            {"b": ("new", "A/POST.md"), "a": ("new", f"A/Post-{UID_A[:8]}.md")},
            writes=("A/POST.md", f"A/Post-{UID_A[:8]}.md"),
        ),
    ),
    "someone's own file at the name: left alone, suffixed": (
        Case((A,), files={"A/Post.md": OnDisk(entry_id=None)}),
        expect({"a": ("new", f"A/Post-{UID_A[:8]}.md")}, writes=(f"A/Post-{UID_A[:8]}.md",)),
    ),
    "its own file at the name (a killed run): overwritten": (
        Case((A,), files={"A/Post.md": OnDisk(entry_id=UID_A)}),
        expect({"a": ("new", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    "orphan with its entry_id under an older title: adopted": (
        Case((A,), orphans={UID_A: "A/Old title.md"}),
        expect({"a": ("new", "A/Old title.md")}, writes=("A/Old title.md",)),
    ),
    # -- a rebuild -----------------------------------------------------------------------
    "rebuild, file as it would be written: row only": (
        Case((A,), {"a": stored(A)}, OWN, rebuild=True, force=True),
        expect({"a": ("unchanged", "A/Post.md")}),
    ),
    "rebuild, file differs and is the entry's own: rewritten": (
        Case(
            (A,),
            {"a": stored(A)},
            {"A/Post.md": OnDisk(entry_id=UID_A, content=b"older")},
            rebuild=True,
            force=True,
        ),
        expect({"a": ("updated", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    "rebuild, file missing: written": (
        Case((A,), {"a": stored(A)}, rebuild=True, force=True),
        expect({"a": ("updated", "A/Post.md")}, writes=("A/Post.md",)),
    ),
    "rebuild, someone else's file at the path: kept, with a warning": (
        Case(
            (A,),
            {"a": stored(A)},
            {"A/Post.md": OnDisk(entry_id=None, content=b"mine")},
            rebuild=True,
            force=True,
        ),
        expect(
            {"a": ("unchanged", "A/Post.md")},
            warnings=(f"A/Post.md is not this entry's article (entry_id {UID_A}): kept",),
        ),
    ),
    "rebuild of a version a poll replaced since: not written back": (
        Case((A,), {"a": stored(A2, version="2")}, OWN, rebuild=True, force=True),
        expect(unchanged=1),
    ),
    "rebuild of an entry pruned since: stays pruned": (
        Case((A,), {"a": stored(A, path=None, pruned=True)}, rebuild=True, force=True),
        expect(dropped=1),
    ),
    "rebuild of an entry gone from the index: nothing": (
        Case((A,), rebuild=True, force=True),
        expect(unchanged=1),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: tuple[Case, dict[str, object]]) -> None:
    given, expected = case
    batch = make_batch(SOURCE, [a.key for a in given.articles], given.articles)
    known = Known(given.entries, given.taken, given.orphans, given.files)
    plan = decide(SOURCE, batch, known, NOW, rebuild=given.rebuild, force=given.force)
    assert summary(plan) == expected
    for path, written in plan.writes.items():
        [row] = [p.row for p in plan.rows if p.row.path == path]
        assert row.file_hash == text_hash(written)  # the index records what was written


def test_rows_carry_the_entry_and_its_history() -> None:
    batch = make_batch(SOURCE, ["a"], [A2])
    known = Known({"a": stored(A, file_same=False)}, files=HERE)
    [planned] = decide(SOURCE, batch, known, NOW).rows
    row = planned.row
    assert (row.source, row.key, row.uid, row.alt_key) == ("S", "a", UID_A, "alt-a")
    assert (row.first_seen, row.last_seen) == (NOW - timedelta(days=2), NOW)
    assert (row.raw_hash, row.render_key) == ("raw-2", SOURCE.render_key)
    assert row.date == A2.published
    assert (row.dropped_by, row.dropped_at) == (None, None)
    [dropped] = decide(SOURCE, make_batch(SOURCE, ["a"], [SPONSORED]), Known(), NOW).rows
    assert dropped.row.dropped_by is not None and dropped.row.dropped_at == NOW
    assert dropped.row.file_hash is None


FAIL_B = WriteFailure(f"A/Post-{UID_B[:8]}.md", "cannot write it: No space left", local=True)


@pytest.mark.parametrize(
    ("failures", "keys", "expected"),
    [
        ({}, {"a", "b", "c"}, Counts(new=2, unchanged=1, dropped=1)),
        (
            {FAIL_B.path: FAIL_B},
            {"a", "c"},
            Counts(new=1, unchanged=1, dropped=1, failed=1, write_failures=(FAIL_B,)),
        ),
    ],
    ids=["all written", "one file failed: its entry gets no row"],
)
def test_settle(failures: dict[str, WriteFailure], keys: set[str], expected: Counts) -> None:
    # a and b are new (b a namesake), c is dropped by a rule, d is seen again.
    articles = [A, article("b"), article("c", title="Sponsored"), article("d", title="D")]
    known = Known({"d": stored(articles[3], path="A/D.md")}, files={"A/D.md": OnDisk()})
    plan = decide(SOURCE, make_batch(SOURCE, "abcd", articles), known, NOW)
    rows, counts = plan.settle(failures)
    assert counts == expected
    assert {r.key for r in rows} == keys


@pytest.mark.parametrize(
    ("rebuild", "expected"),
    [
        (False, {"A/Kept.md": Look.EXISTS, "A/Post.md": Look.OWNER}),
        (
            True,
            {
                "A/Kept.md": Look.CONTENT,
                "A/Post.md": Look.CONTENT,
                f"A/Post-{UID_B[:8]}.md": Look.CONTENT,
                "A/Orphan.md": Look.CONTENT,
            },
        ),
    ],
    ids=["poll: the recorded file's presence, a new name's owner", "rebuild: every candidate"],
)
def test_files_to_examine(rebuild: bool, expected: dict[str, Look]) -> None:
    kept = article("a", title="Kept")
    articles = [kept, article("b"), SPONSORED]
    entries = {"a": stored(kept, path="A/Kept.md")}
    batch = make_batch(SOURCE, ["a", "b", "c"], articles)
    orphans = {UID_B: "A/Orphan.md", entry_uid("S", "zz"): "A/Other.md"}
    wanted = wanted_paths(SOURCE, batch, entries)
    assert wanted == {"b": "A/Post.md"}  # a has a file, c is dropped by a rule
    assert files_to_examine(SOURCE, batch, entries, wanted, orphans, rebuild=rebuild) == expected


@pytest.mark.parametrize(
    ("uid", "date", "render_key", "used"),
    [
        (entry_uid(SOURCE.name, "a"), NOW - timedelta(days=1), SOURCE.render_key, True),
        ("another-id", NOW - timedelta(days=1), SOURCE.render_key, False),
        (entry_uid(SOURCE.name, "a"), NOW, SOURCE.render_key, False),
        (entry_uid(SOURCE.name, "a"), NOW - timedelta(days=1), OLD_KEY, False),
    ],
    ids=["as-decided", "other-id", "other-date", "other-settings"],
)
def test_a_worker_rendered_text_is_used_only_for_the_id_date_and_settings_decided(
    uid: str, date: datetime, render_key: str, used: bool
) -> None:
    plain = article("a")
    given = replace(plain, prerendered=Prerendered(uid, date, render_key, "from the worker"))
    assert given == plain  # not part of what the entry is
    plan = decide(SOURCE, make_batch(SOURCE, ["a"], [given]), Known(), NOW)
    [written] = plan.writes.values()
    assert written == ("from the worker" if used else text(plain))
