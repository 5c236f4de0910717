"""The simulator's engine: a clock, an event queue and a flow-level network.

Sans-IO and deterministic: nothing here reads a clock or a socket. Transfers are *flows* over
*resources* (a link direction, a node's CPU budget); at every event the rates are recomputed as
a weighted max-min fair share (progressive filling), so a 1 GiB transfer costs a handful of
events instead of millions of packets. A flow may stand for ``copies`` identical transfers
(a class of identical Pis receiving the same chunk): each of its resource coefficients is then
already multiplied by the number of copies, and its ``cap`` limits the rate of one copy (one
Pi's port).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

INF = math.inf
_EPS = 1e-9


@dataclass(slots=True, eq=False)
class Resource:
    """A capacity shared by the flows that use it: bytes/s for a link, CPU-s/s for a budget."""

    name: str
    capacity: float
    used: float = 0.0  # integral of the load over time: bytes carried, CPU-s spent
    carried: int = 0  # whole flows finished over it (k·size), exact for byte counts


@dataclass(slots=True, eq=False)
class Flow:
    """``size`` bytes per copy moved at a common per-copy rate over ``uses``."""

    size: float
    uses: tuple[tuple[Resource, float], ...]
    cap: float = INF
    on_done: Callable[[float], None] | None = None
    tag: str = ""
    done: float = 0.0
    rate: float = 0.0

    @property
    def remaining(self) -> float:
        return self.size - self.done


@dataclass(order=True, slots=True)
class _Timer:
    at: float
    seq: int
    action: Callable[[float], None] = field(compare=False)


def fair_rates(flows: list[Flow]) -> None:
    """Set every flow's ``rate``: weighted max-min fair under the resources and the caps.

    Water-filling by levels: every unfrozen flow runs at the common level L; a resource with
    ``residual`` capacity left by the frozen flows and unfrozen load ``k`` (the sum of their
    coefficients) fills up at L = residual / k, a flow's cap at L = cap. Take the lowest such
    level from a heap, freeze the flows it stops, update the resources they touch, repeat.
    """
    residual: dict[int, float] = {}
    load: dict[int, float] = {}
    users: dict[int, list[Flow]] = {}
    live: list[Flow] = []
    for f in flows:
        f.rate = 0.0
        if f.remaining <= _EPS:
            continue
        live.append(f)
        for r, k in f.uses:
            rid = id(r)
            if rid not in residual:
                residual[rid], load[rid], users[rid] = r.capacity, 0.0, []
            load[rid] += k
            users[rid].append(f)
    version = dict.fromkeys(residual, 0)
    heap: list[tuple[float, int, int, int]] = []  # (level, kind 0=resource 1=flow, id, version)
    for rid, k in load.items():
        if k > 0 and residual[rid] < INF:
            heap.append((residual[rid] / k, 0, rid, 0))
    for i, f in enumerate(live):
        if f.cap < INF:
            heap.append((f.cap, 1, i, 0))
    heapq.heapify(heap)
    frozen: set[int] = set()
    while heap and len(frozen) < len(live):
        level, kind, key, ver = heapq.heappop(heap)
        if kind == 0:
            if ver != version[key]:
                continue
            stopped = [f for f in users[key] if id(f) not in frozen]
        else:
            stopped = [live[key]] if id(live[key]) not in frozen else []
        for f in stopped:
            frozen.add(id(f))
            f.rate = max(level, 0.0)
            for r, k in f.uses:
                rid = id(r)
                residual[rid] -= k * f.rate
                load[rid] -= k
                version[rid] += 1
                if load[rid] > _EPS and residual[rid] < INF:
                    heapq.heappush(heap, (residual[rid] / load[rid], 0, rid, version[rid]))
    for f in live:
        if id(f) not in frozen:  # nothing limits these flows: they finish at once
            f.rate = INF


class Simulator:
    """The event loop: timers plus flows that finish when their bytes are moved."""

    def __init__(self) -> None:
        self.now = 0.0
        self.flows: list[Flow] = []
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._dirty = True
        self.events = 0

    def at(self, when: float, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` at ``when`` (never in the past)."""
        heapq.heappush(self._timers, _Timer(max(when, self.now), next(self._seq), action))

    def start(self, flow: Flow) -> Flow:
        if flow.remaining <= _EPS:
            self._settle(flow)
            self.at(self.now, lambda now: self._finish(flow, now))
            return flow
        self.flows.append(flow)
        self._dirty = True
        return flow

    def cancel(self, flow: Flow) -> float:
        """Stop ``flow`` where it is (its ``on_done`` never runs); the bytes it still had, in
        whole bytes, so a flow sending the rest keeps ``carried`` exact."""
        self.flows = [f for f in self.flows if f is not flow]
        self._dirty = True
        moved = round(flow.done)
        for r, k in flow.uses:
            r.carried += round(k * moved)
        return flow.size - moved

    @staticmethod
    def _settle(flow: Flow) -> None:
        for r, k in flow.uses:
            r.used += k * flow.remaining
            r.carried += round(k * flow.size)
        flow.done = flow.size

    def _finish(self, flow: Flow, now: float) -> None:
        if flow.on_done is not None:
            flow.on_done(now)

    def run(self, until: float = INF) -> float:
        """Process events until nothing is left (or ``until``); the time of the last event."""
        while self.flows or self._timers:
            if self._dirty:
                fair_rates(self.flows)
                self._dirty = False
            t_flow = min((self._due_at(f) for f in self.flows), default=INF)
            t_timer = self._timers[0].at if self._timers else INF
            t = min(t_flow, t_timer)
            if t == INF:
                stuck = ", ".join(f.tag for f in self.flows[:5])
                raise RuntimeError(f"simulation stalled at {self.now:.3f} s with flows: {stuck}")
            if t > until:
                break
            # Flows due by t finish at t, even when rounding left them a few bytes (or a
            # finish time that adding to a large clock cannot move): no zero-length loops.
            due = {id(f) for f in self.flows if self._due_at(f) <= t}
            self._advance(t)
            self.events += 1
            if t_flow <= t_timer:
                finished = [f for f in self.flows if id(f) in due]
                self.flows = [f for f in self.flows if id(f) not in due]
                self._dirty = True
                for f in finished:
                    self._settle(f)
                    self._finish(f, self.now)
            else:
                timer = heapq.heappop(self._timers)
                timer.action(self.now)
        return self.now

    def _due_at(self, flow: Flow) -> float:
        # A flow left with less than _EPS (rounding) has no rate (fair_rates skips it) and is
        # due now, or it would never finish.
        if flow.remaining <= _EPS:
            return self.now
        return self.now + flow.remaining / flow.rate if flow.rate > 0 else INF

    def _advance(self, t: float) -> None:
        dt = t - self.now
        for f in self.flows:
            if f.rate == INF:
                moved = f.remaining
            elif f.rate > 0 and dt > 0:
                moved = min(f.remaining, f.rate * dt)
            else:
                continue
            f.done += moved
            for r, k in f.uses:
                r.used += k * moved
        self.now = t

    def touch(self) -> None:
        """Rates must be recomputed (a capacity changed)."""
        self._dirty = True
