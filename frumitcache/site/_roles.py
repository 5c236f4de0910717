"""The election's vocabulary (see :mod:`._election`): roles, the state a node keeps on disk,
the messages it sends, and the seeder preference."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from frumitcache.site._messages import MemberInfo, Message


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    SEEDER = "seeder"


@dataclass(frozen=True, slots=True)
class Durable:
    """Election state that must survive a restart (kept on disk by the driver)."""

    term: int = 0
    voted_term: int = 0
    voted_for: str | None = None
    #: Size of the electorate when last saved: for ``forget_after_s`` after a restart the
    #: majority is counted over at least this many, so nodes restarted on the minority side of
    #: a partition (who remember no one) cannot elect among themselves.
    electorate: int = 0
    #: Longest lease this node may still be promising (0: ``lease_s``): a node restarted
    #: within it stays quiet that long (rule 4).
    promised_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send: ``to`` is a member id, or ``None`` for the beacon targets
    (the multicast groups and the static peers)."""

    to: str | None
    msg: Message


def rank_key(info: MemberInfo) -> tuple[int, int, int, int, str]:
    """Sort key of the seeder preference, best first. Free disk counts in whole GiB: a node
    ranks itself with its current figure but others with the one it last advertised, and
    figures a few MB apart made each survivor think another one stands first (a round lost)."""
    return (
        -info.priority,
        0 if info.wired else 1,
        -info.ram_bytes,
        -(info.free_disk_bytes >> 30),
        info.node_id,
    )
