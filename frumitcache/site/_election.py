"""Seeder election with terms and leases: a pure state machine, time passed in.

Roles: every node is a *follower*, a *candidate* (standing for a term) or the *seeder* (won
its term). Only a seeder whose lease is live may fetch from origins: the fetch path checks
:meth:`Election.is_seeder` (``now``) before every origin request and between chunks.

Rules (the whole protocol):

1. **Majority.** Majorities are counted over the *electorate*: this node plus every member
   heard within ``forget_after_s`` (see :mod:`._membership`), and never over fewer than the
   largest electorate a voter reported in the same round (votes and acks carry the voter's
   electorate size), nor than the largest a member's beacon reported within
   ``forget_after_s``. So a member that only went quiet still counts, a node that missed some
   beacons (backed off before a seeder exists, see :mod:`._core`) counts at least what the
   best candidate, who hears everyone, counts, and a minority side of a partition cannot
   elect; a member silent for ``forget_after_s`` is forgotten, after which the side it is
   missing from counts without it. A one-node site (no static peers, no
   discovery) has an electorate of one and elects itself at once.
2. **Votes.** A node votes at most once per term (the vote is durable state the driver keeps
   on disk, :class:`Durable`) and only for a term above every term it knows a seeder of.
3. **Leases and fencing.** A seeder renews its lease every ``lease_s / 3`` with a
   :class:`~._messages.Lease` round naming its *duration* ``d``; a follower that acks
   promises, for ``d`` from its ack (and never less than it promised the same seeder before),
   to ack and vote for no one else. A round acked by a majority gives the seeder a lease until
   *round sent* + ``d`` - guard, which ends before the earliest promise of that round ends.
   Hence two nodes never both hold a live lease when their electorates agree (the ack
   majorities share a member). ``d`` is ``lease_s`` while acks come back fast; while a
   majority's acks come back late (a loaded site: scheduling delay, not loss) it stretches to
   cover that delay, up to ``STRETCH * lease_s`` (a follower refuses a longer one; see
   :mod:`._stretch`), so a live seeder is not deposed by its own slowness; it shrinks back
   within a few rounds. A seeder that cannot renew (lost a majority) stops being
   ``is_seeder`` when its lease runs out; it keeps trying, and carries on if acks come back.
4. **Start-up.** Promises are not durable, so a (re)started node neither acks, votes nor stands
   for ``lease_s`` (for ``STRETCH * lease_s`` when it may have promised a stretched lease before
   the restart: the durable state says so); it does not stand before it has heard another
   member (or ``forget_after_s`` has passed), so it cannot win a one-node "majority" of an
   electorate it has not learnt yet, and for ``forget_after_s`` it counts majorities over at
   least the electorate size it saved before the restart. A node can only count members it
   has heard of: nodes that have never met (a site partitioned from its very first boot) are
   two sites until they meet.
5. **Standing.** A follower whose promise ran out (no lease renewal for ``lease_s``) stands
   after ``position * round_s``, where ``position`` is its rank among the electorate other
   than the lost seeder, best first: configured priority, then wired link, RAM, free disk,
   then the node id (lowest wins). So the preferred live node normally stands first, alone.
   A failed round (split vote, loss) is retried after ``round_s`` plus the same stagger.
6. **No preemption (anti-flapping).** A live seeder is never replaced by a better node: a
   follower with a live promise refuses every claim, and a node that (re)joins hears the
   seeder's lease before its start-up quiet ends and follows it. Preference only decides who
   stands first when there is no live seeder.
7. **Healing.** When two seeders hear each other's leases (a partition longer than
   ``forget_after_s`` healed), the one with the smaller ``(backing, term, node id)`` steps
   down at once and follows the other; its followers follow once their promise to it runs
   out. ``backing`` is the size of the electorate over which the round behind the seeder's
   *live* lease won its majority, 0 when its lease lapsed: a node that was cut off alone (and,
   having forgotten the others, elected itself) rejoins its site as a member instead of taking
   the seeder role from the many, whatever its term; a seeder cut off with a few, whose lease
   lapsed at the cut, does not carry the whole site it had before into the healing; and an ack
   lost on the many's side does not tie them with the few (the electorate, not the acks).
8. **Evidence of death.** A follower whose seeder's renewal is late (``lease_s / 3`` +
   ``round_s`` without one) has its driver probe the seeder's peer port; a refused connect
   (:class:`~._evidence.Refused`: no process listens there, so none can act on the lease)
   voids its promise to that seeder's term at once, and it may vote and stand (see
   :mod:`._evidence`). A restarted seeder holds no lease (it is not durable), so only a win in
   a later term makes it seeder again. No evidence (a live but slow seeder, a partition, a
   host powered off) leaves the promise as it was.

Partitions and the uplink: during a partition shorter than ``forget_after_s`` only the side
holding a majority of the electorate has a seeder; members on the other side get no seeder
(``SiteNode.request`` raises ``PeerError``) and may fetch from the origin themselves only as
``site.fallback`` allows, which is the only duplicate uplink traffic. A longer partition makes
each side a site of its own: an object requested on both sides crosses the uplink at most once
per side. On healing the smaller seeder steps down and hands its catalogue over (a ``Have``),
the members re-report to the winner, and the catalogues are merged.

Expected failover with the defaults (``lease_s`` = 3, ``round_s`` = 0.5): followers' promises
run out between ``lease_s - lease_s/3`` and ``lease_s`` after the seeder's death, the best
survivor stands at once, one claim round and one lease round later (a few LAN round trips)
it is seeder: about 2 to 3.5 s, plus ``round_s`` per colliding claim round. While the site is
loaded enough to stretch the lease, failover takes up to the stretched lease instead, unless
the seeder's process is gone and its host says so (rule 8): then about ``lease_s / 3`` +
``round_s`` after its last renewal, plus the claim round, whatever the stretch.
"""

from __future__ import annotations

import math

from frumitcache.site._evidence import DeathWatch
from frumitcache.site._membership import Membership
from frumitcache.site._messages import Claim, Lease, LeaseAck, Message, Vote
from frumitcache.site._roles import Durable, Outgoing, Role, rank_key
from frumitcache.site._stretch import STRETCH, LeaseRound, LeaseStretch

__all__ = ["Durable", "Election", "Outgoing", "Role", "rank_key"]


class Election:
    """The election state of one node; reads (never changes) the node's :class:`Membership`."""

    def __init__(
        self,
        membership: Membership,
        *,
        now: float,
        lease_s: float,
        round_s: float,
        solo: bool = False,
        durable: Durable | None = None,
    ) -> None:
        if not 0 < round_s < lease_s:
            raise ValueError(f"need 0 < round_s < lease_s, got {round_s}, {lease_s}")
        self._m = membership
        self.me = membership.me.node_id
        self.lease_s = lease_s
        self.max_lease_s = STRETCH * lease_s
        self.guard = min(0.1 * lease_s, 0.25)
        self.round_s = round_s
        self.solo = solo
        d = durable or Durable()
        self.term = d.term
        self.voted_term = d.voted_term
        self.voted_for = d.voted_for
        self._remembered = d.electorate
        # node -> (electorate size its last beacon reported, when)
        self._reported: dict[str, tuple[int, float]] = {}
        self.role = Role.FOLLOWER
        self.started = now
        # A stretched promise from before the restart may still run; never longer than this
        # node could have promised (a damaged state file must not silence it for good).
        promised = min(d.promised_s, self.max_lease_s) if d.promised_s > 0 else 0.0
        self.quiet_until = now if solo else now + max(lease_s, promised)
        # Follower: until when a promise longer than lease_s may run (for Durable).
        self._long_promise_until = now + promised if promised > lease_s else -1.0
        # The seeder this node follows (or last followed) and the promise made to it.
        self.leader: tuple[str, int] | None = None
        self.promise_to: str | None = None
        self.promise_until = -1.0
        self.seen_term = self.term
        self._stand_at: float | None = None
        # A lease we heard but could not ack (start-up quiet, promised elsewhere) still shows
        # that a seeder lives: do not stand against it.
        self._lease_seen_until = -1.0
        # After voting, give the winner time to send its first lease before standing.
        self._hold_until = -1.0
        self._now = now
        # candidate
        self._attempt = 0
        self._votes: dict[str, int] = {}
        self._round_end = 0.0
        # seeder
        self.lease_until = -1.0
        # The electorate size over which the last round that extended the lease won its
        # majority (what the lease speaks for; rule 7).
        self._backing = 0
        self._seq = 0
        self._rounds: dict[int, LeaseRound] = {}
        self._stretch = LeaseStretch(lease_s, self.guard)  # sets each round's duration
        self._next_renew = 0.0
        self.elections_won = 0
        self.watch = DeathWatch(lease_s / 3, round_s)  # rule 8

    # --- queries ------------------------------------------------------------------------------

    @property
    def durable(self) -> Durable:
        # Two values only (0, or the longest possible), so that the state is not rewritten
        # with every stretched round.
        promised = self.max_lease_s if self._now < self._long_promise_until else 0.0
        return Durable(
            self.term,
            self.voted_term,
            self.voted_for,
            self._electorate_size(self._now),
            promised,
        )

    def lease_duration(self, now: float) -> float:
        """The duration the seeder's next lease round offers (see :mod:`._stretch`)."""
        return self._stretch.duration(now, self._rounds.values())

    def is_seeder(self, now: float) -> bool:
        """True while this node is the seeder with a live lease: only then may it fetch."""
        return self.role is Role.SEEDER and now < self.lease_until

    def seeder(self, now: float) -> tuple[str, int] | None:
        """``(node id, term)`` of the live seeder as this node sees it, else ``None``."""
        if self.is_seeder(now):
            return (self.me, self.term)
        if self.leader is None or self.leader[0] == self.me:
            return None
        if self.promise_to == self.leader[0] and now < self.promise_until:
            return self.leader
        if now < self._lease_seen_until:
            return self.leader  # heard its lease directly, but could not ack yet (start-up)
        return None

    def backing(self, now: float) -> int:
        """The size of the electorate a majority of which granted the round behind this node's
        live lease; 0 without one. A lapsed lease backs nothing: a seeder cut off with a few
        (its majority gone) must not carry the site it had before into the healing (rule 7).
        The electorate, not the acks: one ack lost on the many's side must not tie them with
        the few's seeder, whose term may be the higher."""
        return self._backing if self.is_seeder(now) else 0

    def _electorate_size(self, now: float) -> int:
        if self.solo:
            return 1
        electorate = self._m.electorate(now)
        size = len(electorate)
        if now < self.started + self._m.forget_after_s:
            size = max(size, self._remembered)
        horizon = now - self._m.forget_after_s
        for node, (reported, at) in list(self._reported.items()):
            if at <= horizon or node not in electorate:
                del self._reported[node]
            else:
                size = max(size, reported)
        return size

    def is_majority(self, count: int, now: float) -> bool:
        """Are ``count`` nodes a majority of the electorate, as this node counts it (rule 1)?"""
        return count > self._electorate_size(now) // 2

    def _majority(self, now: float, reported: dict[str, int]) -> bool:
        size = max([self._electorate_size(now), *reported.values()])
        return len(reported) > size // 2

    def _promised_elsewhere(self, node: str, now: float) -> bool:
        if self.role is Role.SEEDER and now < self.lease_until and node != self.me:
            return True
        return self.promise_to is not None and self.promise_to != node and now < self.promise_until

    # --- input --------------------------------------------------------------------------------

    def receive(self, msg: Message, now: float) -> list[Outgoing]:
        self._now = max(self._now, now)
        if isinstance(msg, Claim):
            return self._on_claim(msg, now)
        if isinstance(msg, Vote):
            return self._on_vote(msg, now)
        if isinstance(msg, Lease):
            return self._on_lease(msg, now)
        if isinstance(msg, LeaseAck):
            return self._on_ack(msg, now)
        return []

    def refused(self, seeder: str, term: int, sent_at: float, now: float) -> list[Outgoing] | None:
        """Evidence (rule 8): a probe sent at ``sent_at`` found no process at ``seeder``'s peer
        port. Voids the promise to ``seeder``'s ``term`` if it still holds and no lease of it
        came since (else ``None``: nothing voided); then a claim refused for that promise in the
        last round is answered again, and this node stands if it is the best one left."""
        self._now = max(self._now, now)
        promised = self.promise_to == seeder and self.leader == (seeder, term)
        if not (
            promised and now < self.promise_until and self.watch.refused(seeder, term, sent_at)
        ):
            return None
        self.promise_until = self._long_promise_until = -1.0
        claim = self.watch.take_claim(now)
        out = self._on_claim(claim, now) if claim is not None else []
        return out + self.on_timer(now)  # stand now if this node is the best one left

    def observe_term(self, term: int) -> None:
        """A term mentioned by someone (a beacon): stand above it next time."""
        self.seen_term = max(self.seen_term, term)

    def observe_electorate(self, node: str, size: int, now: float) -> None:
        """``node``'s beacon says it counts ``size`` members: majorities are counted over at
        least that many for ``forget_after_s`` (rule 1)."""
        self._reported[node] = (size, now)

    def _on_claim(self, c: Claim, now: float) -> list[Outgoing]:
        self.seen_term = max(self.seen_term, c.term)
        grant = (
            now >= self.quiet_until
            and not self._promised_elsewhere(c.candidate, now)
            and c.term >= self.voted_term
            and (c.term > self.voted_term or self.voted_for == c.candidate)
            and c.term > (self.leader[1] if self.leader else 0)
        )
        if not grant and self.promise_to is not None and self.promise_to != c.candidate:
            self.watch.claim_refused(c, now)
        if grant:
            self.term = max(self.term, c.term)
            self.voted_term, self.voted_for = c.term, c.candidate
            if self.role is not Role.FOLLOWER:
                self._become_follower()
            self._stand_at = None
            self._hold_until = now + 2 * self.round_s
        size = self._electorate_size(now)
        return [Outgoing(c.candidate, Vote(c.term, self.me, c.candidate, grant, size))]

    def _on_vote(self, v: Vote, now: float) -> list[Outgoing]:
        self.seen_term = max(self.seen_term, v.term)
        if (
            self.role is not Role.CANDIDATE
            or v.term != self._attempt
            or v.candidate != self.me
            or not v.granted
        ):
            return []
        self._votes[v.voter] = v.electorate
        return self._check_won(now)

    def _on_lease(self, lease: Lease, now: float) -> list[Outgoing]:
        self.seen_term = max(self.seen_term, lease.term)
        if lease.seeder == self.me:
            return []  # our own lease echoed back by a confused peer
        if self.role is Role.SEEDER:
            ours = (self.backing(now), self.term, self.me)
            if (lease.backing, lease.term, lease.seeder) < ours:
                # Healing: the other seeder must step down; tell it at once. The reply names
                # the current round, so it asks for that round's duration: an ack promising
                # less must not extend a stretched lease past the promise.
                rnd = self._rounds.get(self._seq)
                d = rnd.duration if rnd is not None and rnd.duration != self.lease_s else 0.0
                mine = Lease(self.term, self.me, self._seq, backing=ours[0], duration=d)
                return [Outgoing(lease.seeder, mine)]
            self._become_follower()
        size = self._electorate_size(now)
        duration = lease.duration or self.lease_s
        if self.watch.is_dead(lease.seeder, lease.term) or not (
            math.isfinite(duration) and 0 < duration <= self.max_lease_s
        ):
            # Found dead (a frame still in flight), or longer than this node may promise (or
            # nonsense): no promise, no ack.
            return [
                Outgoing(
                    lease.seeder,
                    LeaseAck(lease.term, lease.seeder, lease.seq, self.me, False, size),
                )
            ]
        duration = max(duration, self.lease_s)
        if now < self.quiet_until or self._promised_elsewhere(lease.seeder, now):
            self._lease_seen_until = max(self._lease_seen_until, now + duration)
            if self.leader is None or now >= self.promise_until:
                self.leader = (lease.seeder, lease.term)
            return [
                Outgoing(
                    lease.seeder,
                    LeaseAck(lease.term, lease.seeder, lease.seq, self.me, False, size),
                )
            ]
        if self.role is Role.CANDIDATE:
            self._become_follower()
        if self.promise_to != lease.seeder:
            self.promise_until = -1.0
        self.promise_to = lease.seeder
        # Never shorter than promised before: that seeder's earlier, longer round may be the
        # one its lease stands on.
        self.promise_until = max(self.promise_until, now + duration)
        if duration > self.lease_s:
            self._long_promise_until = max(self._long_promise_until, self.promise_until)
        self.leader = (lease.seeder, lease.term)
        self.term = max(self.term, lease.term)
        self._stand_at = None
        self.watch.renewed(lease.seeder, lease.term, now)
        return [
            Outgoing(
                lease.seeder, LeaseAck(lease.term, lease.seeder, lease.seq, self.me, True, size)
            )
        ]

    def _on_ack(self, ack: LeaseAck, now: float) -> list[Outgoing]:
        if self.role is not Role.SEEDER or ack.term != self.term or ack.seeder != self.me:
            return []
        rnd = self._rounds.get(ack.seq)
        if rnd is None or not ack.granted:
            return []
        rnd.acks[ack.voter] = ack.electorate
        self._check_lease(rnd, now)
        return []

    # --- timers -------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When :meth:`on_timer` wants to run next (``inf``: only on input)."""
        if self.role is Role.SEEDER:
            candidates = [self._next_renew, self.lease_until]
        else:
            candidates = [
                self.quiet_until,
                self.promise_until,
                self._lease_seen_until,
                self._hold_until,
                self.watch.probe_at,
            ]
            if self._stand_at is not None:
                candidates.append(self._stand_at)
            if self.role is Role.CANDIDATE:
                candidates.append(self._round_end)
            if not self._m.heard_anyone and not self.solo:
                candidates.append(self.started + self._m.forget_after_s)
        return min((d for d in candidates if d > self._now), default=float("inf"))

    def on_timer(self, now: float) -> list[Outgoing]:
        self._now = max(self._now, now)
        self.watch.on_timer(now, self.role is Role.FOLLOWER and now < self.promise_until)
        if self.role is Role.SEEDER:
            if now >= self._next_renew:
                return self._renew(now)
            return []
        if self.role is Role.CANDIDATE:
            if now < self._round_end:
                return []
            self._become_follower()
            self._stand_at = now + self.round_s + self._position(now) * self.round_s
        if (
            self.seeder(now) is not None
            or now < self.quiet_until
            or now < self._lease_seen_until
            or now < self._hold_until
        ):
            self._stand_at = None
            return []
        if not (self.solo or self._m.heard_anyone or now >= self.started + self._m.forget_after_s):
            return []
        if self._stand_at is None:
            self._stand_at = now + self._position(now) * self.round_s
        if now >= self._stand_at:
            return self._stand(now)
        return []

    def _ranked(self, now: float) -> list[tuple[int, int, int, int, str]]:
        """The electorate other than the lost seeder, best first. The electorate, not only the
        alive members: before a seeder exists members back their beacons off (see
        :mod:`._core`) and may not have heard each other within ``member_timeout_s``."""
        lost = self.leader[0] if self.leader and self.leader[0] != self.me else None
        return sorted(rank_key(i) for i in self._m.known(now) if i.node_id != lost)

    def _position(self, now: float) -> int:
        return self._ranked(now).index(rank_key(self._m.me))

    def best_candidate(self, now: float) -> str:
        """The node that would stand first now (this node, when it knows no better one)."""
        return self._ranked(now)[0][-1]

    # --- transitions --------------------------------------------------------------------------

    def _become_follower(self) -> None:
        self.role = Role.FOLLOWER
        self._votes = {}
        self._rounds = {}
        self.lease_until = -1.0
        self._backing = 0

    def _stand(self, now: float) -> list[Outgoing]:
        self._stand_at = None
        self._attempt = max(self.term, self.voted_term, self.seen_term) + 1
        self.term = self._attempt
        self.voted_term, self.voted_for = self._attempt, self.me
        self.role = Role.CANDIDATE
        self._votes = {self.me: self._electorate_size(now)}
        self._round_end = now + self.round_s
        # To the whole electorate: members quiet for a while (backed-off beacons) still vote.
        claim = Claim(self._attempt, self.me)
        out = [Outgoing(n, claim) for n in sorted(self._m.electorate(now)) if n != self.me]
        return out + self._check_won(now)

    def _check_won(self, now: float) -> list[Outgoing]:
        if not self._majority(now, self._votes):
            return []
        self.role = Role.SEEDER
        self.leader = (self.me, self.term)
        self.promise_to, self.promise_until = None, -1.0
        self.lease_until = -1.0
        self._backing = 0
        self._rounds = {}
        self.elections_won += 1
        return self._renew(now)

    def _renew(self, now: float) -> list[Outgoing]:
        self._stretch.expire(self._rounds, now)
        duration = self.lease_duration(now)
        self._seq += 1
        rnd = LeaseRound(now, duration, {self.me: self._electorate_size(now)})
        self._rounds[self._seq] = rnd
        self._next_renew = now + self.lease_s / 3
        self._check_lease(rnd, now)
        lease = Lease(
            self.term,
            self.me,
            self._seq,
            backing=self.backing(now),
            duration=0.0 if duration == self.lease_s else duration,
        )
        return [Outgoing(n, lease) for n in self._m.alive_ids(now)]

    def _check_lease(self, rnd: LeaseRound, now: float) -> None:
        size = max([self._electorate_size(now), *rnd.acks.values()])
        if len(rnd.acks) > size // 2:  # the majority of rule 1
            self.lease_until = max(self.lease_until, rnd.sent_at + rnd.duration - self.guard)
            self._backing = size
            self._stretch.won(rnd, now)
