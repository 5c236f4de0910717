"""Backing off an upstream that cannot be reached, per host, with no I/O (time passed in).

Without it every client request while a registry is down makes its own connection attempt (the
freshness window is marked only on success), and a rollout turns into a burst of attempts.
After a failure to reach a host, :meth:`UpstreamBackoff.admit` refuses new attempts until a
delay passes that doubles with each failure in a row (``first_s``, ``2 * first_s``, ... at most
``max_s``); then it lets exactly one attempt through (the others are still refused while it
runs), and its outcome either ends the backoff (:meth:`reached`) or sets the next, longer delay
(:meth:`failed`). Whoever is refused serves what it holds, or answers a miss at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Host:
    failures: int = 0
    until: float = 0.0  # no attempt before this time
    trying: bool = False  # the one attempt let through after the delay is running


class UpstreamBackoff:
    """One per door that wants it (the registry mirror); keyed by upstream ``host:port``."""

    def __init__(self, first_s: float, max_s: float, *, max_hosts: int = 1024) -> None:
        self.first_s = first_s
        self.max_s = max(first_s, max_s)
        self.max_hosts = max_hosts
        self._hosts: dict[str, _Host] = {}

    def admit(self, host: str, now: float) -> bool:
        """May an attempt to reach ``host`` start now? (True: report it with :meth:`reached`,
        :meth:`failed` or :meth:`released`.)"""
        state = self._hosts.get(host)
        if state is None:
            return True
        if state.trying or now < state.until:
            return False
        state.trying = True
        return True

    def wait_s(self, host: str, now: float) -> float:
        """Seconds until ``host`` may be tried again (0: now, or an attempt is running)."""
        state = self._hosts.get(host)
        return 0.0 if state is None else max(0.0, state.until - now)

    def failures(self, host: str) -> int:
        state = self._hosts.get(host)
        return 0 if state is None else state.failures

    def failed(self, host: str, now: float) -> float:
        """An attempt could not reach ``host``: the delay before the next one (returned)."""
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= self.max_hosts:
                # Bounded memory: the host backed off longest ago goes first.
                del self._hosts[min(self._hosts, key=lambda h: self._hosts[h].until)]
            state = self._hosts[host] = _Host()
        state.failures += 1
        state.trying = False
        delay = min(self.max_s, self.first_s * float(2 ** min(state.failures - 1, 30)))
        state.until = now + delay
        return delay

    def reached(self, host: str) -> None:
        """``host`` answered (whatever the status): no more backoff."""
        self._hosts.pop(host, None)

    def released(self, host: str) -> None:
        """An admitted attempt ended without telling (cancelled, refused before connecting):
        the next caller may try."""
        state = self._hosts.get(host)
        if state is not None:
            state.trying = False
