"""The public surface of frumitcache.swarm is pinned."""

from __future__ import annotations

import frumitcache.swarm as swarm


def test_all_names_exist_and_nothing_private_leaks() -> None:
    assert sorted(swarm.__all__) == swarm.__all__
    for name in swarm.__all__:
        assert hasattr(swarm, name), name
        assert not name.startswith("_")
    assert swarm.__all__ == [
        "AUTH_HEADER",
        "Admission",
        "ChunkFetcher",
        "ChunkOffer",
        "ChunkRef",
        "ChunkStatistics",
        "ChunkStore",
        "ChunkTorrent",
        "Holder",
        "HttpChunkClient",
        "IdleTimer",
        "MerkleHasher",
        "MerkleTree",
        "PeerHttpServer",
        "PeerHttpStatistics",
        "PeerLimits",
        "RequestGate",
        "RequestVerifier",
        "SignedHandler",
        "Swarm",
        "SwarmStatistics",
        "assigned_fetcher",
        "chunk_torrent",
        "cleanup_partials",
        "fetch_object",
        "merkle_tree",
        "piece_size_for",
        "serve_signed",
        "sign_request",
    ]
