"""aggregator: turn RSS/Atom sources into clean static-site articles and filtered feeds."""

__version__ = "0.2.0"
