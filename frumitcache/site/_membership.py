"""Who is in the site: a pure state machine fed with beacons, time passed in.

Every member multicasts a :class:`~._messages.Beacon` each ``beacon_interval_s`` (and sends it
to the static peers of the config); a member heard for the first time gets our beacon back at
once, so discovery takes one round trip. Two horizons matter:

- **alive**: heard within ``member_timeout_s``. Alive members are what :meth:`members` lists,
  what the scheduler may pull from, and who gets election messages.
- **electorate**: heard within ``forget_after_s`` (longer). The election counts its majorities
  over the electorate, so a member that merely went quiet for a while (a packet-loss burst, a
  cable pulled for a few seconds, the other side of a short partition) still counts, and a
  minority cannot elect a second seeder. Only after ``forget_after_s`` of silence is a member
  forgotten and the majority shrinks; a :class:`~._messages.Bye` forgets at once.

The machine never reads a clock: :meth:`receive` and :meth:`on_timer` take ``now`` (seconds on
any monotonic clock) and :meth:`next_deadline` says when :meth:`on_timer` wants to run next.
"""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.site._messages import MemberInfo


@dataclass(slots=True)
class _Entry:
    info: MemberInfo
    last_heard: float
    alive: bool = True


class Membership:
    """The member list of one node. ``me`` is always a member and always alive."""

    def __init__(
        self,
        me: MemberInfo,
        *,
        now: float,
        beacon_interval_s: float,
        member_timeout_s: float,
        forget_after_s: float,
    ) -> None:
        if not 0 < beacon_interval_s < member_timeout_s <= forget_after_s:
            raise ValueError(
                "need 0 < beacon_interval_s < member_timeout_s <= forget_after_s, got "
                f"{beacon_interval_s}, {member_timeout_s}, {forget_after_s}"
            )
        self.me = me
        self.beacon_interval_s = beacon_interval_s
        self.member_timeout_s = member_timeout_s
        self.forget_after_s = forget_after_s
        self.started = now
        self._others: dict[str, _Entry] = {}
        self._next_beacon = now  # the first beacon goes out at once
        self._departed: list[str] = []
        self.heard_anyone = False
        # A lower bound of the earliest expiry (recomputed in on_timer, lowered as entries come
        # or revive): next_deadline() is called after every frame and must not be O(N).
        self._expiry_hint = float("inf")

    # --- input --------------------------------------------------------------------------------

    def heard(self, info: MemberInfo, now: float) -> bool:
        """Record a beacon from ``info.node_id``; True if it was not alive before (new or back)."""
        if info.node_id == self.me.node_id:
            return False
        self.heard_anyone = True
        entry = self._others.get(info.node_id)
        self._expiry_hint = min(self._expiry_hint, now + self.member_timeout_s)
        if entry is None:
            self._others[info.node_id] = _Entry(info, now)
            return True
        fresh = not entry.alive
        entry.info = info
        entry.last_heard = max(entry.last_heard, now)
        entry.alive = True
        return fresh

    def learn(self, info: MemberInfo, now: float, *, refresh: bool) -> None:
        """``info`` from someone else's :class:`~._messages.Roster`: add it if unknown, and
        with ``refresh`` (the roster of the seeder we follow) count it as heard now."""
        if info.node_id == self.me.node_id:
            return
        entry = self._others.get(info.node_id)
        if entry is None:
            self.heard_anyone = True
            self._others[info.node_id] = _Entry(info, now)
            self._expiry_hint = min(self._expiry_hint, now + self.member_timeout_s)
        elif refresh:
            entry.info = info
            self.touch(info.node_id, now)

    def touch(self, node_id: str, now: float) -> None:
        """Any authenticated frame from a known member shows that it is alive."""
        entry = self._others.get(node_id)
        if entry is not None:
            entry.last_heard = max(entry.last_heard, now)
            if not entry.alive:
                entry.alive = True
                self._expiry_hint = min(self._expiry_hint, entry.last_heard + self.member_timeout_s)

    def bye(self, node_id: str) -> None:
        """``node_id`` left on purpose: forget it now."""
        entry = self._others.pop(node_id, None)
        if entry is not None and entry.alive:
            self._departed.append(node_id)

    def update_self(self, me: MemberInfo) -> None:
        if me.node_id != self.me.node_id:
            raise ValueError("a node cannot change its id")
        self.me = me

    def on_timer(self, now: float) -> bool:
        """Expire silent members; True when a beacon is due now (the caller sends it)."""
        # Compare as last_heard + horizon <= now, exactly as the hint is computed, so that a
        # deadline next_deadline() returned is always consumed here (no float rounding gap).
        hint = float("inf")
        for node_id, entry in list(self._others.items()):
            if entry.alive and entry.last_heard + self.member_timeout_s <= now:
                entry.alive = False
                self._departed.append(node_id)
            if entry.last_heard + self.forget_after_s <= now:
                del self._others[node_id]
                continue
            horizon = self.member_timeout_s if entry.alive else self.forget_after_s
            hint = min(hint, entry.last_heard + horizon)
        self._expiry_hint = hint
        if now >= self._next_beacon:
            self._next_beacon += self.beacon_interval_s
            if self._next_beacon <= now:  # a late timer: no burst of catch-up beacons
                self._next_beacon = now + self.beacon_interval_s
            return True
        return False

    def next_deadline(self) -> float:
        """When :meth:`on_timer` is due: the next beacon, or (at the latest) the next expiry."""
        return min(self._next_beacon, self._expiry_hint)

    # --- output -------------------------------------------------------------------------------

    def take_departures(self) -> list[str]:
        """Members that stopped being alive since the last call (for catalogue cleanup)."""
        gone, self._departed = self._departed, []
        return gone

    def is_alive(self, node_id: str, now: float) -> bool:
        if node_id == self.me.node_id:
            return True
        entry = self._others.get(node_id)
        return entry is not None and entry.alive and now < entry.last_heard + self.member_timeout_s

    def info(self, node_id: str) -> MemberInfo | None:
        if node_id == self.me.node_id:
            return self.me
        entry = self._others.get(node_id)
        return entry.info if entry is not None else None

    def members(self, now: float) -> tuple[MemberInfo, ...]:
        """Alive members, this node first, then by node id."""
        others = sorted(
            (e.info for n, e in self._others.items() if self.is_alive(n, now)),
            key=lambda i: i.node_id,
        )
        return (self.me, *others)

    def alive_ids(self, now: float) -> list[str]:
        """Alive members other than this node."""
        return sorted(n for n in self._others if self.is_alive(n, now))

    def known(self, now: float) -> list[MemberInfo]:
        """This node and every member heard within ``forget_after_s`` (alive or not)."""
        return [self.me] + [
            e.info for e in self._others.values() if now < e.last_heard + self.forget_after_s
        ]

    def heard_within(self, now: float, window_s: float) -> int:
        """How many nodes, this one included, were heard within the last ``window_s``."""
        return 1 + sum(1 for e in self._others.values() if now < e.last_heard + window_s)

    def electorate(self, now: float) -> frozenset[str]:
        """This node and every member heard within ``forget_after_s``."""
        return frozenset(
            [self.me.node_id]
            + [n for n, e in self._others.items() if now < e.last_heard + self.forget_after_s]
        )
