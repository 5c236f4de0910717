"""When an index file is revalidated with its origin: at most once per window, never staler.

Pure: the time is an argument. The source asks :meth:`IndexWindow.due` before serving an index
and calls :meth:`IndexWindow.mark` once a revalidation succeeded. ``Release.gpg`` is tied to
its ``Release``: when ``Release`` was revalidated after the signature, the signature is due too,
so a republished pair is never served half old, half new.
"""

from __future__ import annotations


class IndexWindow:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last: dict[str, float] = {}

    def due(self, url: str, now: float) -> bool:
        last = self._last.get(url)
        if last is None or now - last >= self.window_s:
            return True
        if url.endswith("/Release.gpg"):
            release = self._last.get(url.removesuffix(".gpg"))
            return release is not None and release > last
        return False

    def mark(self, url: str, now: float) -> None:
        self._last[url] = now

    def last(self, url: str) -> float | None:
        return self._last.get(url)

    def forget_before(self, now: float) -> None:
        """Drop entries older than the window (they are due anyway); bounds memory."""
        self._last = {u: t for u, t in self._last.items() if now - t < self.window_s}
