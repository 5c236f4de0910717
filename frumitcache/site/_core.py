"""Membership and election of one node, wired together: still pure, time passed in.

:class:`SiteCore` is what the trio driver (and the randomized simulation in the tests) feeds:
authenticated messages in with the time, :class:`~._election.Outgoing` messages out, one
deadline. It composes beacons from the membership and the election state and routes election
messages; catalogue messages are not its business (the driver hands them to the catalogue).

Cost per node flat in the site's size. While there is no live seeder (formation, failover,
the minority side of a partition) only the *best candidate* a node knows (the one that would
stand first, :meth:`~._election.Election.best_candidate`) beacons to everyone each
``beacon_interval_s``. Every other node beacons to that candidate each interval, and to
everyone once per gap of 3/4 to 1 times ``forget_after_s / 4`` (jittered; short enough that
no node is silent for ``forget_after_s`` even with loss, so electorates stay complete). A
node that loses its seeder waits a whole gap before broadcasting (everyone already knows
everyone: no burst from all of them at once). A fresh beacon gets a beacon back only from the
best candidate; a newcomer that knows no one (electorate 1) also gets, from a few others
(:data:`REPLIERS` on average), a short roster naming the best candidate. Claims go to the
whole electorate, the election ranks the electorate rather than the members heard within
``member_timeout_s``, and counts majorities over at least the electorate any beacon reported
(:mod:`._election`, rule 1): the best candidate hears everyone. So after its first beacon (to
everyone) a node without a seeder costs about two frames per interval (plus N - 1 per gap
while there is still no seeder after a gap: the minority side of a partition), the best
candidate N per interval. Formation normally ends ``lease_s`` after the start (the start-up
quiet).

Once a seeder holds a lease, the seeder is the hub:

- its :class:`~._messages.Lease` rounds (every ``lease_s / 3``, to each alive member, and to
  the seeder before it while that one is quiet: it must learn of its successor, report what
  it fetched and be fenced) are the heartbeat both ways (a member's
  :class:`~._messages.LeaseAck` shows the seeder it lives);
- each lease carries the version of the seeder's :class:`~._messages.Roster` (its alive
  members); a member whose ack names another version is sent the change from the version it
  holds (:class:`~._messages.RosterDelta`, :mod:`._roster`) or, when that is unknown, too big
  or did not take, the whole roster; while the versions match each lease counts every roster
  member as heard, so members know each other without a frame between them;
- a follower beacons to the seeder alone, every ``BACKOFF`` beacon intervals (its load and
  free disk); the seeder multicasts a beacon every ``BACKOFF`` intervals, so that nodes
  outside the site (a healed partition, a node started late) still hear of it;
- a follower answers a stray node's beacon (one naming another seeder, or none) with a short
  roster of itself and the seeder, so it finds the seeder even over one-sided peer lists.

So a member sends and receives about two frames per lease round, whatever N; the seeder
about 2 (N - 1). Rosters do not change the election rules (:mod:`._election`): they only add
members to electorates or keep them fresh, which can only make majorities harder to reach.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from frumitcache.config import SiteConfig
from frumitcache.errors import ConfigError
from frumitcache.site._election import Durable, Election, Outgoing, Role
from frumitcache.site._evidence import Probe, Refused
from frumitcache.site._membership import Membership
from frumitcache.site._messages import (
    Beacon,
    Bye,
    Claim,
    Lease,
    LeaseAck,
    MemberInfo,
    Message,
    Roster,
    RosterDelta,
    Vote,
)
from frumitcache.site._policy import View
from frumitcache.site._roster import RosterHistory, apply_delta, roster_version

#: Beacon intervals between two beacons of a node that follows (or is) a live seeder.
BACKOFF = 5

#: Before a seeder exists: how many nodes, on average, answer a newcomer's beacon.
REPLIERS = 3


@dataclass(frozen=True, slots=True)
class Timings:
    """The timers of the control plane, in seconds (see :class:`~frumitcache.config.SiteConfig`)."""

    beacon_interval_s: float = 1.0
    member_timeout_s: float = 4.0
    forget_after_s: float = 20.0
    lease_s: float = 3.0
    round_s: float = 0.5

    @classmethod
    def from_config(cls, site: SiteConfig) -> Timings:
        """The timings of ``site``; :class:`~frumitcache.errors.ConfigError` if they do not fit
        together."""
        if not 0 < site.beacon_interval_s < site.member_timeout_s:
            raise ConfigError(
                "site.member_timeout_s: must be longer than site.beacon_interval_s "
                f"({site.member_timeout_s} <= {site.beacon_interval_s})"
            )
        if not 0 < site.election_round_s < site.lease_s:
            raise ConfigError(
                "site.election_round_s: must be positive and shorter than site.lease_s "
                f"({site.election_round_s}, lease {site.lease_s})"
            )
        return cls(
            beacon_interval_s=site.beacon_interval_s,
            member_timeout_s=site.member_timeout_s,
            forget_after_s=max(site.member_forget_s, site.member_timeout_s),
            lease_s=site.lease_s,
            round_s=site.election_round_s,
        )


class SiteCore:
    """One node's membership and election.

    ``solo`` marks a one-node site (no static peers, no discovery): it elects itself at once.
    ``unicast_beacons`` makes every beacon also go to each alive member (for sites without
    multicast discovery, where static peer lists may be one-sided).
    """

    def __init__(
        self,
        me: MemberInfo,
        timings: Timings,
        *,
        now: float,
        solo: bool = False,
        unicast_beacons: bool = False,
        durable: Durable | None = None,
    ) -> None:
        self.timings = timings
        self.unicast_beacons = unicast_beacons
        self.membership = Membership(
            me,
            now=now,
            beacon_interval_s=timings.beacon_interval_s,
            member_timeout_s=timings.member_timeout_s,
            forget_after_s=timings.forget_after_s,
        )
        self.election = Election(
            self.membership,
            now=now,
            lease_s=timings.lease_s,
            round_s=timings.round_s,
            solo=solo,
            durable=durable,
        )
        self._ticks = 0
        # Without a live seeder, a node that knows a better candidate beacons to that one each
        # interval and to everyone once per gap (jittered, so nodes started together do not
        # stay in step); see the module docstring.
        self._rng = random.Random(me.node_id)
        self._broadcast_at = now
        self._broadcast_gap = max(timings.beacon_interval_s, timings.forget_after_s / 4)
        # Seeder: its last roster and version. Member: the version it holds of its seeder's
        # roster, and who is in it.
        self._roster: Roster | None = None
        self._history = RosterHistory()
        self.roster_held = 0
        self._roster_members: tuple[MemberInfo, ...] = ()
        # Where the seeder followed listens, as its own roster said in its current term (a
        # term is one process: a restarted node wins a later one): (seeder, term, address,
        # peer port). Rule 8 probes only there.
        self._witness: tuple[str, int, str, int] | None = None
        self._lease_named: tuple[str, int, int] | None = None  # (seeder, term, roster version)
        self._seeder_heard_at = -math.inf  # a seeder's beacon or lease naming itself
        self._predecessor: str | None = None  # the last other seeder this node knew

    @property
    def node_id(self) -> str:
        return self.membership.me.node_id

    # --- input --------------------------------------------------------------------------------

    def receive(self, sender: str, msg: Message, now: float) -> list[Outgoing]:
        """Feed one authenticated message from ``sender``."""
        self.membership.touch(sender, now)
        if isinstance(msg, Beacon | Lease) and self._names_itself_seeder(sender, msg):
            self._seeder_heard_at = now
        if isinstance(msg, Beacon):
            if msg.member.node_id != sender:
                return []  # a member speaks only for itself
            fresh = self.membership.heard(msg.member, now)
            self.election.observe_term(msg.term)
            self.election.observe_electorate(sender, msg.electorate, now)
            if not (fresh or msg.reply):
                return []
            leader = self._followed(now)
            if leader == self.node_id:
                return [Outgoing(sender, self.beacon(now))]
            if leader is None:
                best = self.election.best_candidate(now)
                if best == self.node_id:
                    return [Outgoing(sender, self.beacon(now))]
                if msg.electorate > 1:
                    return []  # it knows others: its beacons reach the best candidate too
                # A newcomer that knows no one: show it the best candidate (it may not have
                # that one in its static peers), the only node it needs to beacon to. A few
                # of those that hear it answer (each with odds REPLIERS / known), not all:
                # nodes started together are all newcomers to each other.
                if self._rng.random() * len(self.membership.electorate(now)) >= REPLIERS:
                    return []
                leader = best
            if msg.seeder != leader:
                # A stray: show it where the seeder is (the seeder itself adds it at once).
                seeder_info = self.membership.info(leader)
                pair = tuple(i for i in (self.membership.me, seeder_info) if i is not None)
                return [Outgoing(sender, Roster(self.election.term, leader, 0, pair))]
            return []
        if isinstance(msg, Roster):
            self._on_roster(sender, msg, now)
            return []
        if isinstance(msg, RosterDelta):
            self._on_delta(sender, msg, now)
            return []
        if isinstance(msg, Bye):
            if msg.node_id == sender:
                self.membership.bye(sender)
            return []
        if isinstance(msg, Lease):
            out = self._stamp(self.election.receive(msg, now), now)
            if self._followed(now) == sender:
                self._lease_named = (sender, msg.term, msg.roster)
            if self._followed(now) == sender and msg.roster and msg.roster == self.roster_held:
                self._witnessed(sender, msg.term)
                for info in self._roster_members:
                    self.membership.touch(info.node_id, now)
            return [
                Outgoing(o.to, dataclasses.replace(o.msg, roster=self.roster_held))
                if isinstance(o.msg, LeaseAck)
                else o
                for o in out
            ]
        if isinstance(msg, LeaseAck):
            out = self._stamp(self.election.receive(msg, now), now)
            roster = self._roster
            if (
                roster is not None
                and msg.granted
                and msg.roster != roster.version
                and self.election.is_seeder(now)
            ):
                out.append(Outgoing(sender, self._history.update_for(sender, msg.roster, roster)))
            return out
        if isinstance(msg, Claim | Vote):
            return self._stamp(self.election.receive(msg, now), now)
        return []

    def _names_itself_seeder(self, sender: str, msg: Beacon | Lease) -> bool:
        """``sender`` says it is the seeder, in a term not below the one this node knows, or
        is the seeder this node last followed (no newer one known): a lapsed seeder's
        beacons name no seeder, yet its term is not superseded and it may renew."""
        leader = self.election.leader
        if leader is not None and leader[0] == sender and msg.term >= leader[1]:
            return True
        return msg.seeder == sender and msg.term >= self.election.term

    def _followed(self, now: float) -> str | None:
        """The live seeder this node follows or is (``None``: there is none)."""
        seeder = self.election.seeder(now)
        return seeder[0] if seeder is not None else None

    def _on_roster(self, sender: str, msg: Roster, now: float) -> None:
        ours = msg.seeder == sender and self._followed(now) == sender
        for info in msg.members:
            self.membership.learn(info, now, refresh=ours)
        if ours and msg.version:
            self.roster_held = msg.version
            self._roster_members = msg.members
            if self._lease_named == (sender, msg.term, msg.version):
                self._witnessed(sender, msg.term)

    def _on_delta(self, sender: str, msg: RosterDelta, now: float) -> None:
        if not (
            msg.seeder == sender
            and self._followed(now) == sender
            and msg.base
            and msg.base == self.roster_held
        ):
            return  # not our seeder's, or not from the version held: the next ack says so
        members = apply_delta(self._roster_members, msg)
        if members is None:
            return
        # Then it is the whole roster of that version, taken as one: it shows every member
        # alive (and brings back any this node forgot), since while the roster changes every
        # round leases name a version this node does not hold yet and refresh no one.
        self._on_roster(sender, Roster(msg.term, sender, msg.version, members), now)

    def _witnessed(self, seeder: str, term: int) -> None:
        """The roster held is ``seeder``'s own of ``term``: where it listens (rule 8)."""
        if self._witness is None or self._witness[:2] != (seeder, term):
            own = [i for i in self._roster_members if i.node_id == seeder]
            self._witness = (seeder, term, own[0].address, own[0].peer_port) if own else None

    def on_timer(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        if self.membership.on_timer(now):
            self._ticks += 1
            leader = self._followed(now)
            beacon = self.beacon(now)
            if leader is None:
                best = self.election.best_candidate(now)
                if best != self.node_id:
                    out.append(Outgoing(best, beacon))
                if best == self.node_id or now >= self._broadcast_at:
                    out.append(Outgoing(None, beacon))
                    if self.unicast_beacons:
                        out += [Outgoing(n, beacon) for n in self.membership.alive_ids(now)]
                    self._broadcast_at = now + self._jittered(self._broadcast_gap)
            else:
                # Back from a seeder to none (failover): every member already knows the others,
                # so no burst of broadcasts from all of them at once.
                self._broadcast_at = now + self._jittered(self._broadcast_gap)
                if self._ticks % BACKOFF == 0:
                    out.append(Outgoing(None if leader == self.node_id else leader, beacon))
        return out + self._stamp(self.election.on_timer(now), now)

    def take_probe(self, now: float) -> Probe | None:
        """A probe of the seeder this node promised, due since its renewal is late (rule 8 of
        :mod:`._election`); ``None`` unless its address and peer port come from the roster
        version its last lease named (a restarted seeder may listen elsewhere now)."""
        due = self.election.watch.take_due()
        witness = self._witness
        if due is None or witness is None or due != witness[:2] or not witness[3]:
            return None
        return Probe(due[0], due[1], witness[2], witness[3], now)

    def refused(self, evidence: Refused, now: float) -> list[Outgoing] | None:
        """Evidence that a probed seeder's process is gone; ``None`` when it voided nothing."""
        p = evidence.probe
        out = self.election.refused(p.seeder, p.term, p.sent_at, now)
        return None if out is None else self._stamp(out, now)

    def _jittered(self, gap: float) -> float:
        return gap * self._rng.uniform(0.75, 1.0)

    def _stamp(self, out: list[Outgoing], now: float) -> list[Outgoing]:
        """A lease round of ours: take a fresh roster and name its version in the leases; the
        seeder before us gets it too when it is quiet (see :meth:`quiet_ids`)."""
        leader = self.election.leader
        if leader is not None and leader[0] != self.node_id:
            self._predecessor = leader[0]
        if not any(isinstance(o.msg, Lease) and o.msg.seeder == self.node_id for o in out):
            return out
        members = self.membership.members(now)
        roster = Roster(self.election.term, self.node_id, roster_version(members), members)
        self._roster = roster
        self._history.record(roster)
        stamped = [
            Outgoing(o.to, dataclasses.replace(o.msg, roster=roster.version))
            if isinstance(o.msg, Lease)
            else o
            for o in out
        ]
        before = self._predecessor
        if before is not None and before in self.quiet_ids(now):
            # Leases go to alive members only; without this one a lapsed seeder that beacons
            # elsewhere never learns of us, so it neither reports what it fetched (a takeover
            # waits for that) nor is fenced. It is in the electorate: its ack may count.
            lease = next(o.msg for o in stamped if isinstance(o.msg, Lease))
            stamped.append(Outgoing(before, lease))
        return stamped

    def quiet_ids(self, now: float) -> list[str]:
        """Members of the electorate not heard within ``member_timeout_s``, none found dead
        (rule 8 of :mod:`._election`)."""
        alive = set(self.membership.alive_ids(now))
        return sorted(
            n
            for n in self.membership.electorate(now)
            if n != self.node_id and n not in alive and not self.election.watch.found_dead(n)
        )

    def next_deadline(self) -> float:
        return min(self.membership.next_deadline(), self.election.next_deadline())

    def update_self(self, me: MemberInfo) -> None:
        """New load or free disk figures for the next beacon."""
        self.membership.update_self(me)

    def leave(self, now: float) -> list[Outgoing]:
        """Messages to send on a clean shutdown."""
        bye = Bye(self.node_id)
        return [Outgoing(None, bye)] + [Outgoing(n, bye) for n in self.membership.alive_ids(now)]

    # --- output -------------------------------------------------------------------------------

    def beacon(self, now: float, *, reply: bool = False) -> Beacon:
        seeder = self.election.seeder(now)
        return Beacon(
            member=self.membership.me,
            term=self.election.term,
            seeder=seeder[0] if seeder else None,
            electorate=len(self.membership.electorate(now)),
            reply=reply,
        )

    def is_seeder(self, now: float) -> bool:
        return self.election.is_seeder(now)

    def seeder(self, now: float) -> tuple[str, int] | None:
        return self.election.seeder(now)

    def hears_site(self, now: float) -> bool:
        """Does this node hear its site, within half of ``forget_after_s``: a majority of its
        electorate (itself included), a seeder of a term not below ours naming itself in a
        beacon or lease, or any frame of the seeder this node last followed (a lapsed
        seeder's beacons name no seeder; its term stands until a newer seeder is known)?
        Then it is not cut off from a site that can serve. Half the horizon: longer than the
        gap between a seeder-less node's broadcasts (3/4 to 1 times a quarter of it) and the
        seeder's beacon interval (``BACKOFF`` beacon intervals); a member whose promise ran
        out while the others still follow the seeder hears none of them (they beacon to the
        seeder alone), only the seeder."""
        window = self.membership.forget_after_s / 2
        if now < self._seeder_heard_at + window:
            return True
        heard = self.membership.heard_within(now, window)
        return self.election.is_majority(heard, now)

    def lease_until(self) -> float:
        """When this node's seeder lease runs out unless renewed (``-inf`` when it has none)."""
        election = self.election
        return election.lease_until if election.role is Role.SEEDER else -math.inf

    def members(self, now: float) -> tuple[MemberInfo, ...]:
        return self.membership.members(now)

    @property
    def durable(self) -> Durable:
        return self.election.durable

    def view(self, now: float) -> View:
        """The election's view, as the catalogue policy (:mod:`._policy`) takes it."""
        election = self.election
        seeder_role = election.role is Role.SEEDER
        return View(
            seeder=election.seeder(now),
            seeding_term=election.term if seeder_role else None,
            seeding=election.is_seeder(now),
            alive=self.membership.alive_ids(now),
            quiet=self.quiet_ids(now) if seeder_role else (),  # only a seeder asks (reports)
        )
