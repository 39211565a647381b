"""A bounded LRU of query embeddings: an identical text is never encoded twice while it is kept.

Agents repeat their routine queries, and one balanced request used to encode its query twice
(the router, then `recall_memory`). Keyed by the exact text: any normalisation would change what
the model sees. Long texts (stored memory contents) are not kept: they rarely repeat, and a few
thousand 10,000-character keys would cost more memory than the vectors.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

DEFAULT_CACHE_SIZE = 4096
#: Texts longer than this are encoded but not kept (queries are short; contents are not).
MAX_KEY_CHARS = 1000


class VectorCache:
    """text -> read-only float32 vector, least recently used evicted past `max_entries`."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, text: str) -> np.ndarray | None:
        vector = self._items.get(text)
        if vector is None:
            self.misses += 1
            return None
        self._items.move_to_end(text)
        self.hits += 1
        return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.max_entries == 0 or len(text) > MAX_KEY_CHARS:
            return
        # Shared by every caller: a caller writing into it would corrupt the others' vectors.
        vector.setflags(write=False)
        self._items[text] = vector
        self._items.move_to_end(text)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
            self.evictions += 1

    def stats(self) -> dict[str, int | float | None]:
        lookups = self.hits + self.misses
        return {
            "size": len(self._items),
            "max_entries": self.max_entries,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "hit_rate": round(self.hits / lookups, 4) if lookups else None,
        }
