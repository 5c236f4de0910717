"""Content-addressed store: objects and chunks by SHA-256, an sqlite index, atomic writes,
a size cap with LRU eviction and pins, and a scrub that detects bit rot.

Layout, write ordering and crash recovery are described in ``_files.py``, ``_index.py`` (the
schema and every statement), ``_ingest.py`` and ``_recovery.py``; ``_core.py`` lists the jobs
of the blocking core. :class:`Store` is the face the agent, origin fetcher, swarm and apt proxy
use.
"""

from frumitcache.store._manifest import Manifest, RecoveryReport, ScrubReport, StoreStats
from frumitcache.store._reader import HeldChunk, ObjectReader
from frumitcache.store._store import Store, StoredObject
from frumitcache.store._writer import ObjectWriter

__all__ = [
    "HeldChunk",
    "Manifest",
    "ObjectReader",
    "ObjectWriter",
    "RecoveryReport",
    "ScrubReport",
    "Store",
    "StoreStats",
    "StoredObject",
]
