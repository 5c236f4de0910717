"""What keeps one client from stopping or starving the apt proxy: rate-limited logging of
unexpected errors (a flood of bad requests must not become a flood of tracebacks) and the cap on
connections that have not sent a request yet.

Neither reads the clock: the caller passes ``now``.
"""

from __future__ import annotations

import logging


class RateLimitedLog:
    """Logs an unexpected error with its traceback at most once per ``interval_s`` per kind;
    the ones held back in between are counted and reported with the next one logged."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def exception(
        self, kind: str, message: str, exc: BaseException, now: float, *, traceback: bool = True
    ) -> bool:
        """Log ``exc`` under ``kind`` if its interval has passed; True if it was logged.

        ``traceback=False`` for a known fault of the input (a warning, no traceback)."""
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        more = f" ({held} more like it not logged)" if held else ""
        if traceback:
            self._log.error("%s%s", message, more, exc_info=exc)
        else:
            self._log.warning("%s%s", message, more)
        return True
