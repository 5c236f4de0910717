"""Typed results of the library calls (frozen dataclasses), built from the agent's replies.

Digests are lowercase hex strings here (what a scheduler logs and compares), sizes are bytes,
rates bytes per second. ``None`` means "not known" (e.g. the origin did not say a size).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def as_dict(result: Any) -> dict[str, Any]:
    """A result as plain JSON-ready data (nested results and tuples become dicts and lists)."""
    data: dict[str, Any] = dataclasses.asdict(result)
    return data


@dataclass(frozen=True, slots=True)
class Member:
    """One live member of the site and what it advertises to schedulers."""

    node: str
    address: str
    model: str
    ram_bytes: int
    free_disk_bytes: int
    link_mbit: int
    wired: bool
    load: float
    priority: int
    seeder: bool


@dataclass(frozen=True, slots=True)
class UplinkStats:
    """This agent's uplink figures since it started.

    ``bytes_fetched``: body bytes received from origins; ``bytes_served``: bytes delivered to
    clients of this agent (pull, fetch, stream); ``bytes_spared``: of those, bytes that came
    from the store or from site members instead of the uplink; ``rate``: current origin receive
    rate (bytes/s); ``budget``: the configured ``origin.max_rate`` (bytes/s, 0 = unlimited).
    ``bytes_from_origin`` / ``bytes_from_federation``: ``bytes_fetched`` by provenance, the
    origins themselves or federated parent/sibling sites (0 without federation), and
    ``federation_by_link`` the latter per link (``parent@host:port``: bytes), and
    ``federation_rejected`` per link the objects whose bytes from it failed verification (the
    fetch left the link and went on from the next one or the origin; the bytes were dropped).
    ``served_by_source``: ``bytes_served`` by where this agent got them (``store``, ``site``
    peers, ``federation``, ``origin``).
    """

    bytes_fetched: int
    bytes_served: int
    bytes_spared: int
    rate: float
    budget: int
    fetches: int
    active_fetches: int
    bytes_from_origin: int = 0
    bytes_from_federation: int = 0
    federation_by_link: dict[str, int] = dataclasses.field(default_factory=dict)
    federation_rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    served_by_source: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """This agent's store: objects, bytes used against the cap, pins, hits and evictions."""

    objects: int
    partial_objects: int
    bytes_used: int
    pinned_bytes: int
    max_bytes: int
    free_disk_bytes: int
    hits: int
    misses: int
    evicted_bytes: int


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """The site as the local agent sees it (:meth:`AgentClient.site`)."""

    node: str  # this agent's node id
    site: str
    solo: bool  # a one-node site (no peers configured)
    seeder: str | None  # node id of the live seeder (None during an election)
    term: int  # the seeder's election term
    members: tuple[Member, ...]
    uplink: UplinkStats
    cache: CacheStats


@dataclass(frozen=True, slots=True)
class Holding:
    """How much of one object a member holds: ``chunks`` of them, ``bytes`` in all."""

    node: str
    chunks: int
    bytes: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Location:
    """Where an object is in the site (:meth:`AgentClient.locate`).

    ``known`` is False when the site has never seen it; ``complete`` says the site knows its
    whole manifest (digest and size); ``fetching`` that a fetch is under way.
    """

    url: str
    digest: str | None
    size: int | None
    chunks: int
    complete: bool
    fetching: bool
    holders: tuple[Holding, ...]

    @property
    def known(self) -> bool:
        """Does the site know anything of this object?"""
        return self.digest is not None or self.chunks > 0

    @property
    def full(self) -> tuple[str, ...]:
        """Members holding the whole object."""
        return tuple(h.node for h in self.holders if h.complete)

    @property
    def partial(self) -> tuple[str, ...]:
        """Members holding part of it."""
        return tuple(h.node for h in self.holders if not h.complete)


@dataclass(frozen=True, slots=True)
class EstimateItem:
    """One URL of an estimate: ``uplink`` bytes must still cross the uplink (``None``: the
    size is unknown), ``in_site`` bytes are already held by live members. ``source`` says where
    the size came from (``site``: the catalogue, ``origin-head``: a HEAD by the agent)."""

    url: str
    size: int | None
    in_site: int
    uplink: int | None
    source: str
    error: str | None


@dataclass(frozen=True, slots=True)
class Estimate:
    """What fetching a set of artifacts would cost the uplink (:meth:`AgentClient.estimate`).

    ``uplink_bytes`` and ``in_site_bytes`` are totals over the URLs whose size is known;
    ``unknown`` lists the URLs whose size nobody could tell (see their ``error``).
    """

    items: tuple[EstimateItem, ...]
    uplink_bytes: int
    in_site_bytes: int
    unknown: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrefetchProgress:
    """Progress of one prefetched URL on one member: ``bytes`` held of ``size``."""

    url: str
    node: str
    bytes: int
    size: int | None
    complete: bool
    started: str  # what the member answered: "present", "fetching" or "error: ..."


@dataclass(frozen=True, slots=True)
class PinState:
    """The outcome of a pin or unpin; ``present`` says whether the object is stored here."""

    digest: str
    pinned: bool
    present: bool


@dataclass(frozen=True, slots=True)
class CachedObject:
    """One complete object in the local store."""

    digest: str
    size: int
    chunks: int
    keys: tuple[str, ...]  # URLs (or ``sha256:<hex>``) that name it
    pinned: bool
    last_used: float  # unix time


@dataclass(frozen=True, slots=True)
class CacheContents:
    """The local store's objects (most recently used first) and keys held in part."""

    objects: tuple[CachedObject, ...]
    partial: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What re-hashing the local store found (bad chunks are removed, objects demoted)."""

    chunks_checked: int
    bytes_checked: int
    corrupt_chunks: int
    missing_chunks: int
    repaired_checksums: int
    objects_affected: int

    @property
    def damage(self) -> int:
        """Chunks found corrupt or missing."""
        return self.corrupt_chunks + self.missing_chunks


@dataclass(frozen=True, slots=True)
class GcReport:
    """Bytes freed by eviction and the store's use afterwards."""

    freed: int
    bytes_used: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``import_debs`` did: files seen, newly stored, already present, failed."""

    files: int
    imported: int
    present: int
    failed: int
    bytes_imported: int
    errors: tuple[str, ...]
