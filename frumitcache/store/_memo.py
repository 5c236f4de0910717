"""Answers of the index's small reads kept in memory, dropped whenever they may have changed.

A hot cache asks the same few questions per request (which object a key names, its manifest,
its metadata, whether a chunk is here): each was a sqlite read. :class:`ReadMemo` keeps them,
each tagged with the index's :attr:`~._index.Index.generation` at the time of the read; the
generation moves when a committed write changed keys, objects or chunks' presence (see
:class:`~._index.Tx`), so an entry from before is never returned. Writes that only add chunks
or partials, or record use, leave it alone: serving goes on from memory while objects arrive.

Thread-safe (the store's core is called from worker threads); bounded by entry count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from frumitcache.store._index import Index

V = TypeVar("V")
_MISSING = object()
# Entries per memo: enough for every key a busy apt client set asks for (a few hundred bytes
# each), small next to a Pi's memory.
DEFAULT_LIMIT = 4096


class ReadMemo:
    """``get(name, key, read)``: ``read()``'s answer, from memory while still current."""

    def __init__(self, index: Index, limit: int = DEFAULT_LIMIT) -> None:
        self._index = index
        self._limit = limit
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, Hashable], tuple[int, Any]] = {}
        self._generation = index.generation

    def get(self, name: str, key: Hashable, read: Callable[[], V], *, keep_none: bool = True) -> V:
        """The memo's answer for ``(name, key)`` or ``read()``'s (then remembered;
        a ``None`` answer only with ``keep_none``, for reads whose absence a write would
        also change)."""
        generation = self._index.generation  # before the read: a write after it drops it
        hit = self._entries.get((name, key), _MISSING)
        if hit is not _MISSING and hit[0] == generation:  # type: ignore[index]
            return hit[1]  # type: ignore[index, no-any-return]
        value = read()
        if value is None and not keep_none:
            return value
        with self._lock:
            if generation < self._generation:
                return value  # read before a write another reader has seen: not kept
            if generation > self._generation:
                self._entries.clear()  # everything older is stale: free it at once
                self._generation = generation
            elif len(self._entries) >= self._limit:
                del self._entries[next(iter(self._entries))]  # the oldest in
            self._entries[(name, key)] = (generation, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)
