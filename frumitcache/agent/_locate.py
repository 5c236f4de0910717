"""What ``locate`` answers, from a catalogue answer (pure): which member holds how much of an
object, and how many of its bytes the live members hold between them."""

from __future__ import annotations

from typing import Any

from frumitcache.control import LocateReply
from frumitcache.site import ObjectInfo, ObjectManifest


def _chunk_len(manifest: ObjectManifest, index: int) -> int:
    if manifest.size is not None:
        return max(min(manifest.chunk_size, manifest.size - index * manifest.chunk_size), 0)
    return manifest.chunk_size


def held_bytes(info: ObjectInfo) -> int:
    """Bytes of the object held by at least one live member."""
    manifest = info.manifest
    assert manifest is not None
    return sum(
        _chunk_len(manifest, i)
        for i, holders in enumerate(info.holders[: len(manifest.chunks)])
        if holders.full
    )


def locate_reply(info: ObjectInfo, *, fetching: bool) -> LocateReply:
    manifest = info.manifest
    if manifest is None:
        return LocateReply(
            url=info.url,
            digest=None,
            size=None,
            chunk_size=0,
            chunks=0,
            complete=False,
            fetching=fetching,
            holders={},
        )
    holders: dict[str, Any] = {}
    for i, held in enumerate(info.holders[: len(manifest.chunks)]):
        for node in held.full:
            entry = holders.setdefault(node, {"chunks": 0, "bytes": 0})
            entry["chunks"] += 1
            entry["bytes"] += _chunk_len(manifest, i)
    return LocateReply(
        url=info.url,
        digest=manifest.digest,
        size=manifest.size,
        chunk_size=manifest.chunk_size,
        chunks=len(manifest.chunks),
        complete=manifest.complete,
        fetching=fetching,
        holders=holders,
    )
