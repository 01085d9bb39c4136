"""The index and the article files: the Store facade over SQLite and the posts folder."""

from aggregator.store.index import Store as Store
