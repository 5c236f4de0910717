"""Control frames per node, counted from the agents' rules (not measured on the wire).

The rules, with the defaults of ``frumitcache.config.SiteConfig``:

- every member sends a beacon each ``beacon_interval_s``: one multicast datagram with
  ``site.discovery`` (received by the N-1 others), or one unicast per static peer without it
  (``site.peers``, as in the herd benchmark);
- the seeder renews its lease every ``lease_s / 3``: a ``Lease`` to each member, a
  ``LeaseAck`` back from each;
- while a member fetches it asks the seeder's catalogue once a second (``Lookup`` and its
  ``ObjectInfo``, ``frumitcache/agent/_content.py`` ``_POLL_S``), tells the seeder of each chunk
  it completes (``ChunkAnnounce``) and of the object (``ObjectAnnounce``); the seeder sends its
  own chunk and object announcements to every member;
- in a federation (issue 15, not built yet: the assumed protocol) a site's seeder sends one
  request per object to its parent and, while it fetches, asks each sibling once a second what
  it holds (and gets an answer).

Frames are counted sent + received, per node and per second of the run (``fetch_s``), and at
rest (no fetch). Each number is a rate, so "does the per-node cost grow with the site" reads
straight off N.
"""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config import SiteConfig

POLL_S = 1.0  # frumitcache/agent/_content.py _POLL_S: a fetching member's catalogue poll


@dataclass(frozen=True, slots=True)
class ControlFigures:
    """Frames per second, sent + received, for one node."""

    seeder_idle: float
    member_idle: float
    seeder_fetch: float
    member_fetch: float

    def as_dict(self) -> dict[str, float]:
        return {
            "seeder_idle_per_s": round(self.seeder_idle, 2),
            "member_idle_per_s": round(self.member_idle, 2),
            "seeder_during_fetch_per_s": round(self.seeder_fetch, 2),
            "member_during_fetch_per_s": round(self.member_fetch, 2),
        }


def site_frames(
    pis: int,
    chunks: int,
    fetch_s: float,
    *,
    multicast: bool = True,
    siblings: int = 0,
    federated: bool = False,
    site: SiteConfig | None = None,
) -> ControlFigures:
    """Per-node frame rates for a site of ``pis`` Pis fetching one object of ``chunks`` chunks
    in ``fetch_s`` seconds (see the module docstring)."""
    cfg = site or SiteConfig()
    others = pis - 1
    beat = 1.0 / cfg.beacon_interval_s
    sent_beacons = beat if multicast else beat * others
    beacons = sent_beacons + beat * others  # our own out, everyone else's in
    lease_rate = 3.0 / cfg.lease_s
    seeder_idle = beacons + 2 * others * lease_rate
    member_idle = beacons + 2 * lease_rate
    if fetch_s <= 0:
        return ControlFigures(seeder_idle, member_idle, seeder_idle, member_idle)
    per_object = chunks + 1  # chunk announcements and the object's
    member_fetch = member_idle + 2 / POLL_S + 2 * per_object / fetch_s
    seeder_fetch = seeder_idle + others * (2 / POLL_S + 2 * per_object / fetch_s)
    if federated:
        # our request to the parent and its answer; our asks to each sibling and theirs to us
        seeder_fetch += 2 / fetch_s + 4 * siblings / POLL_S
    return ControlFigures(seeder_idle, member_idle, seeder_fetch, member_fetch)


def parent_frames(children: int, fetch_s: float) -> float:
    """The parent's seeder: one request and one answer per child per object."""
    return 2 * children / fetch_s if fetch_s > 0 else 0.0
