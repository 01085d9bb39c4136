"""Round-trip edits of config.yaml (ruamel.yaml): comments, order and quoting are kept.

Used by ``import-opml`` and ``add`` (and the dashboard's "Add source"). The edited text is
validated as a whole before it replaces the file, by a rename: a refused edit leaves the
file as it was, and the service watching it never reads half a file.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from aggregator.config import Config, parse_config
from aggregator.errors import AggregatorError, ConfigError, StoreError
from aggregator.opml import OpmlFeed
from aggregator.redact import redact


def _comparable(url: str) -> str:
    """A URL or path as the config stores it, for spotting duplicates."""
    if url.startswith("file://"):
        return str(Path(unquote(urlsplit(url).path)).resolve())
    return url.strip().rstrip("/")


class DuplicateSourceError(AggregatorError):
    """A source with that URL or that name is already in the config."""


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes lists indented as ``text`` has them.

    ruamel writes ``- item`` flush with its key unless told otherwise, so a file written
    ``  - url: …`` (as the bundled config.yaml is) had every source moved left by an edit.
    """
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    try:
        _data, indent, offset = load_yaml_guess_indent(text)
    except YAMLError:
        return yaml  # the load that follows reports it
    if indent is not None and offset is not None:
        yaml.indent(mapping=2, sequence=max(indent, offset + 2), offset=offset)
    return yaml


def _replace(config_path: Path, yaml: YAML, data: Any) -> None:
    """Write ``data`` over the config file, if it is a valid config; atomically.

    Raises:
        ConfigError: it would not be valid (the file is left as it was).
        StoreError: the file cannot be written.
    """
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    new_text = buffer.getvalue()
    parse_config(new_text, str(config_path), config_path.resolve().parent)  # raises ConfigError
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".yaml", dir=config_path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
        Path(tmp).chmod(config_path.stat().st_mode & 0o7777)  # the file keeps its mode
        Path(tmp).replace(config_path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {config_path}: {exc}") from exc


def append_source(
    config_path: Path, url: str, categories: tuple[str, ...], name: str | None = None
) -> str:
    """Append one source to the config file (``aggregator add``); its name.

    The file is read again here, not taken from a config loaded earlier: another edit may
    have come in between.

    Raises:
        DuplicateSourceError: a source has this URL, or this name (given, or the last
            category).
        ConfigError: the file is not a valid config now, or would not be with the source.
        StoreError: the file cannot be written.
    """
    try:
        text = config_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read {config_path}: {exc}") from exc
    yaml = _yaml(text)
    config = parse_config(text, str(config_path), config_path.resolve().parent)
    key = _comparable(url)
    for source in config.sources:
        if _comparable(source.url) == key:
            raise DuplicateSourceError(
                f"{redact(url)} is already in {config_path} as source {source.key!r}"
            )
    wanted = name or categories[-1]
    if config.source(wanted) is not None:
        raise DuplicateSourceError(
            f"a source named {wanted!r} is already in {config_path}: give another with "
            "--name (or other --categories)"
        )
    data = yaml.load(text) or CommentedMap()
    sources = data.get("sources")
    if sources is None:
        sources = CommentedSeq()
        data["sources"] = sources
    entry = CommentedMap()
    entry["url"] = url
    path = CommentedSeq(categories)
    path.fa.set_flow_style()
    entry["categories"] = path
    if name:
        entry["name"] = name
    sources.append(entry)
    try:
        _replace(config_path, yaml, data)
    except ConfigError as exc:  # its lines are those of the text that was not written
        note = "nothing written: with the new source the config would be invalid"
        raise ConfigError(str(config_path), [note, *exc.problems]) from exc
    return wanted


def _category(name: str) -> str:
    cleaned = name.replace(
        "/", "／"
    ).strip()  # '/' separates levels; a full-width slash reads the same
    return cleaned[:200] or "untitled"


def add_sources(
    config_path: Path, config: Config, feeds: Iterable[OpmlFeed]
) -> tuple[list[tuple[str, str]], int]:
    """Append the feeds that are not configured yet to the config file.

    Returns:
        (name, url) of each source added, and how many feeds were already there.

    Raises:
        ConfigError: the edited file would not be a valid config (nothing is written).
        StoreError: the file cannot be written.
    """
    text = config_path.read_text(encoding="utf-8")
    yaml = _yaml(text)
    data = yaml.load(text) or CommentedMap()
    sources = data.get("sources")
    if sources is None:
        sources = CommentedSeq()
        data["sources"] = sources
    known = {_comparable(s.url) for s in config.sources}
    names = {s.key for s in config.sources}
    added: list[tuple[str, str]] = []
    skipped = 0
    for feed in feeds:
        key = _comparable(feed.url)
        if key in known:
            skipped += 1
            continue
        known.add(key)
        categories = [_category(c) for c in feed.categories]
        entry = CommentedMap()
        entry["url"] = feed.url
        path = CommentedSeq(categories)
        path.fa.set_flow_style()
        entry["categories"] = path
        name = categories[-1]
        if name in names:
            number = 2
            while f"{name}-{number}" in names:
                number += 1
            name = f"{name}-{number}"
            entry["name"] = name
        names.add(name)
        sources.append(entry)
        added.append((name, feed.url))
    if not added:
        return added, skipped
    _replace(config_path, yaml, data)
    return added, skipped
