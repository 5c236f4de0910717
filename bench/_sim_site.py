"""One site in the simulator: a seeder and its members, chunk by chunk, as flows.

The members of a site are identical Pis, so they are one *class*: one aggregated resource per
direction (capacity M·d, M·u) and one aggregated CPU budget (M·quota), and a chunk's spread
among them is a flow of M-1 copies, each copy capped at one Pi's port. That keeps 100 Pis x 256
chunks at a few thousand events; per-Pi completion times are recovered afterwards from the
assignment (see :meth:`SiteRun.pi_times`).

A chunk's path mirrors the agents (``frumitcache/agent/_content.py``): the seeder completes it
(from the uplink, or the federation), announces it, and the member it is *assigned* to takes it
from the seeder (super-seeding: the seeder's port carries one copy) while the other M-1 members
trade it among themselves through libtorrent, piece by piece (a member forwards a piece once it
holds it; pieces are chunk/32, ``frumitcache.swarm.piece_size_for``), so the spread finishes at
the earliest a few piece-times after the seeder's copy. Each member works on at most
``parallel_chunks`` chunks at once, and every libtorrent chunk pays a dial latency first.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from bench._sim_flow import INF, Flow, Resource, Simulator
from frumitcache.config import StoreConfig, SwarmConfig
from frumitcache.swarm import piece_size_for

CHUNK_SIZE = StoreConfig().chunk_size
PARALLEL_CHUNKS = SwarmConfig().parallel_chunks
GB = 1e9


@dataclass(frozen=True, slots=True)
class Calibration:
    """Per-node costs and latencies, from measurements (see ``bench._sim_validate``)."""

    # TCP payload per byte on a shaped Ethernet link: MSS 1448 of a 1514-byte frame (htb
    # counts whole frames).
    efficiency: float = 1448 / 1514
    start_s: float = 1.0  # a pull's request until the seeder's first origin byte
    chunk_latency_s: float = 1.0  # a libtorrent chunk: torrent added, peers dialled
    http_latency_s: float = 0.05  # a chunk over peer HTTP (warm, the assigned member)
    agent_cpu_s_per_gb: float = 0.0  # all of a node's agent CPU per GB delivered to it
    client_cpu_s_per_gb: float = 0.0  # the pull client's CPU per GB it writes
    rx_share: float = 0.84  # of the agent's cost, the receiving side (bench.member: 5.1 / 6.1)
    parallel_chunks: int = PARALLEL_CHUNKS

    @property
    def cpu_rx(self) -> float:
        """CPU-s per byte received (agent's receiving share and the client's copy)."""
        return (self.agent_cpu_s_per_gb * self.rx_share + self.client_cpu_s_per_gb) / GB

    @property
    def cpu_tx(self) -> float:
        return self.agent_cpu_s_per_gb * (1 - self.rx_share) / GB


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """A site: ``pis`` Pis (the seeder among them), rates in bytes/s."""

    pis: int
    down: float
    up: float
    uplink: float
    cpu_quota: float | None = None  # fraction of one core per Pi; None: unlimited
    host_cores: float | None = None  # every Pi on one machine of this many cores (the testbed)
    name: str = "site"


@dataclass(slots=True)
class _Chunk:
    index: int
    size: int
    at_seeder: float = INF
    assigned_done: float = INF  # the assigned member's copy
    spread_done: float = INF  # every member's copy
    waiting: int = 0  # parts (assigned copy, traded copies) started and not yet done
    parts: int = 0  # parts started
    trailing: bool = False  # the traded copies wait for the assigned one
    lag: float = 0.0


@dataclass(slots=True)
class SiteRun:
    """One site's run inside ``sim``; ``feed`` is ``"uplink"`` (the seeder fetches over the
    site's uplink), ``"warm"`` (the seeder holds the object) or ``"arrivals"`` (the federation
    delivers chunk k at ``arrivals[k]``)."""

    sim: Simulator
    spec: SiteSpec
    cal: Calibration
    size: int
    feed: str = "uplink"
    arrivals: list[float] | None = None
    chunk_size: int = CHUNK_SIZE
    on_finished: Callable[[SiteRun], None] | None = None
    chunks: list[_Chunk] = field(init=False)
    res: dict[str, Resource] = field(init=False)
    seeder_done: float = field(init=False, default=INF)
    _ready: deque[_Chunk] = field(init=False, default_factory=deque)
    _in_flight: int = field(init=False, default=0)
    _left: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        s, eff = self.spec, self.cal.efficiency
        m = self.members
        quota = INF if s.cpu_quota is None else s.cpu_quota
        self.res = {
            "uplink": Resource(f"{s.name}.uplink", eff * s.uplink),
            "seeder.down": Resource(f"{s.name}.seeder.down", eff * s.down),
            "seeder.up": Resource(f"{s.name}.seeder.up", eff * s.up),
            "seeder.cpu": Resource(f"{s.name}.seeder.cpu", quota),
            "members.down": Resource(f"{s.name}.members.down", eff * s.down * m),
            "members.up": Resource(f"{s.name}.members.up", eff * s.up * m),
            "members.cpu": Resource(f"{s.name}.members.cpu", quota * m),
            "host": Resource(f"{s.name}.host", INF if s.host_cores is None else s.host_cores),
        }
        n = max(1, math.ceil(self.size / self.chunk_size))
        self.chunks = [
            _Chunk(k, min(self.chunk_size, self.size - k * self.chunk_size)) for k in range(n)
        ]
        self._left = n if m else 0

    @property
    def members(self) -> int:
        return self.spec.pis - 1

    def start(self) -> None:
        t0 = self.sim.now + self.cal.start_s
        if self.feed == "warm":
            self.sim.at(t0, self._warm_start)
        elif self.feed == "arrivals":
            assert self.arrivals is not None
            for chunk, t in zip(self.chunks, self.arrivals, strict=True):
                self.sim.at(t, partial(self._at_seeder, chunk))
        else:
            self.sim.at(t0, lambda now: self._fetch(0))

    # --- the seeder's copy ---------------------------------------------------------------------

    def _fetch(self, k: int) -> None:
        """The origin streams the chunks one after another (one HTTP response)."""
        r, rx = self.res, self.cal.cpu_rx
        chunk = self.chunks[k]

        def done(now: float) -> None:
            self._at_seeder(chunk, now)
            if k + 1 < len(self.chunks):
                self._fetch(k + 1)

        uses = ((r["uplink"], 1.0), (r["seeder.down"], 1.0), (r["seeder.cpu"], rx), (r["host"], rx))
        self.sim.start(Flow(chunk.size, uses, on_done=done, tag=f"{self.spec.name}.fetch{k}"))

    def _warm_start(self, now: float) -> None:
        # The seeder's client reads the object from its own store: only the client's CPU.
        r, cost = self.res, self.cal.client_cpu_s_per_gb / GB

        def done(t: float) -> None:
            self.seeder_done = t
            self._check_finished()

        uses = ((r["seeder.cpu"], cost), (r["host"], cost))
        self.sim.start(Flow(self.size, uses, on_done=done, tag="warm"))
        for chunk in self.chunks:
            chunk.at_seeder = now
            self._ready.append(chunk)
        self._pump(now)

    def _at_seeder(self, chunk: _Chunk, now: float) -> None:
        chunk.at_seeder = now
        if all(c.at_seeder < INF for c in self.chunks) and self.feed != "warm":
            self.seeder_done = now
            self._check_finished()
        self._ready.append(chunk)
        self._pump(now)

    # --- the members' copies -------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        if not self.members:
            self._ready.clear()
            return
        while self._ready and self._in_flight < self.cal.parallel_chunks:
            chunk = self._ready.popleft()
            self._in_flight += 1
            # Warm, the assigned member takes a chunk only the seeder holds over peer HTTP;
            # cold, it is a libtorrent chunk like the others.
            latency = self.cal.http_latency_s if self.feed == "warm" else self.cal.chunk_latency_s
            self.sim.at(now + latency, partial(self._assigned, chunk))
            if self.members > 1:
                later = now + self.cal.chunk_latency_s
                self.sim.at(later, partial(self._traded, chunk))

    def _port(self) -> float:
        return self.cal.efficiency * min(self.spec.up, self.spec.down)

    def _assigned(self, chunk: _Chunk, now: float) -> None:
        """The assigned member's copy, from the seeder's port."""
        r, rx, tx = self.res, self.cal.cpu_rx, self.cal.cpu_tx
        chunk.waiting += 1
        chunk.parts += 1

        def done(t: float) -> None:
            chunk.assigned_done = t
            self._part_done(chunk, t)

        uses = (
            (r["seeder.up"], 1.0),
            (r["members.down"], 1.0),
            (r["seeder.cpu"], tx),
            (r["members.cpu"], rx),
            (r["host"], rx + tx),
        )
        self.sim.start(
            Flow(chunk.size, uses, self._port(), done, f"{self.spec.name}.a{chunk.index}")
        )

    def _traded(self, chunk: _Chunk, now: float) -> None:
        """The other M-1 copies, from the members' ports, piece by piece: the last copy trails
        the assigned member's by the pieces' relay depth (log2 of the copies, one piece-time
        per hop)."""
        r, rx, tx = self.res, self.cal.cpu_rx, self.cal.cpu_tx
        others = self.members - 1
        chunk.waiting += 1
        chunk.parts += 1
        lag = math.ceil(math.log2(others + 1)) * piece_size_for(chunk.size) / self._port()

        def done(t: float) -> None:
            if chunk.assigned_done == INF:  # the relay needs the assigned copy first
                chunk.trailing = True
                return
            self.sim.at(max(t, chunk.assigned_done + lag), lambda t2: self._part_done(chunk, t2))

        uses = (
            (r["members.up"], others),
            (r["members.down"], others),
            (r["members.cpu"], others * (rx + tx)),
            (r["host"], others * (rx + tx)),
        )
        self.sim.start(
            Flow(chunk.size, uses, self._port(), done, f"{self.spec.name}.t{chunk.index}")
        )
        chunk.lag = lag

    def _part_done(self, chunk: _Chunk, now: float) -> None:
        chunk.waiting -= 1
        if chunk.trailing and chunk.assigned_done < INF:
            chunk.trailing = False
            self.sim.at(now + chunk.lag, lambda t: self._part_done(chunk, t))
            return
        if chunk.waiting or chunk.parts < (2 if self.members > 1 else 1):
            return
        chunk.spread_done = now if self.members > 1 else chunk.assigned_done
        self._in_flight -= 1
        self._left -= 1
        self._pump(now)
        self._check_finished()

    def _check_finished(self) -> None:
        if self._left == 0 and self.seeder_done < INF and self.on_finished is not None:
            self.on_finished(self)
            self.on_finished = None

    # --- figures -------------------------------------------------------------------------------

    def pi_times(self) -> list[float]:
        """Each Pi's completion: the seeder's, then member j's, which holds chunk k when its
        spread is done, or earlier for the chunks assigned to it (k ≡ j mod M: the agents'
        hash assignment spreads chunks evenly, modelled round-robin)."""
        times = [self.seeder_done]
        m = self.members
        if not m:
            return times
        by_spread = sorted(self.chunks, key=lambda c: c.spread_done, reverse=True)
        for j in range(m):
            own = [c.assigned_done for c in self.chunks if c.index % m == j]
            latest_other = next((c.spread_done for c in by_spread if c.index % m != j), 0.0)
            times.append(max([latest_other, *own]))
        return times

    def uplink_bytes(self) -> int:
        return self.res["uplink"].carried

    def lan_bytes(self) -> dict[str, int]:
        """Bytes delivered to members, by sender: the seeder's port and the members' ports."""
        return {
            "from_seeder": self.res["seeder.up"].carried,
            "from_members": self.res["members.up"].carried,
        }

    def cpu_s(self) -> dict[str, float]:
        return {"seeder": self.res["seeder.cpu"].used, "members": self.res["members.cpu"].used}
