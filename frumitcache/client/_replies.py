"""Turning the agent's library replies into the typed results of :mod:`frumitcache._results`.

Replies that hold several records carry them as plain maps; a field the agent left out (an
older agent) reads as zero or empty rather than failing the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from frumitcache._results import (
    CacheContents,
    CachedObject,
    CacheStats,
    EstimateItem,
    Holding,
    Location,
    Member,
    PinState,
    SiteInfo,
    UplinkStats,
)
from frumitcache.control import CacheListing, LocateReply, PinReply, SiteReply


def cache_contents(reply: CacheListing) -> CacheContents:
    return CacheContents(
        objects=tuple(
            CachedObject(
                digest=o["digest"],
                size=o["size"],
                chunks=o["chunks"],
                keys=tuple(o["keys"]),
                pinned=o["pinned"],
                last_used=o["last_used"],
            )
            for o in reply.objects
        ),
        partial=tuple(reply.partial),
    )


def pin_state(reply: PinReply) -> PinState:
    return PinState(reply.digest.hex(), reply.pinned, reply.present)


def location(reply: LocateReply) -> Location:
    holders = tuple(
        Holding(
            node=node,
            chunks=int(h["chunks"]),
            bytes=int(h["bytes"]),
            complete=reply.complete and int(h["chunks"]) == reply.chunks,
        )
        for node, h in sorted(reply.holders.items())
    )
    return Location(
        url=reply.url,
        digest=reply.digest.hex() if reply.digest is not None else None,
        size=reply.size,
        chunks=reply.chunks,
        complete=reply.complete,
        fetching=reply.fetching,
        holders=holders,
    )


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def _counts(value: Any) -> dict[str, int]:
    """A name -> count map of a reply (anything else in it is dropped)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)}


def site_info(reply: SiteReply) -> SiteInfo:
    members = tuple(
        Member(
            node=str(m.get("node", "")),
            address=str(m.get("address", "")),
            model=str(m.get("model", "")),
            ram_bytes=_int(m, "ram_bytes"),
            free_disk_bytes=_int(m, "free_disk_bytes"),
            link_mbit=_int(m, "link_mbit"),
            wired=bool(m.get("wired", True)),
            load=float(m.get("load", 0.0)),
            priority=_int(m, "priority"),
            seeder=m.get("node") == reply.seeder,
        )
        for m in reply.members
        if isinstance(m, dict)
    )
    u = reply.uplink
    c = reply.cache
    return SiteInfo(
        node=reply.node,
        site=reply.site,
        solo=reply.solo,
        seeder=reply.seeder,
        term=reply.term,
        members=members,
        uplink=UplinkStats(
            bytes_fetched=_int(u, "bytes_fetched"),
            bytes_served=_int(u, "bytes_served"),
            bytes_spared=_int(u, "bytes_spared"),
            rate=float(u.get("rate", 0.0)),
            budget=_int(u, "budget"),
            fetches=_int(u, "fetches"),
            active_fetches=_int(u, "active_fetches"),
            bytes_from_origin=_int(u, "bytes_from_origin"),
            bytes_from_federation=_int(u, "bytes_from_federation"),
            federation_by_link=_counts(u.get("federation_by_link")),
            federation_rejected=_counts(u.get("federation_rejected")),
            served_by_source=_counts(u.get("served_by_source")),
        ),
        cache=CacheStats(
            objects=_int(c, "objects"),
            partial_objects=_int(c, "partial_objects"),
            bytes_used=_int(c, "bytes_used"),
            pinned_bytes=_int(c, "pinned_bytes"),
            max_bytes=_int(c, "max_bytes"),
            free_disk_bytes=_int(c, "free_disk_bytes"),
            hits=_int(c, "hits"),
            misses=_int(c, "misses"),
            evicted_bytes=_int(c, "evicted_bytes"),
        ),
    )


def estimate_item(item: Mapping[str, Any]) -> EstimateItem:
    return EstimateItem(
        url=str(item["url"]),
        size=item.get("size"),
        in_site=int(item.get("in_site") or 0),
        uplink=item.get("uplink"),
        source=str(item.get("source", "")),
        error=item.get("error"),
    )
