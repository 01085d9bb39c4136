"""OPML 2.0: export the configured sources grouped by category, and read an OPML file.

Pure: strings in, strings or dataclasses out. Adding the imported sources to
``config.yaml`` (keeping its comments and order) is ``cli.py``'s job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from lxml import etree

from aggregator.config import SourceConfig
from aggregator.errors import AggregatorError
from aggregator.redact import redact


class OpmlError(AggregatorError):
    """The file is not OPML we can read."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One feed from an OPML file."""

    url: str
    categories: tuple[str, ...]  # the folders it sits in, then its own title
    title: str


def _feed_url(source: SourceConfig) -> str:
    return source.url if not source.is_local else Path(source.url).as_uri()


def export_opml(
    sources: Iterable[SourceConfig], title: str = "aggregator", *, with_secrets: bool = False
) -> bytes:
    """Every source as an OPML 2.0 outline, nested by its category path.

    Args:
        with_secrets: keep credentials and tokens in the URLs (an export for the owner);
            otherwise they are redacted, as for anyone who may read ``/opml``.
    """
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    body = etree.SubElement(root, "body")
    folders: dict[tuple[str, ...], etree._Element] = {}
    for source in sources:
        parent = body
        for depth in range(1, len(source.categories)):
            path = source.categories[:depth]
            if path not in folders:
                folders[path] = etree.SubElement(parent, "outline", text=path[-1], title=path[-1])
            parent = folders[path]
        etree.SubElement(
            parent,
            "outline",
            type="rss",
            text=source.categories[-1],
            title=source.categories[-1],
            xmlUrl=_feed_url(source) if with_secrets else redact(_feed_url(source)),
        )
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


def parse_opml(data: bytes) -> list[OpmlFeed]:
    """The feeds of an OPML file, each with the folders it sits in.

    Raises:
        OpmlError: not XML, or no ``<opml><body>``.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not an OPML file: {exc}") from exc
    body = root.find("body") if root.tag == "opml" else None
    if body is None:
        raise OpmlError("not an OPML file: no <opml><body>")
    feeds: list[OpmlFeed] = []

    def walk(element: etree._Element, folders: tuple[str, ...]) -> None:
        for outline in element.findall("outline"):
            label = (outline.get("title") or outline.get("text") or "").strip()
            url = (outline.get("xmlUrl") or "").strip()
            if url:
                name = label or url
                feeds.append(OpmlFeed(url, (*folders, name)[-5:], name))
            else:
                walk(outline, (*folders, label) if label else folders)

    walk(body, ())
    return feeds
