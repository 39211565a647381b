"""L1: the per-instance, in-process tier. Bounded LRU with per-entry TTL; pure, no I/O.

Each entry remembers the generations (namespace and global) it was computed from, so a
caller can tell whether it is still current. The cache also remembers the newest generation
it has heard of per namespace (from pub/sub or a Redis read): an entry older than that is
never stored and never served in `eventual` mode.

`clear()` starts a new `epoch`: a request that began before it (and read generations the flush
meant to forget) may not put its answer in afterwards.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

GLOBAL_NAMESPACE = "*"

Clock = Callable[[], float]


@dataclass(frozen=True)
class L1Entry:
    """One cached answer: its JSON text plus the generations it belongs to."""

    payload: str
    namespace: str
    generation: int | None
    global_generation: int | None
    expires_at: float


class L1Cache:
    """Bounded LRU + TTL map from cache key to `L1Entry`, with a per-namespace index."""

    def __init__(self, max_entries: int, clock: Clock = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, L1Entry] = OrderedDict()
        self._by_namespace: dict[str, set[str]] = {}
        self._known: dict[str, int] = {}
        self.epoch = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> L1Entry | None:
        """The live entry for `key` (refreshing its LRU position), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            self.expirations += 1
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self,
        key: str,
        payload: str,
        namespace: str,
        generation: int | None,
        global_generation: int | None,
        ttl_s: float,
        epoch: int | None = None,
    ) -> bool:
        """Store unless older than a known generation or from before the last flush; True if stored."""
        if epoch is not None and epoch != self.epoch:
            return False
        if not self.is_current(namespace, generation, global_generation):
            return False
        if key in self._entries:
            self._remove(key)
        entry = L1Entry(payload, namespace, generation, global_generation, self._clock() + ttl_s)
        self._entries[key] = entry
        self._by_namespace.setdefault(namespace, set()).add(key)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1
        return True

    def is_current(
        self, namespace: str, generation: int | None, global_generation: int | None
    ) -> bool:
        """False when a newer namespace or global generation is known than the ones given."""
        known_ns = self._known.get(namespace)
        known_global = self._known.get(GLOBAL_NAMESPACE)
        if known_ns is not None and (generation is None or generation < known_ns):
            return False
        return not (
            known_global is not None
            and (global_generation is None or global_generation < known_global)
        )

    def known_generation(self, namespace: str) -> int | None:
        return self._known.get(namespace)

    def observe_generation(self, namespace: str, generation: int) -> int:
        """Record that `namespace` reached `generation`; drop older entries. Returns count dropped."""
        if generation <= self._known.get(namespace, generation - 1):
            return 0
        self._known[namespace] = generation
        if namespace == GLOBAL_NAMESPACE:
            stale = [
                k
                for k, e in self._entries.items()
                if e.global_generation is None or e.global_generation < generation
            ]
        else:
            stale = [
                k
                for k in self._by_namespace.get(namespace, ())
                if (g := self._entries[k].generation) is None or g < generation
            ]
        for key in stale:
            self._remove(key)
        return len(stale)

    def drop(self, key: str) -> None:
        if key in self._entries:
            self._remove(key)

    def drop_namespace(self, namespace: str) -> int:
        """Drop every entry of `namespace` ("*" drops all); returns how many."""
        if namespace == GLOBAL_NAMESPACE:
            return self.clear()
        keys = list(self._by_namespace.get(namespace, ()))
        for key in keys:
            self._remove(key)
        return len(keys)

    def clear(self) -> int:
        """Drop every entry and forget known generations (the Redis we knew may be gone)."""
        count = len(self._entries)
        self.epoch += 1
        self._entries.clear()
        self._by_namespace.clear()
        self._known.clear()
        return count

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        keys = self._by_namespace.get(entry.namespace)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_namespace[entry.namespace]
