"""Round-trip edits of config.yaml (ruamel.yaml): comments, order and quoting are kept."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from aggregator.config import Config, parse_config
from aggregator.errors import StoreError
from aggregator.opml import OpmlFeed


def _comparable(url: str) -> str:
    """A URL or path as the config stores it, for spotting duplicates."""
    if url.startswith("file://"):
        return str(Path(unquote(urlsplit(url).path)).resolve())
    return url.strip().rstrip("/")


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
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    text = config_path.read_text(encoding="utf-8")
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
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    new_text = buffer.getvalue()
    parse_config(new_text, str(config_path), config_path.resolve().parent)  # raises ConfigError
    try:
        fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".yaml", dir=config_path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
        Path(tmp).chmod(config_path.stat().st_mode & 0o7777)  # the file keeps its mode
        Path(tmp).replace(config_path)
    except OSError as exc:
        raise StoreError(f"cannot write {config_path}: {exc}") from exc
    return added, skipped
