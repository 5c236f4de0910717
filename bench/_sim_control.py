"""Control frames per node, counted from the agents' rules (``frumitcache/site/_core.py``,
``_policy.py``, ``frumitcache/agent/_plan.py``), and checked against ``bench.scale``.

The rules while a seeder holds its lease (defaults of ``frumitcache.config.SiteConfig``):

- the seeder's lease rounds, every ``lease_s / 3``: a ``Lease`` to each member and a
  ``LeaseAck`` back (the heartbeat both ways; a roster goes out only when it changed);
- a member beacons to the seeder alone, every ``BACKOFF`` beacon intervals; the seeder beacons
  to the site every ``BACKOFF`` intervals (one multicast datagram with ``site.discovery``, one
  unicast per static peer without it, as in ``bench.scale`` and the herd benchmark);
- for each object a member fetches: its ``FetchRequest`` and the seeder's ``ObjectInfo``; the
  seeder's announcement of each chunk and of the object, to every member (cut-through); the
  member's own announcement of each chunk it completed and of the object, to the seeder; and,
  while chunks are missing and no news came for ``QUIET_S``, a ``Lookup`` and its answer (a
  warm object is complete in the first answer: none);
- federation (issue 15) is HTTP on the federation port, not frames: per object a site's seeder
  asks each sibling once (held content only) and one parent; the parent answers each child.

Frames are counted sent + received, per node and per second of the fetch (``fetch_s``), and at
rest. :data:`MEASURED_IDLE` holds ``bench.scale``'s idle figures, the mean over all agents of
frames per second (static peer lists); :func:`idle_validation` sets the model beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from frumitcache.config import SiteConfig

# The agents' constants (tests/bench/test_sim.py checks them; not imported, so the simulation
# loads neither the agent nor libtorrent).
QUIET_S = 1.0  # frumitcache.agent._plan.QUIET_S: a member's Lookup after this long without news
BACKOFF = 5  # frumitcache.site._core.BACKOFF: beacon intervals between two beacons under a seeder


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

    def mean_idle(self, pis: int) -> float:
        """Mean over the site's agents at rest (what ``bench.scale`` reports)."""
        return (self.seeder_idle + (pis - 1) * self.member_idle) / pis


def site_frames(
    pis: int,
    chunks: int,
    fetch_s: float,
    *,
    multicast: bool = True,
    siblings: int = 0,
    federated: bool = False,
    warm: bool = False,
    site: SiteConfig | None = None,
) -> ControlFigures:
    """Per-node frame rates for a site of ``pis`` Pis fetching one object of ``chunks`` chunks
    in ``fetch_s`` seconds (see the module docstring; ``siblings`` and ``federated`` add the
    seeder's federation requests, counted as messages)."""
    cfg = site or SiteConfig()
    members = pis - 1
    rounds = 3.0 / cfg.lease_s
    beacon = 1.0 / (BACKOFF * cfg.beacon_interval_s)
    seeder_beacons_out = beacon if multicast else beacon * members
    seeder_idle = 2 * members * rounds + members * beacon + seeder_beacons_out
    member_idle = 2 * rounds + 2 * beacon  # its beacon to the seeder, the seeder's to it
    if fetch_s <= 0:
        return ControlFigures(seeder_idle, member_idle, seeder_idle, member_idle)
    # A Lookup round trip after each QUIET_S without news, between chunk announcements.
    gap = fetch_s / max(chunks, 1)
    lookups = 0 if warm else chunks * max(0, math.ceil(gap / QUIET_S) - 1)
    announcements = 0 if warm else chunks + 1  # the seeder's, heard by each member
    per_member = 2 + announcements + (chunks + 1) + 2 * lookups
    member_fetch = member_idle + per_member / fetch_s
    seeder_fetch = seeder_idle + members * per_member / fetch_s
    if federated:
        seeder_fetch += 2 * (siblings + 1) / fetch_s
    return ControlFigures(seeder_idle, member_idle, seeder_fetch, member_fetch)


def parent_frames(children: int, fetch_s: float) -> float:
    """The parent's seeder: one request and one answer per child per object."""
    return 2 * children / fetch_s if fetch_s > 0 else 0.0


#: ``bench.scale`` idle figures (frames sent + received per second, mean over the agents,
#: static peer lists): N = 10 and 40 at 3908f0e, N = 100 at 3908f0e (bench/README.md,
#: "Formation and failover at N = 100").
MEASURED_IDLE: tuple[tuple[int, float], ...] = ((10, 4.32), (40, 4.68), (100, 4.86))


def idle_validation() -> list[dict[str, Any]]:
    """The model's idle mean per agent beside ``bench.scale``'s, and the seeder's and a
    member's own rates."""
    rows = []
    for pis, measured in MEASURED_IDLE:
        model = site_frames(pis, 0, 0.0, multicast=False)
        mean = model.mean_idle(pis)
        rows.append(
            {
                "pis": pis,
                "measured_mean_per_s": measured,
                "model_mean_per_s": round(mean, 3),
                "error_pct": round(100 * (mean - measured) / measured, 1),
                "model_seeder_per_s": round(model.seeder_idle, 2),
                "model_member_per_s": round(model.member_idle, 2),
            }
        )
    return rows
