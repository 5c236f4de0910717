"""Roster versions and deltas, pure: what a seeder sends a member whose roster is out of date.

A roster's version is a hash of who is in it and where they are reached, so any node can check
that a list it rebuilt is the one a version names. That makes a delta safe to apply: a member
holding version ``base`` applies ``added``/``removed`` and keeps the result only if it hashes to
``version`` (else it keeps what it held and its next ack gets the whole roster).
"""

from __future__ import annotations

import hashlib

from frumitcache.site._messages import MemberInfo, Roster, RosterDelta

#: Roster versions a seeder remembers for deltas (a member further behind gets the whole one).
HISTORY = 8


def _identity(m: MemberInfo) -> tuple[str, str, int, int, int, int]:
    return (m.node_id, m.address, m.control_port, m.peer_port, m.swarm_port, m.priority)


def roster_version(members: tuple[MemberInfo, ...]) -> int:
    """A version naming who is in a roster and where they are reached (not their load): it
    changes only when members come, go or move."""
    digest = hashlib.blake2b(digest_size=8)
    for m in sorted(members, key=lambda m: m.node_id):
        digest.update(repr(_identity(m)).encode())
    return int.from_bytes(digest.digest(), "big") >> 2 or 1


def roster_delta(version: int, base: tuple[MemberInfo, ...], roster: Roster) -> RosterDelta | None:
    """The delta from ``base`` (the members of ``version``) to ``roster``; ``None`` when it
    would carry at least half the roster (then the whole roster is as cheap)."""
    before = {m.node_id: _identity(m) for m in base}
    added = tuple(m for m in roster.members if before.get(m.node_id) != _identity(m))
    now = {m.node_id for m in roster.members}
    removed = tuple(node_id for node_id in before if node_id not in now)
    if 2 * (len(added) + len(removed)) >= max(len(roster.members), 2):
        return None
    return RosterDelta(roster.term, roster.seeder, version, roster.version, added, removed)


def apply_delta(held: tuple[MemberInfo, ...], delta: RosterDelta) -> tuple[MemberInfo, ...] | None:
    """The roster ``delta`` makes of ``held`` (the members of version ``delta.base``), or
    ``None`` if the result is not the roster ``delta.version`` names."""
    members = {m.node_id: m for m in held}
    for node_id in delta.removed:
        members.pop(node_id, None)
    for info in delta.added:
        members[info.node_id] = info
    result = tuple(members.values())
    return result if roster_version(result) == delta.version else None


class RosterHistory:
    """A seeder's recent rosters by version, and the delta it last sent each member (so that
    a member whose ack still names the same base after a delta gets the whole roster)."""

    def __init__(self) -> None:
        self._versions: dict[int, tuple[MemberInfo, ...]] = {}
        self._sent: dict[str, tuple[int, int]] = {}

    def record(self, roster: Roster) -> None:
        if roster.version in self._versions:
            return
        self._versions[roster.version] = roster.members
        while len(self._versions) > HISTORY:
            del self._versions[next(iter(self._versions))]
        alive = {m.node_id for m in roster.members}
        self._sent = {k: v for k, v in self._sent.items() if k in alive}

    def update_for(self, member: str, held: int, roster: Roster) -> Roster | RosterDelta:
        """What to send ``member``, whose ack names version ``held``, to bring it to
        ``roster``: a delta when ``held`` is recent and no delta from it was sent already,
        else the whole roster."""
        base = self._versions.get(held) if held else None
        if base is not None and self._sent.get(member) != (held, roster.version):
            delta = roster_delta(held, base, roster)
            if delta is not None:
                self._sent[member] = (held, roster.version)
                return delta
        self._sent.pop(member, None)
        return roster
