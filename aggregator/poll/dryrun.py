"""The keep/block rules' dry run over stored and freshly fetched entries (``test-rules``).

Its sources are read from the index by key (``Store.sources_by_key``), as the pollers
read theirs: the caller syncs the config first. A source whose secret fetch options this
process lacks is not fetched without them: its fetched part says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.content.convert import convert_entry
from aggregator.content.filter import verdict
from aggregator.content.parse import parse_feed
from aggregator.errors import AggregatorError
from aggregator.models import ParsedEntry
from aggregator.poll.pipeline import Poller


@dataclass(frozen=True, slots=True)
class DryRun:
    """What the current rules would do with one entry."""

    source: str
    title: str
    reason: str | None  # None: kept; otherwise the rule that drops it
    origin: str  # "stored" or "fetched"
    before: str  # "kept" or "dropped" (what the store says today), or "-" (no verdict yet)

    @property
    def changed(self) -> bool:
        """True when applying the rules would change a stored entry's fate."""
        now = "kept" if self.reason is None else "dropped"
        return self.before in ("kept", "dropped") and self.before != now


def dry_run(
    poller: Poller, *, only: str | None = None, output: str | None = None, fetch: bool = False
) -> list[DryRun]:
    """Evaluate the ingest rules (or an output's rules) without changing anything.

    Args:
        poller: the poller of the config in force (its rules, its fetcher).
        only: the one source to test (by key); else every source of the config, in its
            order.
        output: test this output's rules on the kept entries instead.
        fetch: also fetch the sources and test their current entries.
    """
    config = poller.config
    results: list[DryRun] = []
    keys = [only] if only is not None else [s.key for s in config.sources]
    found = poller.store.sources_by_key(keys, config)
    indexed = [found[key] for key in keys if key in found]
    output_rules = None
    if output is not None:
        chosen = config.output(output)
        output_rules = tuple(r.rule() for r in chosen.rules) if chosen else ()
    now = poller.clock()
    for item in indexed:
        source = item.config
        resolved = poller.resolved(source)
        view = resolved.view
        rules = output_rules if output_rules is not None else resolved.rules
        for _, raw, dropped_by in poller.store.raw_entries(source.key):
            if output_rules is not None and dropped_by is not None:
                continue  # outputs only ever see kept entries
            article = convert_entry(ParsedEntry.from_json(raw), view, now)
            # An output's rules decide at publish time: nothing stored to compare with.
            before = "-" if output_rules is not None else ("dropped" if dropped_by else "kept")
            results.append(
                DryRun(source.key, article.title, verdict(rules, article), "stored", before)
            )
        if fetch and source.enabled:
            if item.problem is not None:
                results.append(
                    DryRun(source.key, f"(not fetched: {item.problem})", None, "fetched", "-")
                )
                continue
            try:
                fetched = poller.fetcher.fetch(source.url, options=resolved.fetch)
                feed = parse_feed(fetched.url, fetched.body, fetched.headers)
            except AggregatorError as exc:
                results.append(DryRun(source.key, f"(cannot fetch: {exc})", None, "fetched", "-"))
                continue
            for entry in feed.entries:
                article = convert_entry(entry, view, now)
                results.append(
                    DryRun(source.key, article.title, verdict(rules, article), "fetched", "-")
                )
    return results
