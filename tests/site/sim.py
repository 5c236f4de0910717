"""A simulated site for the pure state machines: nodes, a lossy reordering network, crashes,
restarts and partitions, all in simulated time (no sockets, no clock).

Broadcasts (beacons to ``None``) reach every other node, like multicast on one LAN. Every
message is independently lost with probability ``loss`` and delayed by a random delay, so
messages reorder. A partition is a list of groups; a message crosses only between nodes of the
same group, both when it is sent and when it arrives.

With ``evidence`` a node's probe of a late seeder (election rule 8) is answered "refused" only
when the seeder is down (crashed, not restarted) and reachable, after a round trip, unless the
SYN or the reset is lost; a live seeder, a partitioned one or a lost packet answer nothing (a
timeout: no evidence), as a real kernel and network do.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from frumitcache.site import MemberInfo, Message, SiteCore, Timings
from frumitcache.site._election import Durable
from frumitcache.site._evidence import Probe, Refused

TIMINGS = Timings()


def member(i: int, *, priority: int = 0, ram: int = 1 << 30, wired: bool = True) -> MemberInfo:
    return MemberInfo(
        node_id=f"n{i}",
        address=f"10.0.0.{i + 1}",
        control_port=3143,
        peer_port=3144,
        swarm_port=3145,
        priority=priority,
        ram_bytes=ram,
        wired=wired,
    )


@dataclass
class SimNode:
    info: MemberInfo
    core: SiteCore | None
    durable: Durable = field(default_factory=Durable)


class SimSite:
    def __init__(
        self,
        infos: list[MemberInfo],
        *,
        seed: int = 0,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.05),
        timings: Timings = TIMINGS,
        start: float = 0.0,
        evidence: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.timings = timings
        self.now = start
        self.solo = len(infos) == 1
        self.evidence = evidence
        self.probes = 0  # probes sent, and how many came back refused
        self.refusals = 0
        self.nodes: dict[str, SimNode] = {}
        self._queue: list[tuple[float, int, str, str, Message | Refused]] = []
        self._seq = itertools.count()
        self.groups: list[set[str]] | None = None
        self.wins: dict[int, set[str]] = {}  # term -> nodes that won it
        #: (term, winner) -> the winner's electorate when it won: who it could have counted.
        self.win_electorates: dict[tuple[int, str], frozenset[str]] = {}
        self.max_seeders = 0  # most nodes with is_seeder(now) at one instant
        self.overlaps: list[tuple[float, list[str]]] = []
        self.seeder_history: list[tuple[float, str, int]] = []  # (time, node, term) lease starts
        self._deadline: dict[str, float] = {}
        #: Messages each node sent (one per recipient, lost ones too) and received.
        self.sent: Counter[str] = Counter()
        self._seeding: set[str] = set()
        self.received: Counter[str] = Counter()
        #: Messages per (sender, recipient) pair.
        self.links: Counter[tuple[str, str]] = Counter()
        for info in infos:
            self.nodes[info.node_id] = SimNode(info, None)
            self.start_node(info.node_id)

    # --- faults -------------------------------------------------------------------------------

    def start_node(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.core = SiteCore(
            node.info, self.timings, now=self.now, solo=self.solo, durable=node.durable
        )
        self._deadline[node_id] = node.core.next_deadline()

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.core is not None:
            node.durable = node.core.durable
            node.core = None
            self._deadline.pop(node_id, None)
            self._seeding.discard(node_id)

    def up(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.core is not None]

    def partition(self, groups: list[set[str]] | None) -> None:
        self.groups = groups

    def connected(self, a: str, b: str) -> bool:
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    # --- running ------------------------------------------------------------------------------

    def _send(self, src: str, outgoing: list) -> None:  # type: ignore[type-arg]
        for out in outgoing:
            targets = [n for n in self.nodes if n != src] if out.to is None else [out.to]
            for dst in targets:
                if dst not in self.nodes or not self.connected(src, dst):
                    continue
                self.sent[src] += 1
                self.links[src, dst] += 1
                if self.rng.random() < self.loss:
                    continue
                at = self.now + self.rng.uniform(*self.delay)
                heapq.heappush(self._queue, (at, next(self._seq), src, dst, out.msg))

    def _probe(self, src: str, probe: Probe) -> None:
        """A TCP connect to the seeder's peer port: refused only if it is down and reachable."""
        self.probes += 1
        dst = probe.seeder
        target = self.nodes.get(dst)
        if target is None or target.core is not None or not self.connected(src, dst):
            return  # accepted (alive) or no answer: no evidence
        if self.rng.random() < self.loss or self.rng.random() < self.loss:
            return  # the SYN or the reset lost: a timeout
        self.refusals += 1
        at = self.now + self.rng.uniform(*self.delay) + self.rng.uniform(*self.delay)
        # Delivered as if from the seeder (the reset comes from its host); src/dst swapped.
        heapq.heappush(self._queue, (at, next(self._seq), dst, src, Refused(probe)))

    def _next_time(self) -> float:
        head = self._queue[0][0] if self._queue else float("inf")
        return min(head, min(self._deadline.values(), default=float("inf")))

    def run_until(self, until: float) -> None:
        stuck = 0
        while True:
            t = self._next_time()
            stuck = stuck + 1 if t <= self.now else 0
            if stuck > 10_000:
                raise AssertionError(f"a machine keeps asking for a timer at {t} <= {self.now}")
            if t > until:
                self.now = until
                self._check()
                return
            self.now = max(self.now, t)
            while self._queue and self._queue[0][0] <= self.now:
                _at, _s, src, dst, msg = heapq.heappop(self._queue)
                node = self.nodes[dst]
                if node.core is None or not self.connected(src, dst):
                    continue
                if isinstance(msg, Refused):
                    self._send(dst, node.core.refused(msg, self.now) or [])
                    self._deadline[dst] = node.core.next_deadline()
                    self._check(dst)
                    continue
                self.received[dst] += 1
                self._send(dst, node.core.receive(src, msg, self.now))
                self._deadline[dst] = node.core.next_deadline()
                self._check(dst)
            for node_id, deadline in list(self._deadline.items()):
                core = self.nodes[node_id].core
                if core is not None and deadline <= self.now:
                    self._send(node_id, core.on_timer(self.now))
                    probe = core.take_probe(self.now)
                    if probe is not None and self.evidence:
                        self._probe(node_id, probe)
                    self._deadline[node_id] = core.next_deadline()
                    self._check(node_id)

    def _check(self, changed: str | None = None) -> None:
        """Record seeders now. Only a node in the seeder role can hold a lease, so only those
        (tracked as events change them) are looked at: O(seeders), not O(N), per event."""
        if changed is not None:
            core = self.nodes[changed].core
            if core is not None and core.election.role.value == "seeder":
                self._seeding.add(changed)
                self.wins.setdefault(core.election.term, set()).add(changed)
                self.win_electorates.setdefault(
                    (core.election.term, changed), core.membership.electorate(self.now)
                )
            else:
                self._seeding.discard(changed)
        seeders = []
        for node_id in sorted(self._seeding):
            core = self.nodes[node_id].core
            if core is None:
                continue
            if core.is_seeder(self.now):
                seeders.append(node_id)
                term = core.election.term
                if not self.seeder_history or self.seeder_history[-1][1:] != (node_id, term):
                    self.seeder_history.append((self.now, node_id, term))
        if len(seeders) > 1:
            self.overlaps.append((self.now, seeders))
        self.max_seeders = max(self.max_seeders, len(seeders))

    # --- observations -------------------------------------------------------------------------

    def seeders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.core and node.core.is_seeder(self.now)]

    def views(self) -> dict[str, tuple[str, int] | None]:
        return {n: node.core.seeder(self.now) for n, node in self.nodes.items() if node.core}

    def double_wins(self) -> dict[int, set[str]]:
        """Terms won by two nodes each of which counted the other in its electorate when it
        won. A winner whose electorate lacked the other had not heard from it for
        ``forget_after_s`` (never met, or every node it knew was down that long): by the
        election's rule 4 it is a site of its own until they meet, and healing (rule 7) decides
        which seeder stays. E.g. a node down from its first boot that comes back after the
        others went down elects itself alone, in the term they had already used."""
        double: dict[int, set[str]] = {}
        for term, winners in self.wins.items():
            for a, b in itertools.combinations(sorted(winners), 2):
                if a in self.win_electorates[(term, b)] and b in self.win_electorates[(term, a)]:
                    double.setdefault(term, set()).update((a, b))
        return double
