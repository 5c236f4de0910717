"""What keeps one client from stopping or starving the apt proxy: rate-limited logging of
unexpected errors (a flood of bad requests must not become a flood of tracebacks) and the cap on
connections that have not sent a request yet.

Neither reads the clock: the caller passes ``now`` (the pending set only holds cancel scopes).
"""

from __future__ import annotations

import trio

from frumitcache._log import EventLogger, Throttle


class RateLimitedLog:
    """Logs an unexpected error with its traceback at most once per ``interval_s`` per kind;
    the ones held back in between are counted and reported with the next one logged."""

    def __init__(self, logger: EventLogger, interval_s: float = 60.0) -> None:
        self._log = logger
        self._throttle = Throttle(interval_s)

    def exception(
        self, kind: str, message: str, exc: BaseException, now: float, *, traceback: bool = True
    ) -> bool:
        """Log ``exc`` under ``kind`` if its interval has passed; True if it was logged.

        ``traceback=False`` for a known fault of the input (a warning, no traceback)."""
        held = self._throttle.admit(kind, now)
        if held is None:
            return False
        if traceback:
            self._log.error(f"apt.{kind}", detail=message, suppressed=held, exc_info=exc)
        else:
            self._log.warning(f"apt.{kind}", detail=message, suppressed=held)
        return True


class PendingConnections:
    """The connections that have not sent a request yet, oldest first, each with the cancel
    scope that ends it. Past ``limit`` the oldest is ended for each new one: a client that
    opens connections and sends nothing only ever pushes out its own, while an apt client,
    which sends its request at once, is served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._scopes: dict[int, trio.CancelScope] = {}  # insertion order: oldest first
        self._next = 0

    def __len__(self) -> int:
        return len(self._scopes)

    def add(self, scope: trio.CancelScope) -> tuple[int, int]:
        """Register a new connection's scope: ``(its key, how many older ones were ended)``."""
        ended = self.evict(len(self._scopes) + 1 - self.limit)
        key = self._next
        self._next += 1
        self._scopes[key] = scope
        return key, ended

    def evict(self, count: int) -> int:
        """End the ``count`` oldest pending connections; returns how many were ended."""
        ended = 0
        while ended < count and self._scopes:
            oldest = next(iter(self._scopes))
            self._scopes.pop(oldest).cancel()
            ended += 1
        return ended

    def remove(self, key: int) -> None:
        """The connection sent its request (or ended): no longer pending."""
        self._scopes.pop(key, None)
