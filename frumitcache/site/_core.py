"""Membership and election of one node, wired together: still pure, time passed in.

:class:`SiteCore` is what the trio driver (and the randomized simulation in the tests) feeds:
authenticated messages in with the time, :class:`~._election.Outgoing` messages out, one
deadline. It composes beacons from the membership and the election state and routes election
messages; catalogue messages are not its business (the driver hands them to the catalogue).
"""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config import SiteConfig
from frumitcache.errors import ConfigError
from frumitcache.site._election import Durable, Election, Outgoing
from frumitcache.site._membership import Membership
from frumitcache.site._messages import (
    Beacon,
    Bye,
    Claim,
    Lease,
    LeaseAck,
    MemberInfo,
    Message,
    Vote,
)


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

    @property
    def node_id(self) -> str:
        return self.membership.me.node_id

    # --- input --------------------------------------------------------------------------------

    def receive(self, sender: str, msg: Message, now: float) -> list[Outgoing]:
        """Feed one authenticated message from ``sender``."""
        self.membership.touch(sender, now)
        if isinstance(msg, Beacon):
            if msg.member.node_id != sender:
                return []  # a member speaks only for itself
            fresh = self.membership.heard(msg.member, now)
            self.election.observe_term(msg.term)
            if fresh or msg.reply:
                return [Outgoing(sender, self.beacon(now))]
            return []
        if isinstance(msg, Bye):
            if msg.node_id == sender:
                self.membership.bye(sender)
            return []
        if isinstance(msg, Claim | Vote | Lease | LeaseAck):
            return self.election.receive(msg, now)
        return []

    def on_timer(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        if self.membership.on_timer(now):
            beacon = self.beacon(now)
            out.append(Outgoing(None, beacon))
            if self.unicast_beacons:
                out += [Outgoing(n, beacon) for n in self.membership.alive_ids(now)]
        out += self.election.on_timer(now)
        return out

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

    def members(self, now: float) -> tuple[MemberInfo, ...]:
        return self.membership.members(now)

    @property
    def durable(self) -> Durable:
        return self.election.durable
