"""A federation in the simulator: edge sites under one core parent, over backbone links.

Two levels, because sites touch each other only through the backbone:

1. **Backbone.** The core's seeder fetches each chunk from the origin once (single-flight for
   every child) over the core's uplink; every edge site's seeder streams the object chunk by
   chunk, each chunk from a sibling that already holds it (asked first, held content only) or
   else from the parent once the parent holds it (cut-through at chunk granularity: a chunk is
   forwarded once it is whole and verified). A flow uses the sender's side (the core's egress,
   or the sibling's backbone link up) and the receiver's backbone link down, capped by what the
   receiving seeder can take (its port, and its CPU budget for receiving the chunk and handing
   one copy on).
2. **Sites.** Each site then runs alone (:class:`bench._sim_site.SiteRun` fed with the chunk
   arrival times of level 1). Decoupling them ignores that a seeder serving siblings also uses
   its LAN port for them; backbone links (10-50 Mbit/s) are far below a Pi's port.

The lower bound of a Pi at site i, for F bytes, S sites of N Pis, core uplink U_c, core egress
E, backbone link b_i, Pi links d/u, and B = the backbone upload of the sites that may serve as
siblings (0 without siblings)::

    T_i = max(F/U_c, F/b_i, F/d, N·F/(b_i + N·u), S·F/(E + B))

every byte crosses the core's uplink, site i's backbone link and a Pi's downlink; the site's N
copies leave its backbone link or its Pis' ports; and the S sites' copies leave the core or the
sites' backbone uplinks. The federation's bound is the largest T_i.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from bench._sim_flow import INF, Flow, Resource, Simulator
from bench._sim_site import CHUNK_SIZE, Calibration, SiteRun, SiteSpec


@dataclass(frozen=True, slots=True)
class FederationSpec:
    """Edge sites of ``pis`` Pis each; rates in bytes/s; ``backbone[i]`` is site i's link
    (both directions)."""

    pis: int
    down: float
    up: float
    backbone: tuple[float, ...]
    core_uplink: float
    core_egress: float
    siblings: int = 0  # ring neighbours on each side a seeder asks first
    cpu_quota: float | None = None
    # Site i asks for the chunks starting at i·K/S (then wraps) instead of from the first: in
    # a cold release the sites then hold different chunks, so siblings have something to give.
    striped: bool = False

    @property
    def sites(self) -> int:
        return len(self.backbone)

    def sibling_ids(self, i: int) -> list[int]:
        s = self.sites
        near = [(i + k) % s for j in range(1, self.siblings + 1) for k in (j, -j)]
        return [j for j in dict.fromkeys(near) if j != i]


def backbone_rates(sites: int, low: float, high: float, seed: int) -> tuple[float, ...]:
    """Each site's backbone link, uniform in [low, high] (seeded)."""
    rng = random.Random(seed)
    return tuple(rng.uniform(low, high) for _ in range(sites))


def site_bound(spec: FederationSpec, i: int, size: int) -> float:
    """T_i of the module docstring."""
    f, n, b = size, spec.pis, spec.backbone[i]
    sibling_up = sum(spec.backbone) if spec.siblings else 0.0
    return max(
        f / spec.core_uplink,
        f / b,
        f / spec.down,
        n * f / (b + n * spec.up),
        spec.sites * f / (spec.core_egress + sibling_up),
    )


@dataclass(slots=True)
class _Edge:
    index: int
    link_down: Resource
    link_up: Resource
    cap: float
    has: list[float]
    order: list[int]
    next_chunk: int = 0
    uploads: int = 0


@dataclass(slots=True)
class Backbone:
    """Level 1: who gets which chunk when, and the bytes on each link."""

    spec: FederationSpec
    cal: Calibration
    size: int
    chunk_size: int = CHUNK_SIZE
    sim: Simulator = field(default_factory=Simulator)
    core_has: list[float] = field(init=False)
    edges: list[_Edge] = field(init=False)
    core_in: Resource = field(init=False)
    core_out: Resource = field(init=False)
    _waiters: dict[int, list[Callable[[float], None]]] = field(
        init=False, default_factory=lambda: defaultdict(list)
    )

    def __post_init__(self) -> None:
        s, eff = self.spec, self.cal.efficiency
        n = max(1, math.ceil(self.size / self.chunk_size))
        self.core_has = [INF] * n
        self.core_in = Resource("core.uplink", eff * s.core_uplink)
        self.core_out = Resource("core.egress", eff * s.core_egress)
        per_byte = self.cal.cpu_rx + self.cal.cpu_tx
        cpu_cap = INF if s.cpu_quota is None or per_byte == 0 else s.cpu_quota / per_byte
        self.edges = [
            _Edge(
                i,
                Resource(f"site{i}.down", eff * b),
                Resource(f"site{i}.up", eff * b),
                min(eff * s.down, cpu_cap),
                [INF] * n,
                self._order(i, n),
            )
            for i, b in enumerate(s.backbone)
        ]

    def _order(self, i: int, n: int) -> list[int]:
        start = i * n // self.spec.sites if self.spec.striped else 0
        return [(start + j) % n for j in range(n)]

    def chunk_bytes(self, k: int) -> int:
        return min(self.chunk_size, self.size - k * self.chunk_size)

    def run(self) -> None:
        t0 = self.cal.start_s
        self.sim.at(t0, lambda now: self._core_fetch(0))
        for edge in self.edges:
            self.sim.at(t0, partial(self._next, edge))
        self.sim.run()

    def _core_fetch(self, k: int) -> None:
        def done(now: float) -> None:
            self.core_has[k] = now
            for wake in self._waiters.pop(k, []):
                wake(now)
            if k + 1 < len(self.core_has):
                self._core_fetch(k + 1)

        flow = Flow(self.chunk_bytes(k), ((self.core_in, 1.0),), on_done=done, tag=f"core{k}")
        self.sim.start(flow)

    def _next(self, edge: _Edge, now: float) -> None:
        if edge.next_chunk >= len(edge.order):
            return
        k = edge.order[edge.next_chunk]
        holders = [
            self.edges[j] for j in self.spec.sibling_ids(edge.index) if self.edges[j].has[k] <= now
        ]
        if holders:
            source = min(holders, key=lambda e: (e.uploads, e.index))
            source.uploads += 1
            sender = source.link_up
        elif self.core_has[k] <= now:
            source, sender = None, self.core_out
        else:
            self._waiters[k].append(lambda t: self._next(edge, t))
            return

        def done(t: float) -> None:
            edge.has[k] = t
            if source is not None:
                source.uploads -= 1
            edge.next_chunk += 1
            self._next(edge, t)

        uses = ((sender, 1.0), (edge.link_down, 1.0))
        flow = Flow(self.chunk_bytes(k), uses, edge.cap, done, f"site{edge.index}.{k}")

        def send(t: float) -> None:
            self.sim.start(flow)

        self.sim.at(now + self.cal.http_latency_s, send)

    def origin_bytes(self) -> int:
        return self.core_in.carried

    def backbone_bytes(self) -> dict[str, int]:
        return {
            "from_parent": self.core_out.carried,
            "from_siblings": sum(e.link_up.carried for e in self.edges),
            "into_sites": sum(e.link_down.carried for e in self.edges),
        }


@dataclass(slots=True)
class FederationResult:
    backbone: Backbone
    sites: list[SiteRun]
    times_s: list[float]  # every Pi of every edge site
    bounds_s: list[float]  # each Pi's own bound T_i


def run_federation(
    spec: FederationSpec, cal: Calibration, size: int, *, chunk_size: int = CHUNK_SIZE
) -> FederationResult:
    """Both levels; sites with the same arrival times are simulated once."""
    level1 = Backbone(spec, cal, size, chunk_size)
    level1.run()
    runs: list[SiteRun] = []
    times: list[float] = []
    bounds: list[float] = []
    done: dict[tuple[float, ...], SiteRun] = {}
    for i, edge in enumerate(level1.edges):
        key = tuple(edge.has)
        site = done.get(key)
        if site is None:
            sim = Simulator()
            site_spec = SiteSpec(spec.pis, spec.down, spec.up, INF, spec.cpu_quota, name=f"site{i}")
            site = SiteRun(sim, site_spec, cal, size, "arrivals", list(edge.has), chunk_size)
            site.start()
            sim.run()
            done[key] = site
        runs.append(site)
        site_times = site.pi_times()
        times += site_times
        bounds += [site_bound(spec, i, size)] * len(site_times)
    return FederationResult(level1, runs, times, bounds)
