"""The public surface of frumitcache.swarm is pinned."""

from __future__ import annotations

import frumitcache.swarm as swarm


def test_all_names_exist_and_nothing_private_leaks() -> None:
    assert sorted(swarm.__all__) == swarm.__all__
    for name in swarm.__all__:
        assert hasattr(swarm, name), name
        assert not name.startswith("_")
    assert {"Swarm", "fetch_object", "ChunkFetcher", "PeerHttpServer", "chunk_torrent"} <= set(
        swarm.__all__
    )
