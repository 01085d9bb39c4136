"""The command line, and the composition root: builds the parts from config and wires them."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click

from aggregator import __version__
from aggregator.config import Config, SourceConfig, database_connections, load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.models import Changes, SourceOutcome
from aggregator.poll.pipeline import Poller, iter_enabled, utcnow
from aggregator.redact import redact
from aggregator.signals import Interrupted, install_stop_handlers
from aggregator.store import Store, migrate
from aggregator.store.copy import copy_index

if TYPE_CHECKING:
    from flask import Flask

    from aggregator.content.discover import FoundFeed
    from aggregator.export import Exporter
    from aggregator.poll.discovery import SourceAdder
    from aggregator.poll.scheduler import Service
    from aggregator.store.records import HookRun
    from aggregator.web.configwatch import ConfigWatch
    from aggregator.web.state import Rebuilds

F = TypeVar("F", bound=Callable[..., Any])

EXIT_SOURCE_FAILED = 1
EXIT_CONFIG = 2
EXIT_STUCK = 3  # stopped while polls were still in flight past the grace period


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(dict)["verbose"] = True
        logging.getLogger().setLevel(logging.INFO)


def verbose_option(func: F) -> F:
    """Add ``-v/--verbose`` (accepted before the command and after it alike)."""
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_verbose,
        help="Log each source and print warnings.",
    )(func)


def config_option(func: F) -> F:
    """Add ``--config PATH`` and ``-v`` to a command (every command takes both)."""
    return click.option(
        "--config",
        "config_path",
        default="config.yaml",
        show_default=True,
        envvar="AGGREGATOR_CONFIG",
        type=click.Path(dir_okay=False),
        help="The configuration file.",
    )(verbose_option(func))


def workers_option(func: F) -> F:
    """Add ``--workers N`` (processes for parsing and cleaning) to a command."""
    return click.option(
        "--workers",
        type=click.IntRange(0, 64),
        default=None,
        help="Processes for parsing and cleaning (default: settings.workers; 0: one per CPU).",
    )(func)


def listen_options(func: F) -> F:
    """Add ``--host`` and ``--port`` (the web server's address) to a command."""
    func = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Port (default: settings.server.port; 0 picks a free one).",
    )(func)
    return click.option(
        "--host", default=None, help="Address to bind (default: settings.server.host)."
    )(func)


def _open_store(config: Config, *, outbox: bool = False) -> Store:
    try:
        return Store(
            config.settings.database,
            config.settings.posts_dir,
            connections=database_connections(config),
            outbox=outbox,
        )
    except AggregatorError as exc:
        raise click.ClickException(str(exc)) from exc


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(exc.report(), err=True)
        raise SystemExit(EXIT_CONFIG) from exc


@contextmanager
def _poller(config: Config, workers: int | None = None) -> Iterator[Poller]:
    store = _open_store(config)
    store.files.sweep_temp_files()
    poller = Poller(config, store, workers=workers)
    try:
        yield poller
    finally:
        poller.close()
        store.close()


@contextmanager
def _as_job(store: Store, kind: str) -> Iterator[dict[str, Any]]:
    """Run a command as a job of ``kind`` (``store/jobs.py``): under the jobs lock, so
    never beside a rebuild or prune of another process, and recorded in its row (the
    dashboard shows a rebuild made here too). The caller fills in the result."""
    from aggregator.poll.pipeline import utcnow
    from aggregator.store import jobs
    from aggregator.store.locks import LockHeld

    try:
        with jobs.lock(store.engine):
            with store.transaction() as conn:
                job = jobs.start(conn, kind, utcnow(), jobs.runner_name(), "command")
            result: dict[str, Any] = {}
            ok = False
            try:
                yield result
                ok = True
            except BaseException as exc:
                result["error"] = redact(str(exc)) or type(exc).__name__
                raise
            finally:
                with store.transaction() as conn:
                    jobs.finish(conn, job.id, utcnow(), result, ok=ok)
    except LockHeld as exc:
        raise click.ClickException(
            "another process is running a rebuild or a prune on this index (the dashboard "
            "says which); not started: try again when it has ended"
        ) from exc


def _with_progress(
    label: str, total: int, run: Callable[[Callable[[SourceOutcome], None]], list[SourceOutcome]]
) -> list[SourceOutcome]:
    if total > 1 and sys.stderr.isatty():
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            return run(lambda _outcome: bar.update(1))
    return run(lambda _outcome: None)


def _display_width(text: str) -> int:
    # CJK and full-width characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def _status_text(o: SourceOutcome) -> str:
    if o.held:
        return "HELD (not polled: another poller holds it now; try again later)"
    if o.skipped:
        return f"{o.status.upper()} (not polled; refresh it with --source)"
    if not o.ok:
        return f"FAILED: {o.error}"
    text = "not modified" if o.not_modified else "ok"
    if o.moved_to:
        text += f" (moved permanently to {o.moved_to}: update the config)"
    return text


def _summarise(outcomes: Sequence[SourceOutcome], verbose: bool) -> int:
    width = max((_display_width(o.source) for o in outcomes), default=6)
    click.echo(f"{_pad('source', width)}  {'new':>5} {'upd':>5} {'same':>5} {'fail':>5}  status")
    for o in outcomes:
        click.echo(
            f"{_pad(o.source, width)}  {o.new:>5} {o.updated:>5} {o.unchanged:>5} "
            f"{o.failed:>5}  {_status_text(o)}"
        )
        if verbose:
            for warning in o.warnings:
                click.echo(f"{_pad('', width)}  warning: {warning}")
    failed = [o for o in outcomes if not o.ok]
    quiet = sum(1 for o in outcomes if o.not_modified)
    skipped = sum(1 for o in outcomes if o.skipped and not o.held)
    held = sum(1 for o in outcomes if o.held)
    totals = [sum(getattr(o, k) for o in outcomes) for k in ("new", "updated", "unchanged")]
    click.echo(
        f"{len(outcomes)} sources, {len(failed)} failed, {quiet} not modified, "
        f"{skipped} paused"
        + (f", {held} held by another poller" if held else "")
        + f"; {totals[0]} new, {totals[1]} updated, {totals[2]} unchanged"
    )
    return EXIT_SOURCE_FAILED if failed else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aggregator")
@verbose_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Aggregate RSS/Atom feeds into clean article files and filtered feeds."""
    verbose = ctx.ensure_object(dict).setdefault("verbose", False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@cli.command("check-config")
@config_option
def check_config(config_path: str) -> None:
    """Validate the configuration and list every problem in it."""
    config = _load(config_path)
    enabled = sum(1 for s in config.sources if s.enabled)
    click.echo(f"{config_path}: OK ({len(config.sources)} sources, {enabled} enabled)")


@cli.command()
@config_option
@click.option("--source", "only", metavar="NAME", help="Poll only this source.")
@workers_option
@click.pass_context
def poll(ctx: click.Context, config_path: str, only: str | None, workers: int | None) -> None:
    """Poll every enabled source once and write their articles.

    The config is synced into the index first, and the sources are read from it by key;
    each is polled under its lease (``poll/leases.py``), so a source that an
    ``aggregator run`` on the same index is polling now is skipped, and said so.
    """
    from aggregator.poll.leases import PassLeases
    from aggregator.poll.scheduler import LEASE_FACTOR, STOP_MARGIN

    config = _load(config_path)
    with _poller(config, workers) as poller:
        _sync_sources(config, poller.store)
        sources = _indexed(poller.store, config, only, config_path)
        fetcher = poller.fetcher
        lease = LEASE_FACTOR * (fetcher.timeout + fetcher.total_timeout + STOP_MARGIN)
        chunk = config.settings.schedule.concurrency
        leases = PassLeases(
            poller.store, [s.key for s in sources], timedelta(seconds=lease), utcnow, chunk
        )
        try:
            outcomes = _with_progress(
                "polling",
                len(sources),
                lambda done: poller.poll_sources(
                    sources, done, manual=only is not None, leases=leases
                ),
            )
        finally:
            leases.close()
        status = _summarise(outcomes, ctx.obj["verbose"])
        _pass_ended(config, poller.store)  # the static feeds first: a hook may publish them
        _run_hooks(config, poller.store, _changes(outcomes))
    ctx.exit(status)


def _sync_sources(config: Config, store: Store) -> None:
    """Sync the config's sources into the index (as ``run`` does at start), so that
    every command reads the same sources table."""
    try:
        store.sync_sources(config.sources, utcnow())
    except AggregatorError as exc:
        raise click.ClickException(f"cannot sync the sources into the index: {exc}") from exc


def _indexed(
    store: Store, config: Config, only: str | None, config_path: str
) -> list[SourceConfig]:
    """The sources to poll, read from the index by key: the named one (enabled or not),
    else the config's enabled ones in its order. One whose secret fetch options this
    process lacks is never polled (a sync by another process since ours): said, and
    left out."""
    keys = [only] if only is not None else [s.key for s in iter_enabled(config)]
    found = store.sources_by_key(keys, config)
    if only is not None and only not in found:
        raise click.BadParameter(
            f"no source named {only!r} in {config_path}", param_hint="--source"
        )
    sources = []
    for key in keys:
        indexed = found.get(key)
        if indexed is None:
            continue
        if indexed.problem is not None:
            click.echo(f"{key}: not polled: {indexed.problem}", err=True)
            continue
        sources.append(indexed.config)
    return sources


def _changes(outcomes: Sequence[SourceOutcome]) -> Changes:
    """What a pass changed, all its polls together."""
    return sum((o.changes for o in outcomes), Changes())


def _run_hooks(config: Config, store: Store, changes: Changes) -> None:
    """Once, after a pass (or a rebuild, or an export): the on_change commands and
    webhooks, if it changed anything (a rebuild tells no webhook: no entry changed
    upstream).

    Their failures are printed and recorded, and do not change the exit status (that
    says how the sources went).
    """
    from aggregator.hooks import Hooks

    def show(run: HookRun) -> None:
        verdict = "ok" if run.ok else f"FAILED: {run.error}"
        click.echo(f"{run.kind} {run.target}: {verdict} ({run.duration:.1f} s)", err=True)

    hooks = Hooks(config.settings.hooks, store, on_run=show)
    if hooks.configured:
        try:
            hooks.run_now(changes)
        finally:
            hooks.close()


@cli.command()
@config_option
@workers_option
@click.pass_context
def rebuild(ctx: click.Context, config_path: str, workers: int | None) -> None:
    """Clean and rewrite every stored article from its raw original (after rule changes)."""
    from aggregator.store import jobs

    config = _load(config_path)
    with _poller(config, workers) as poller, _as_job(poller.store, jobs.REBUILD) as result:
        outcomes = _with_progress(
            "rebuilding", len(config.sources), lambda done: poller.rebuild(config.sources, done)
        )
        result.update(jobs.rebuild_result(outcomes))
        known = {s.key for s in config.sources}
        orphans = [n for n in poller.store.source_names() if n not in known]
        _pass_ended(config, poller.store)
        _run_hooks(config, poller.store, _changes(outcomes))  # the files it rewrote, if any
    for name in orphans:
        click.echo(f"note: {name!r} has stored entries but is not in the config; left as is")
    ctx.exit(_summarise(outcomes, ctx.obj["verbose"]))


def _pass_ended(config: Config, store: Store) -> None:
    """After a pass of ``poll`` or ``rebuild``: bring the static feeds up to date (only
    when entries, config or base URL changed since their last export)."""
    from aggregator.poll.pipeline import utcnow
    from aggregator.store.static import StaticFeeds

    static = StaticFeeds(store, lambda: config, utcnow)
    report = static.export()
    if static.error is not None:
        click.echo(f"static feeds not written: {static.error}", err=True)
    elif report is not None and report.changed:
        click.echo(report.summary(), err=True)


@cli.command("export-feeds")
@config_option
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="The absolute URL DIRECTORY is served at (default: settings.publish.base_url).",
)
def export_feeds_command(config_path: str, directory: str, base_url: str | None) -> None:
    """Write every category feed and output (RSS, Atom, JSON Feed) as static files."""
    from pydantic import ValidationError

    from aggregator.config import PublishSettings
    from aggregator.poll.pipeline import utcnow
    from aggregator.store.static import export_feeds

    config = _load(config_path)
    if base_url is not None:
        try:
            base_url = PublishSettings(base_url=base_url).base_url
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise click.BadParameter(message, param_hint="--base-url") from exc
    base_url = base_url or config.settings.publish.base_url
    if base_url is None:
        raise click.UsageError(
            "self links need the URL DIRECTORY is served at: give --base-url or set "
            "settings.publish.base_url"
        )
    store = _open_store(config)
    try:
        report = export_feeds(store, config, directory, base_url=base_url, now=utcnow())
    except AggregatorError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(report.summary())


@cli.command()
@config_option
def prune(config_path: str) -> None:
    """Apply retention (keep_days / keep_max) now."""
    from aggregator.store import jobs

    config = _load(config_path)
    with _poller(config) as poller, _as_job(poller.store, jobs.PRUNE) as result:
        pruned = poller.prune(config.sources)
        result.update(sources=len(pruned), pruned=sum(pruned.values()))
    for name, count in pruned.items():
        click.echo(f"{name}: {count} pruned")
    click.echo(f"{sum(pruned.values())} entries pruned")


@cli.command()
@config_option
@click.option("--source", "only", metavar="NAME", required=True, help="The full-text source.")
@click.pass_context
def refetch(ctx: click.Context, config_path: str, only: str) -> None:
    """Fetch a full-text source's article pages again and re-extract their bodies."""
    config = _load(config_path)
    source = config.source(only)
    if source is None:
        raise click.BadParameter(
            f"no source named {only!r} in {config_path}", param_hint="--source"
        )
    with _poller(config) as poller:
        if not poller.resolved(source).full_text:
            raise click.BadParameter(
                f"source {only!r} does not have full_text on", param_hint="--source"
            )
        done = poller.refetch(source)
        _pass_ended(config, poller.store)
    click.echo(
        f"{only}: {done.fetched} pages fetched, {done.from_page} bodies from the page, "
        f"{done.from_feed} from the feed"
    )
    if done.error is not None:
        click.echo(f"error: {done.error}", err=True)
        ctx.exit(1)


@cli.command("test-rules")
@config_option
@click.option("--source", "only", metavar="NAME", help="Only this source's entries.")
@click.option(
    "--output",
    "output_name",
    metavar="NAME",
    help="Test this output's rules on the kept entries instead of ingest rules.",
)
@click.option(
    "--fetch",
    is_flag=True,
    help="Also fetch the sources now and test their current entries (nothing is stored).",
)
@click.option("--all", "show_all", is_flag=True, help="List kept entries too, not only drops.")
def test_rules(
    config_path: str, only: str | None, output_name: str | None, fetch: bool, show_all: bool
) -> None:
    """Dry run: which entries the current rules keep and drop, and by which rule."""
    from aggregator.poll.dryrun import dry_run

    config = _load(config_path)
    if output_name is not None and config.output(output_name) is None:
        raise click.BadParameter(f"no output named {output_name!r}", param_hint="--output")
    with _poller(config, 1) as poller:
        _sync_sources(config, poller.store)  # the dry run reads its sources from the index
        if only is not None and poller.store.source_by_key(only, config) is None:
            raise click.BadParameter(f"no source named {only!r}", param_hint="--source")
        results = dry_run(poller, only=only, output=output_name, fetch=fetch)
    kept = dropped = changed = 0
    for result in results:
        if result.reason is None:
            kept += 1
        else:
            dropped += 1
        if result.changed:
            changed += 1
        if result.reason is not None or show_all or result.changed:
            verdict_text = "KEEP" if result.reason is None else f"DROP  by {result.reason}"
            note = (
                f"  [{result.origin}; was {result.before}]"
                if result.changed
                else f"  [{result.origin}]"
            )
            click.echo(f"{verdict_text:<6} {result.source}: {result.title}{note}")
    click.echo(
        f"{kept + dropped} entries: {kept} kept, {dropped} dropped, {changed} would change "
        "(run `aggregator rebuild` to apply the rules to stored entries)"
    )


@cli.command("export-opml")
@config_option
@click.option(
    "--output",
    "output_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file instead of standard output.",
)
def export_opml_command(config_path: str, output_file: str | None) -> None:
    """Export every source as OPML, grouped by category (URLs in full, secrets too)."""
    from aggregator.opml import export_opml

    config = _load(config_path)
    # Run by the owner, who may move to another reader: the URLs must keep working.
    data = export_opml(config.sources, config.settings.publish.title, with_secrets=True)
    if output_file is None:
        click.echo(data.decode("utf-8"), nl=False)
    else:
        Path(output_file).write_bytes(data)
        click.echo(f"{len(config.sources)} sources written to {output_file}", err=True)


@cli.command("import-opml")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_opml_command(config_path: str, file: str) -> None:
    """Add the feeds of an OPML file to the config (its comments and order are kept)."""
    from aggregator.opml import OpmlError, parse_opml
    from aggregator.yamledit import add_sources

    config = _load(config_path)
    try:
        feeds = parse_opml(Path(file).read_bytes())
    except (OSError, OpmlError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        added, skipped = add_sources(Path(config_path), config, feeds)
    except AggregatorError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, url in added:
        click.echo(f"added {name}: {url}")
    click.echo(f"{len(added)} sources added, {skipped} already in {config_path}")


# -- adding and listing sources ---------------------------------------------------------


def _choose(feeds: Sequence[FoundFeed], pick: int | None) -> FoundFeed:
    """The feed to add: ``--pick``, else the only one, else asked for on a terminal."""
    if pick is not None:
        if not 1 <= pick <= len(feeds):
            raise click.BadParameter(
                f"{pick} is not between 1 and {len(feeds)}", param_hint="--pick"
            )
        return feeds[pick - 1]
    if len(feeds) == 1:
        return feeds[0]
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"{len(feeds)} feeds found: choose one with --pick N (1 to {len(feeds)})"
        )
    number: int = click.prompt(
        "Add which feed", type=click.IntRange(1, len(feeds)), default=1, err=True
    )
    return feeds[number - 1]


@cli.command("add")
@config_option
@click.argument("url")
@click.option(
    "--categories",
    "categories",
    metavar="PATH",
    help="Category path, levels separated by \"/\" (default: the site's and feed's titles).",
)
@click.option("--name", metavar="NAME", help="The source's name (default: its last category).")
@click.option(
    "--pick",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="When the page has several feeds, add the N-th one listed.",
)
def add_command(
    config_path: str, url: str, categories: str | None, name: str | None, pick: int | None
) -> None:
    """Add a feed, or find a web page's feeds and add one (the config keeps its comments)."""
    from aggregator.poll.discovery import SourceAdder

    config = _load(config_path)
    path: tuple[str, ...] | None = None
    if categories is not None:
        path = tuple(p.strip() for p in categories.split("/") if p.strip())
        if not path:
            raise click.BadParameter("no category given", param_hint="--categories")
    adder = SourceAdder(config_path, lambda: config)
    try:
        found = adder.discover(url)
        if len(found.feeds) > 1 or found.feeds[0].via != "url":
            click.echo(f"feeds of {redact(found.url)}:", err=True)
            for number, feed in enumerate(found.feeds, 1):
                title = feed.title or "(untitled)"
                click.echo(
                    f"  {number}. {title} ({feed.entries} entries): {redact(feed.url)}", err=True
                )
        chosen = _choose(found.feeds, pick)
        added = adder.add(chosen, site_title=found.site_title, categories=path, name=name)
    except ConfigError as exc:
        click.echo(exc.report(), err=True)
        raise SystemExit(EXIT_CONFIG) from exc
    except AggregatorError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added {added.name}: {redact(added.url)} [{' › '.join(added.categories)}]")
    click.echo(
        f"`aggregator run` picks it up on its own; or poll it now: "
        f"aggregator poll --source {shlex.quote(added.name)}",
        err=True,
    )


def _source_listing(config: Config, store: Store) -> list[dict[str, Any]]:
    """Every configured source with its state, URL redacted (``aggregator sources``)."""
    states = store.source_states()
    counts = store.entry_counts(datetime.now(UTC))
    rows: list[dict[str, Any]] = []
    for source in config.sources:
        state = states.get(source.key, {})
        polled = state.get("last_polled_at")
        rows.append(
            {
                "name": source.key,
                "state": str(state.get("status") or "new") if source.enabled else "disabled",
                "last_poll": polled.astimezone(UTC).isoformat() if polled else None,
                "articles": counts.get(source.key, (0, 0))[0],
                "url": redact(source.url),
                "categories": list(source.categories),
                "last_error": redact(state["last_error"]) if state.get("last_error") else None,
            }
        )
    return rows


@cli.command("sources")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
def sources_command(config_path: str, as_json: bool) -> None:
    """List every source: name, state, last poll, articles, URL (secrets masked)."""
    config = _load(config_path)
    store = _open_store(config)
    try:
        rows = _source_listing(config, store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    zone = ZoneInfo(config.settings.server.timezone)
    table = [
        (
            r["name"],
            r["state"],
            datetime.fromisoformat(r["last_poll"]).astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if r["last_poll"]
            else "never",
            str(r["articles"]),
            r["url"],
        )
        for r in rows
    ]
    head = ("name", "state", "last poll", "articles", "url")
    widths = [max(_display_width(row[i]) for row in [head, *table]) for i in range(4)]
    for row in [head, *table]:
        cells = [_pad(row[i], widths[i]) for i in range(3)]
        cells.append(" " * (widths[3] - len(row[3])) + row[3])
        click.echo("  ".join([*cells, row[4]]))


@cli.group()
@verbose_option
def db() -> None:
    """The index database: its schema revision, upgrades and copies."""


def _database(config_path: str) -> tuple[str, str]:
    """The configured database, and how it is shown (secrets masked)."""
    database = _load(config_path).settings.database
    return database, redact(database)


@db.command("upgrade")
@config_option
def db_upgrade(config_path: str) -> None:
    """Bring the database's schema to this version (every command does it when it opens
    the database; this does only that), printing its revision before and after."""
    database, shown = _database(config_path)
    try:
        revisions = migrate.upgrade_database(database)
    except AggregatorError as exc:
        raise click.ClickException(f"{shown}: {redact(str(exc))}") from exc
    before = revisions.before or "none (no schema)"
    if revisions.before == revisions.after:
        click.echo(f"{shown}: at revision {before}, the newest: nothing to do")
    else:
        click.echo(f"{shown}: revision {before} -> {revisions.after}")


@db.command("current")
@config_option
def db_current(config_path: str) -> None:
    """Print the database's schema revision, and whether this version's is newer."""
    database, shown = _database(config_path)
    try:
        revision = migrate.current_revision(database)
    except AggregatorError as exc:
        raise click.ClickException(f"{shown}: {redact(str(exc))}") from exc
    head = migrate.HEAD
    if revision == head:
        state = "the newest"
    elif revision is None:
        state = f"no schema revision yet; `aggregator db upgrade` makes {head}"
    elif migrate.known(revision):
        state = f"older than this version's {head}: `aggregator db upgrade` brings it there"
    else:
        state = f"unknown to this version (newest {head}): upgraded by a newer aggregator"
    click.echo(f"{shown}: {revision or 'none'} ({state})")


@db.command("copy")
@config_option
@click.option(
    "--to",
    "target",
    metavar="URL",
    required=True,
    help="The target: a SQLAlchemy URL (postgresql+psycopg://user:password@host/db) "
    "or the path of a SQLite file.",
)
@click.option(
    "--replace", is_flag=True, help="Delete the rows a non-empty target holds, then copy."
)
def db_copy(config_path: str, target: str, replace: bool) -> None:
    """Copy the configured index into another database, to move it to PostgreSQL.

    The target gets this version's schema, then every table, in batches, from one
    consistent moment of the index (a service may keep running meanwhile; what it writes
    after that moment is not copied). The secrets and admin sessions are copied too, so
    a service on the copy accepts the sessions already open: keep the copy as private as
    the index. A target that holds rows is refused unless --replace is given.
    """
    database, shown = _database(config_path)
    click.echo(f"copying {shown} to {redact(target)}")
    try:
        counts = copy_index(
            database,
            target,
            replace=replace,
            progress=lambda table, rows: click.echo(f"{table}: {rows} rows"),
        )
    except AggregatorError as exc:
        raise click.ClickException(redact(str(exc))) from exc
    click.echo(f"{sum(counts.values())} rows in {len(counts)} tables copied")


def _serve(
    app: Any,
    config: Config,
    host: str | None,
    port: int | None,
    on_ready: Callable[[], None] = lambda: None,
    on_hangup: Callable[[], object] | None = None,
) -> None:
    """Serve a WSGI app with waitress until SIGTERM or SIGINT (``Interrupted``).

    ``host`` and ``port`` from the command line win over ``settings.server``.
    """
    import waitress

    settings = config.settings.server
    host = host or settings.host
    port = port if port is not None else settings.port
    threads = settings.threads

    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="aggregator",
        clear_untrusted_proxy_headers=True,
        # Bounded clients: idle or slow connections neither exhaust the slots nor stay.
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        cleanup_interval=max(1, min(30, settings.channel_timeout // 2)),
        asyncore_use_poll=True,  # select() cannot watch descriptors past 1024
        max_request_header_size=64 * 1024,  # per connection, held in memory
        # Refused by Content-Length right after the headers (chunked: once past it),
        # before any body is read or spooled; waitress refuses a size >= its limit.
        max_request_body_size=settings.max_body + 1,
    )

    if on_hangup is not None:
        # Not in the handler itself: a reload takes locks the interrupted code may hold.
        signal.signal(
            signal.SIGHUP,
            lambda _s, _f: threading.Thread(target=on_hangup, name="sighup").start(),
        )
    actual_port = getattr(server, "effective_port", port)
    click.echo(f"serving on http://{host}:{actual_port}/", err=True)
    on_ready()
    try:
        server.run()  # until a signal raises Interrupted
    except Interrupted:
        pass  # the way it is meant to stop: exit 0 once the caller has cleaned up
    finally:
        server.close()


@cli.command()
@config_option
@listen_options
def run(config_path: str, host: str | None, port: int | None) -> None:
    """The main job: poll every source on its schedule and serve the web app."""
    from aggregator.poll.discovery import SourceAdder
    from aggregator.poll.scheduler import Service

    config = _load(config_path)
    _log_for_service()
    store = _open_store(config)
    store.files.sweep_temp_files()
    service = Service(config_path, config, store)
    # The dashboard's "Add source" edits the file, then the service reloads it at once.
    adder = SourceAdder(config_path, lambda: service.config, after_write=service.check_config)
    app = _web_app(config, store, service, adder=adder)
    try:
        _serve(app, config, host, port, service.start, on_hangup=service.reload)
    finally:
        # In-flight polls finish and are recorded; a second signal cuts this short.
        if not service.shutdown(wait=True):
            click.echo(
                f"stopped after {service.stop_grace:g} s with polls still in flight",
                err=True,
            )
            os._exit(EXIT_STUCK)  # their threads would keep the interpreter from exiting
        store.close()
        click.echo("stopped", err=True)


@cli.command()
@config_option
def poller(config_path: str) -> None:
    """Claim and poll sources, as `run` does, with no web server and no files: the
    article changes go to the outbox, for `aggregator export`."""
    from aggregator.poll.scheduler import Service

    config = _load(config_path)
    _log_for_service()
    store = _open_store(config, outbox=True)
    service = Service(config_path, config, store)
    signal.signal(
        signal.SIGHUP,
        lambda _s, _f: threading.Thread(target=service.reload, name="sighup").start(),
    )
    try:
        service.start()
        click.echo("polling into the outbox", err=True)
        threading.Event().wait()  # until a signal raises Interrupted
    except Interrupted:
        pass  # the way it is meant to stop: exit 0 once cleaned up
    finally:
        if not service.shutdown(wait=True):
            click.echo(
                f"stopped after {service.stop_grace:g} s with polls still in flight", err=True
            )
            os._exit(EXIT_STUCK)  # their threads would keep the interpreter from exiting
        store.close()
        click.echo("stopped", err=True)


@cli.command("export")
@config_option
@click.option(
    "--once", is_flag=True, help="Apply the rows in the outbox now, run the hooks, and exit."
)
def export_command(config_path: str, once: bool) -> None:
    """Write the outbox's article changes into posts_dir, keep the static feeds up to
    date and run the hooks (one exporter per posts folder: a second one is refused)."""
    from aggregator.export import Exporter
    from aggregator.hooks import Hooks
    from aggregator.poll.pipeline import utcnow
    from aggregator.store.locks import LockHeld
    from aggregator.store.outbox import exporter_lock
    from aggregator.store.static import StaticFeeds
    from aggregator.web.configwatch import ConfigWatch

    config = _load(config_path)
    if not once:
        _log_for_service()
    store = _open_store(config)
    try:
        with exporter_lock(store.engine):
            store.files.sweep_temp_files()
            if once:
                done = Exporter(store).drain(once=True)
                click.echo(
                    f"{done.rows} outbox rows: {len(done.changes.written)} files written, "
                    f"{len(done.changes.deleted)} deleted, {len(done.problems)} not at their path"
                )
                for problem in done.problems:
                    click.echo(f"{problem.target}: {problem.error}", err=True)
                _pass_ended(config, store)  # the static feeds before the hooks, as `run`
                _run_hooks(config, store, done.changes)
                return
            hooks = Hooks(config.settings.hooks, store)
            # The static feeds (settings.publish.static_dir) live beside the posts folder:
            # its one writer keeps them up to date, off the export's thread, with the
            # titles and outputs of the config file as it is now (followed as `serve`
            # follows it; the hooks' settings are read at start).
            watch = ConfigWatch(config_path, config, store, utcnow)
            static = StaticFeeds(store, lambda: watch.config, utcnow)
            watch.start()
            try:
                _export_until_stopped(Exporter(store, hooks.notify, after=static.changed), config)
            finally:
                watch.close()
                static.close()
                hooks.close()  # kills a running command: a stop never waits for the site
    except LockHeld as exc:
        raise click.ClickException(
            f"another exporter is writing into {config.settings.posts_dir} "
            "(one per posts folder); not started"
        ) from exc
    except AggregatorError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def _export_until_stopped(exporter: Exporter, config: Config) -> None:
    """Run the exporter on a thread of its own until SIGTERM or SIGINT: a stop lets the
    batch in hand finish (a batch cut short would only be applied again)."""
    stop = threading.Event()
    worker = threading.Thread(target=exporter.run, args=(stop,), name="export")
    worker.start()
    click.echo(f"exporting into {config.settings.posts_dir}", err=True)
    try:
        while worker.is_alive():
            worker.join(1.0)
    except Interrupted:
        pass  # the way it is meant to stop
    finally:
        stop.set()
        worker.join()
    click.echo("stopped", err=True)


@cli.command("sync-config")
@config_option
def sync_config(config_path: str) -> None:
    """Sync the config's sources into the index (pollers read them from there), and exit."""
    config = _load(config_path)
    store = _open_store(config, outbox=True)  # syncing touches no article file
    try:
        done = store.sync_sources(config.sources, utcnow())
    except AggregatorError as exc:
        raise click.ClickException(f"cannot sync the sources into the index: {exc}") from exc
    finally:
        store.close()
    click.echo(
        f"{len(config.sources)} sources: {len(done.added)} added, {len(done.changed)} changed, "
        f"{len(done.removed)} removed"
    )


@cli.command()
@config_option
@listen_options
def serve(config_path: str, host: str | None, port: int | None) -> None:
    """Serve the web app alone (no polling), following the config file; for gunicorn use
    aggregator.web:create_app()."""
    from aggregator.poll.discovery import SourceAdder
    from aggregator.poll.pipeline import utcnow
    from aggregator.store import jobs
    from aggregator.web.configwatch import ConfigWatch

    config = _load(config_path)
    _log_for_service()
    store = _open_store(config)
    _sync_sources(config, store)  # the views read sources from the index, by key
    # The file is followed as a service follows it; "Add source" edits it, and the
    # reload syncs the new source into the index, where pollers read sources from.
    watch = ConfigWatch(config_path, config, store, utcnow)
    adder = SourceAdder(config_path, lambda: watch.config, after_write=watch.check)
    # No pollers here: the dashboard's rebuild is a row, which a process with pollers
    # (`aggregator run` or `aggregator poller`) runs.
    app = _web_app(config, store, rebuilds=jobs.Requests(store, utcnow), adder=adder, watch=watch)
    watch.start()
    try:
        _serve(app, config, host, port, on_hangup=watch.check)
    finally:
        watch.close()
        store.close()


def _web_app(
    config: Config,
    store: Store,
    service: Service | None = None,
    rebuilds: Rebuilds | None = None,
    adder: SourceAdder | None = None,
    watch: ConfigWatch | None = None,
) -> Flask:
    """The web app, or exit with the report when its settings are invalid."""
    from aggregator.web import create_app

    try:
        return create_app(config, store, service, rebuilds=rebuilds, adder=adder, watch=watch)
    except ConfigError as exc:
        if service is not None:
            service.shutdown(wait=False)
        store.close()
        click.echo(exc.report(), err=True)
        raise SystemExit(EXIT_CONFIG) from exc


def _log_for_service() -> None:
    """Long-running commands log one line per poll (INFO) unless told otherwise."""
    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    # "Task queue depth is N" on every burst: load, not a problem worth a line each.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aggregator`` command."""
    install_stop_handlers()  # first: a signal during start-up must stop cleanly too
    cli.main(args=list(argv) if argv is not None else None, prog_name="aggregator")
