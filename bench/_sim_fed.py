"""A federation in the simulator: edge sites under one core parent, over backbone links.

Two levels, because sites touch each other only through the backbone:

1. **Backbone.** Each edge site's seeder makes one request, as the agent does
   (``frumitcache/federation/_client.py``): its siblings first, in the configured (ring) order,
   with ``only-if-cached`` — a sibling answers only for an object it holds *complete*
   (``_server.py`` asks the store, which names complete objects only) — then the core parent,
   whose seeder fetches each chunk from the origin once (single-flight for every child) and
   streams it on cut-through, a chunk once it is whole and verified. The whole object then
   comes from that one member, chunk after chunk in one response. So in a release every site
   asks for at once, nobody holds it complete when asked and siblings carry nothing; they carry
   an object some sites already hold (``held_by``: those sites and the core hold it when the
   others ask, as after an earlier wave). A flow uses the sender's side (the core's egress, or
   the sibling's backbone link up) and the receiver's backbone link down, capped by what the
   receiving seeder can take (its port, and its CPU budget for receiving the chunk and handing
   one copy on). ``sibling_streams`` k is ``federation.max_sibling_streams``: a holder already
   streaming the object to k sibling sites answers the next one busy (503), which asks its next
   sibling, then the parent; 0 is no limit. Like a 504, a busy answer adds no time here: the
   seeder's walk over its siblings is one request latency, whatever it meets.

   ``sibling_recheck_s`` (``federation.sibling_recheck_s``): while a site streams from the
   parent, its seeder walks its siblings again that often; the first holding the object
   complete (a site that finished counts) and free takes the rest from the byte reached, one
   request latency later, and the parent serves one child fewer. Sites that finish then serve,
   so the bound is ``epidemic_bound``; ``first_holders_bound`` (S·F/(E + B)) is what a rule
   where each site asks once can reach, reported beside it.

   ``relay_depth`` (``federation.relay_depth``): siblings also serve what they fetch, each
   chunk once whole there, within the depth and not back up the chain; a site's streams are
   its link / ``relay_rate``, none below it (``serve_relays`` false); a first walk that finds
   nobody is walked again after a random pause. Partial objects are served: all links bound.

   ``chunk_exchange`` is a **what-if, not in the agent**: siblings serve each other single
   chunks they hold, one request per chunk, and site i asks for the chunks starting at
   i·K/S (then wraps), so sites hold different chunks and have something to give.

   ``parent_streams`` k > 0 is another **what-if, not in the agent** (an object-level
   epidemic): the parent streams to at most k children at once and answers the next one busy
   with a Retry-After; that child waits ``retry_after_s`` and walks its siblings again, then the
   parent, and so on. A site that completes holds the object and serves siblings like any
   holder (``sibling_streams`` at once), so sites that ask later find more holders.
2. **Sites.** Each site then runs alone (:class:`bench._sim_site.SiteRun` fed with the chunk
   arrival times of level 1). Decoupling them ignores that a seeder serving siblings also uses
   its LAN port for them; backbone links (10-50 Mbit/s) are far below a Pi's port.

The lower bound of the last Pi, for F bytes, S sites of N Pis that ask, core uplink U_c,
core egress E, backbone link b_i of site i, Pi links d/u::

    T = max over i of max(F/U_c, F/b_i, F/d, N·F/(b_i + N·u)),  and  S·F/(E + B)

every byte crosses the core's uplink (not when the core holds the object already), site i's
backbone link and a Pi's downlink; the site's N copies leave its backbone link or its Pis'
ports; and the S sites' copies leave the core or the backbone uplinks of sites that can serve
as siblings under the rule: B = 0 when every site asks at once (nobody holds the object
complete then), the sum of the ``held_by`` sites' links that are some asking site's sibling
when some sites hold it (a relaxation: which sibling a site may use is not imposed), every
site's link in the chunk-exchange what-if. The first four terms bound each Pi of site i
(``site_bound``: a Pi's ratio is taken against it); the shared term bounds only the last site.

In the epidemic what-if a site that completes serves too, so the capacity grows as sites
finish and S·F/(E + B) is no bound; ``epidemic_bound`` replaces it. Let c_1 <= ... <= c_S be
the asking sites' completion times and β_1 >= ... >= β_S their backbone links sorted. By c_m,
m·F bytes have reached sites, from the core, the holders and the m-1 sites complete before:

    m·F <= (E + B)·c_m + Σ_{l<m} β_l·(c_m - c_l)^+        and        c_m >= F / min(β_m, d)

(the largest links finishing first gives the most capacity; among any m sites the slowest
link is at most β_m). The smallest c_m meeting both, given the earlier ones, is g_m <= c_m
by induction; the bound is max(g_S, each site's own terms). It holds for any rule in which a
site serves only objects it holds complete, whatever it does with busy answers.
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
from frumitcache.federation._client import RELAY_PAUSE_S


@dataclass(frozen=True, slots=True)
class FederationSpec:
    """Edge sites of ``pis`` Pis each; bytes/s; ``backbone[i]``: site i's link, each way."""

    pis: int
    down: float
    up: float
    backbone: tuple[float, ...]
    core_uplink: float
    core_egress: float
    siblings: int = 0  # ring neighbours on each side a seeder asks first
    cpu_quota: float | None = None
    # Sites that hold the object complete when the others ask (the core holds it too): they
    # ask nothing, their Pis are not counted.
    held_by: frozenset[int] = frozenset()
    # What-if, not in the agent: siblings serve single held chunks (module docstring).
    chunk_exchange: bool = False
    #: federation.max_sibling_streams: held objects a sibling streams at once (0: no limit).
    sibling_streams: int = 0
    # What-if, not in the agent: the parent streams to at most this many children at once and
    # answers the others busy; they retry their siblings, then it, after ``retry_after_s``.
    parent_streams: int = 0
    retry_after_s: float = 1.0
    #: federation.sibling_recheck_s: a child streaming from its parent walks its siblings
    #: again this often and moves to the first that holds the object and is free (0: never).
    sibling_recheck_s: float = 0.0
    #: federation.relay_depth: a site also serves siblings what it is still fetching, each
    #: chunk once whole, while at most relay_depth - 1 relays stand between the asker and the
    #: parent (0: only objects held complete).
    relay_depth: int = 0
    #: With relays: each site's max_sibling_streams is its link / relay_rate (at least 1) and a
    #: site with a slower link does not relay, as the operator is told (0: ``sibling_streams``).
    relay_rate: float = 0.0

    @property
    def sites(self) -> int:
        return len(self.backbone)

    def askers(self) -> list[int]:
        return [i for i in range(self.sites) if i not in self.held_by]

    def sibling_ids(self, i: int) -> list[int]:
        """Site i's siblings in the order its seeder asks them: nearest first, right, left."""
        s = self.sites
        near = [(i + k) % s for j in range(1, self.siblings + 1) for k in (j, -j)]
        return [j for j in dict.fromkeys(near) if j != i]

    def sibling_upload(self) -> float:
        """B of the module docstring: the backbone upload siblings can give under the rule."""
        if not self.siblings:
            return 0.0
        if self.chunk_exchange or self.relay_depth:
            return sum(self.backbone)  # partial objects are served: every link can give
        serving = {j for i in self.askers() for j in self.sibling_ids(i) if j in self.held_by}
        return sum(self.backbone[j] for j in serving)


def backbone_rates(sites: int, low: float, high: float, seed: int) -> tuple[float, ...]:
    """Each site's backbone link, uniform in [low, high] (seeded)."""
    rng = random.Random(seed)
    return tuple(rng.uniform(low, high) for _ in range(sites))


def every_kth(sites: int, share: float) -> frozenset[int]:
    """``share`` of the sites, spread evenly around the ring (0, k, 2k, ...)."""
    if share <= 0:
        return frozenset()
    count = max(1, min(sites, round(share * sites)))
    return frozenset(j * sites // count for j in range(count))


def site_bound(spec: FederationSpec, i: int, size: int) -> float:
    """T_i of the module docstring without its shared term: a bound for each Pi of site i."""
    f, n, b = size, spec.pis, spec.backbone[i]
    origin = 0.0 if spec.held_by else f / spec.core_uplink
    return max(origin, f / b, f / spec.down, n * f / (b + n * spec.up))


def federation_bound(spec: FederationSpec, size: int) -> float:
    """The last Pi's bound under the spec's rule: ``epidemic_bound`` where finished sites may
    serve (sites re-ask their siblings: ``sibling_recheck_s``, or the epidemic what-if), else
    ``first_holders_bound``."""
    if spec.relay_depth and spec.siblings:
        return first_holders_bound(spec, size)  # relays serve partial objects: every link
    if spec.parent_streams or (spec.sibling_recheck_s and spec.siblings):
        return epidemic_bound(spec, size)
    return first_holders_bound(spec, size)


def first_holders_bound(spec: FederationSpec, size: int) -> float:
    """The largest T_i with the shared term S·F/(E + B): the bound when only the core and
    the sites holding the object when the others ask send it (each site asks once)."""
    shared = len(spec.askers()) * size / (spec.core_egress + spec.sibling_upload())
    return max(shared, *(site_bound(spec, i, size) for i in spec.askers()))


def epidemic_bound(spec: FederationSpec, size: int) -> float:
    """The last Pi's bound when sites serve once they hold the object complete (g_S of the
    module docstring, and each asking site's own terms)."""
    links = sorted((spec.backbone[i] for i in spec.askers()), reverse=True)
    serving = links if spec.siblings else [0.0] * len(links)
    base = spec.core_egress + spec.sibling_upload()
    gamma: list[float] = []
    for m, link in enumerate(links, start=1):
        fluid = _fill_time(m * size, base, list(zip(gamma, serving, strict=False)))
        gamma.append(max(fluid, size / min(link, spec.down)))
    return max(gamma[-1], *(site_bound(spec, i, size) for i in spec.askers()))


def _fill_time(need: float, rate: float, starts: list[tuple[float, float]]) -> float:
    """When ``need`` bytes have flowed from time 0 at ``rate``, plus each ``(t, r)`` of
    ``starts`` adding r from t on."""
    now, got = 0.0, 0.0
    for start, extra in sorted(starts):
        if got + rate * (start - now) >= need:
            break
        got += rate * (start - now)
        now, rate = start, rate + extra
    return now + (need - got) / rate


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
    source: _Edge | None = None  # the sibling the whole object comes from (held rule)
    streams: int = 0  # held objects this site streams to siblings right now (held rule)
    done: bool = False  # every chunk received
    busy_answers: int = 0  # from the parent (epidemic what-if)
    flow: Flow | None = None  # the chunk on its way now (held rule)
    gen: int = 0  # bumped when the source changes: a wait for the old one is dropped
    switches: int = 0  # moves from the parent to a sibling (sibling_recheck_s)
    asked: bool = False  # its fetch runs: with relay_depth it may serve what it has so far

    @property
    def complete(self) -> float:
        return max(self.has)


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
    core_streams: int = field(init=False, default=0)  # children the parent streams to now
    _waiters: dict[int, list[Callable[[float], None]]] = field(
        init=False, default_factory=lambda: defaultdict(list)
    )
    _rng: random.Random = field(init=False, default_factory=lambda: random.Random(0))
    # (site, chunk) -> children waiting for a relay's chunk (relay_depth)
    _relay_waiters: dict[tuple[int, int], list[Callable[[float], None]]] = field(
        init=False, default_factory=lambda: defaultdict(list)
    )

    def __post_init__(self) -> None:
        s, eff = self.spec, self.cal.efficiency
        n = max(1, math.ceil(self.size / self.chunk_size))
        held = 0.0 if s.held_by else INF
        self.core_has = [held] * n
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
                [0.0 if i in s.held_by else INF] * n,
                self._order(i, n),
            )
            for i, b in enumerate(s.backbone)
        ]

    def _order(self, i: int, n: int) -> list[int]:
        start = i * n // self.spec.sites if self.spec.chunk_exchange else 0
        return [(start + j) % n for j in range(n)]

    def chunk_bytes(self, k: int) -> int:
        return min(self.chunk_size, self.size - k * self.chunk_size)

    def run(self) -> None:
        t0 = self.cal.start_s
        if not self.spec.held_by:
            self.sim.at(t0, lambda now: self._core_fetch(0))
        for i in self.spec.askers():
            self.sim.at(t0, partial(self._ask, self.edges[i]))
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

    def _ask(self, edge: _Edge, now: float, second: bool = False) -> None:
        """The seeder's one request: the first free sibling holding the object (or relaying,
        after a pause of up to the agent's ``RELAY_PAUSE_S`` if nobody does), else the parent;
        the response arrives a request latency later."""
        if not self.spec.chunk_exchange:
            holders = self._free_holders(edge, now)
            if not holders and not second and self.spec.relay_depth > 1 and self.spec.siblings:
                pause = self._rng.uniform(0, RELAY_PAUSE_S)
                self.sim.at(now + pause, partial(self._ask, edge, second=True))
                return
            edge.asked = True  # its fetch runs, from a known source: it may relay
            edge.source = holders[0] if holders else None
            answered = now + self.cal.http_latency_s
            if edge.source is not None:
                edge.source.streams += 1
            elif self.spec.parent_streams and self.core_streams >= self.spec.parent_streams:
                # What-if: the parent is busy; by the Retry-After more siblings may hold it.
                edge.busy_answers += 1
                self.sim.at(answered + self.spec.retry_after_s, partial(self._ask, edge))
                return
            else:
                self.core_streams += 1
                again = self.spec.sibling_recheck_s
                if again:
                    self.sim.at(answered + again, partial(self._recheck, edge))
            self.sim.at(answered, partial(self._next, edge))
        else:
            self._next(edge, now)

    def _free_holders(self, edge: _Edge, now: float) -> list[_Edge]:
        """``edge``'s siblings, in its order, holding the object complete (or, with
        ``relay_depth``, fetching it within the depth and not through ``edge``) and streaming
        to fewer sites than their limit (not busy)."""
        out = []
        for j in self.spec.sibling_ids(edge.index):
            other = self.edges[j]
            limit = self._limit(j)
            if limit and other.streams >= limit:
                continue
            if other.complete <= now or self._may_relay(other, edge, now):
                out.append(other)
        return out

    def _limit(self, j: int) -> int:
        """Site j's max_sibling_streams."""
        if (s := self.spec).relay_depth and s.relay_rate:
            return max(1, int(s.backbone[j] // s.relay_rate))
        return s.sibling_streams

    def _may_relay(self, other: _Edge, asker: _Edge, now: float) -> bool:
        """``frumitcache.federation.may_relay``: ``other`` fetches the object now, its bytes
        do not come through ``asker``, and fewer than relay_depth relays would stand between
        ``asker`` and the parent (a complete holder up the chain ends the chain)."""
        s, link = self.spec, self.spec.backbone[other.index]
        # A site slower than relay_rate does not relay (federation.serve_relays false).
        if not s.relay_depth or not other.asked or other.done or link < s.relay_rate:
            return False
        depth, up = 1, other.source  # walk up: a loop back to asker, or too deep
        while up is not None and up.complete > now:
            if up is asker:
                return False
            depth, up = depth + 1, up.source
        return depth < s.relay_depth

    def _next(self, edge: _Edge, now: float) -> None:
        if edge.next_chunk >= len(edge.order):
            if not edge.done and not self.spec.chunk_exchange:
                # The stream ended: the holder (or the parent) may serve another.
                if edge.source is not None:
                    edge.source.streams -= 1
                else:
                    self.core_streams -= 1
            edge.done = True
            return
        k = edge.order[edge.next_chunk]
        exchange = self.spec.chunk_exchange
        source: _Edge | None
        if exchange:
            holders = [
                self.edges[j]
                for j in self.spec.sibling_ids(edge.index)
                if self.edges[j].has[k] <= now
            ]
            source = min(holders, key=lambda e: (e.uploads, e.index)) if holders else None
        else:
            source = edge.source
        if source is None and self.core_has[k] > now:
            gen = edge.gen
            self._waiters[k].append(lambda t: self._next(edge, t) if edge.gen == gen else None)
            return
        if source is not None and not exchange and source.has[k] > now:
            # A relay sends each chunk once it holds it whole (verified), as the parent does.
            gen = edge.gen
            self._relay_waiters[(source.index, k)].append(
                lambda t: self._next(edge, t) if edge.gen == gen else None
            )
            return
        # One response: the next chunk follows on the same stream; the what-if asks per chunk.
        delay = self.cal.http_latency_s if exchange else 0.0
        self._send(edge, k, self.chunk_bytes(k), source, now + delay)

    def _send(self, edge: _Edge, k: int, size: float, source: _Edge | None, when: float) -> None:
        """Chunk k (its last ``size`` bytes) from ``source`` (None: the parent) from ``when``."""
        if source is not None:
            source.uploads += 1
        sender = source.link_up if source is not None else self.core_out

        def done(t: float) -> None:
            edge.has[k] = t
            edge.flow = None
            for wake in self._relay_waiters.pop((edge.index, k), []):
                wake(t)
            if source is not None:
                source.uploads -= 1
            edge.next_chunk += 1
            self._next(edge, t)

        uses = ((sender, 1.0), (edge.link_down, 1.0))
        flow = Flow(size, uses, edge.cap, done, f"site{edge.index}.{k}")

        def send(t: float) -> None:
            edge.flow = self.sim.start(flow)

        if when <= self.sim.now:
            send(when)
        else:
            self.sim.at(when, send)

    def _recheck(self, edge: _Edge, now: float) -> None:
        """``sibling_recheck_s``: a child still streaming from its parent walks its siblings
        again; the first holding the object complete and free takes the rest (a Range
        request after the bytes the child has: one request latency)."""
        if edge.done or edge.source is not None:
            return
        # Only a holder takes over (the agent's move asks without relay).
        holders = [h for h in self._free_holders(edge, now) if h.complete <= now]
        if not holders:
            self.sim.at(now + self.spec.sibling_recheck_s, partial(self._recheck, edge))
            return
        holder = holders[0]
        self.core_streams -= 1
        holder.streams += 1
        edge.source = holder
        edge.switches += 1
        edge.gen += 1
        when = now + self.cal.http_latency_s
        flow = edge.flow
        if flow is None or flow not in self.sim.flows:
            self.sim.at(when, partial(self._next, edge))  # between chunks, or waiting on one
            return
        left = self.sim.cancel(flow)
        edge.flow = None
        self._send(edge, edge.order[edge.next_chunk], left, holder, when)

    def origin_bytes(self) -> int:
        return self.core_in.carried

    def backbone_bytes(self) -> dict[str, int]:
        up = sum(e.link_up.carried for e in self.edges)
        down = sum(e.link_down.carried for e in self.edges)
        return {"from_parent": self.core_out.carried, "from_siblings": up, "into_sites": down}


@dataclass(slots=True)
class FederationResult:
    backbone: Backbone
    sites: list[SiteRun]  # the sites that asked, in order
    times_s: list[float]  # every Pi of every site that asked
    bounds_s: list[float]  # each Pi's own site's bound (local terms)
    bound_s: float  # the federation's: the last Pi's


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
    for i in spec.askers():
        edge = level1.edges[i]
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
    return FederationResult(level1, runs, times, bounds, federation_bound(spec, size))
