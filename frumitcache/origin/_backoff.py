"""Backing off an upstream that cannot be reached, per host, with no I/O (time passed in).

Without it every client request while a registry is down makes its own connection attempt (the
freshness window is marked only on success), and a rollout turns into a burst of attempts.
After a failure to reach a host, :meth:`UpstreamBackoff.admit` refuses new attempts until a
delay passes that doubles with each failure in a row (``first_s``, ``2 * first_s``, ... at most
``max_s``); then it lets exactly one attempt through (the others are still refused while it
runs), and its outcome either ends the backoff (:meth:`reached`) or sets the next, longer delay
(:meth:`failed`). Whoever is refused serves what it holds, or answers a miss at once.

A host that answers "not now" is backed off the same way: a ``429`` (rate limit, Docker Hub's
pull quota) or a ``503``, for the delay its ``Retry-After`` asks (seconds or an HTTP-date, at
most ``max_s``; without one, the doubling delay). Until then the refusal repeats that status
(:meth:`refusal`), with the seconds left as its ``Retry-After``, so a client hears what the
registry said instead of the mirror asking again for each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from frumitcache.errors import OriginError, OriginStatusError, OriginUnreachableError

#: Upstream statuses that back the host off (it answered, but asked to be left alone).
BACKOFF_STATUSES = frozenset({429, 503})


def retry_after_s(value: str, now_unix: float) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait: delay-seconds, or an HTTP-date less
    ``now_unix`` (a date past: 0); None when it is neither."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP-date is GMT; a zoneless one is not an HTTP-date
    return max(0.0, when.timestamp() - now_unix)


@dataclass(slots=True)
class _Host:
    failures: int = 0
    until: float = 0.0  # no attempt before this time
    trying: bool = False  # the one attempt let through after the delay is running
    status: int = 0  # the status that backed the host off (0: it could not be reached)


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

    def failed(
        self, host: str, now: float, *, status: int = 0, retry_after_s: float | None = None
    ) -> float:
        """An attempt could not reach ``host`` (or it answered ``status``, one of
        :data:`BACKOFF_STATUSES`, asking for ``retry_after_s``): the delay before the next
        attempt (returned). The host's own ``Retry-After`` wins over the doubling delay, up
        to ``max_s``."""
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= self.max_hosts:
                # Bounded memory: the host backed off longest ago goes first.
                del self._hosts[min(self._hosts, key=lambda h: self._hosts[h].until)]
            state = self._hosts[host] = _Host()
        state.failures += 1
        state.trying = False
        state.status = status
        if retry_after_s is not None:
            delay = min(self.max_s, max(0.0, retry_after_s))
        else:
            delay = min(self.max_s, self.first_s * float(2 ** min(state.failures - 1, 30)))
        state.until = now + delay
        return delay

    def settle(
        self,
        host: str,
        now: float,
        now_unix: float,
        *,
        unreachable: bool = False,
        status: int = 0,
        retry_after: str = "",
    ) -> float | None:
        """The outcome of an admitted attempt: ``host`` was not reached, or answered
        ``status`` (0: a success) with ``retry_after`` (the header as sent). Returns the
        delay a failure or a "not now" status set; None when the host is fine again."""
        if not unreachable and status not in BACKOFF_STATUSES:
            self.reached(host)  # it answered, if not with the object
            return None
        asked = retry_after_s(retry_after, now_unix) if retry_after else None
        return self.failed(host, now, status=0 if unreachable else status, retry_after_s=asked)

    def refusal(self, host: str, now: float, url: str) -> OriginError:
        """The error for an attempt :meth:`admit` refused: the status the host backed off
        with (its ``Retry-After`` now the seconds left), or unreachable."""
        state = self._hosts.get(host)
        wait = self.wait_s(host, now)
        tries = state.failures if state is not None else 0
        if state is not None and state.status:
            return OriginStatusError(
                f"{url}: {host} answered {state.status} ({tries} times in a row); "
                f"not asked again for {wait:.1f} s",
                status=state.status,
                retry_after=str(math.ceil(wait)) if wait > 0 else "",
            )
        return OriginUnreachableError(
            f"{url}: {host} could not be reached ({tries} tries in a row); "
            f"not asked again for {wait:.1f} s"
        )

    def reached(self, host: str) -> None:
        """``host`` answered (whatever the status): no more backoff."""
        self._hosts.pop(host, None)

    def released(self, host: str) -> None:
        """An admitted attempt ended without telling (cancelled, refused before connecting):
        the next caller may try."""
        state = self._hosts.get(host)
        if state is not None:
            state.trying = False
