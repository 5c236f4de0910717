"""Freshness windows: an object that may change is revalidated with its origin at most once per
window, and is never staler than the window. The agent keeps one per door with a
:class:`Revalidation` of its own (the registry's ``oci.tag_window_s``), else the default one.

Pure: the time is an argument. The agent asks :meth:`FreshnessWindow.due` before serving a
``revalidate`` object and calls :meth:`FreshnessWindow.mark` once a revalidation succeeded. An
object may be tied to another (``tied_to``): when that one was revalidated after this one, this
one is due too, so a file and its detached signature are never served half old, half new.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Revalidation:
    """How one door's ``revalidate`` objects are checked with their origin (the agent is given
    one per door; on a site the seeder's counts, so members never ask the origin).

    ``window_s``: asked at most once per window for the whole site. ``digest_header``: the
    origin names its content's ``sha256:<hex>`` in this response header (a registry's
    ``Docker-Content-Digest``), so a ``HEAD`` decides and the body is fetched only when it
    changed. ``keep_on_status``: origin statuses at which the held copy stays current for
    another window instead of failing (a registry's 429 quota answer); reported, not hidden.
    """

    window_s: float
    digest_header: str = ""
    keep_on_status: frozenset[int] = frozenset()


class FreshnessWindow:
    """``max_entries`` bounds memory over weeks: past it, a mark drops what is due anyway."""

    def __init__(self, window_s: float, *, max_entries: int = 10_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._last: dict[str, float] = {}

    def due(self, url: str, now: float, *, tied_to: str | None = None) -> bool:
        last = self._last.get(url)
        if last is None or now - last >= self.window_s:
            return True
        if tied_to is not None:
            other = self._last.get(tied_to)
            return other is not None and other > last
        return False

    def mark(self, url: str, now: float) -> None:
        self._last.pop(url, None)
        self._last[url] = now  # insertion order is mark order: the oldest come first
        if len(self._last) > self.max_entries:
            self.forget_before(now)
            while len(self._last) > self.max_entries:
                del self._last[next(iter(self._last))]

    def last(self, url: str) -> float | None:
        return self._last.get(url)

    def forget_before(self, now: float) -> None:
        """Drop entries older than the window (they are due anyway); bounds memory."""
        self._last = {u: t for u, t in self._last.items() if now - t < self.window_s}
