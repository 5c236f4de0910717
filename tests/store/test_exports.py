"""The public surface of frumitcache.store is exactly what others integrate against."""

from __future__ import annotations

import frumitcache.store as store


def test_public_names() -> None:
    assert sorted(store.__all__) == [
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
    for name in store.__all__:
        assert getattr(store, name).__module__.startswith("frumitcache.store.")
