"""A hold on an origin fetch: the gate its body passes before each piece.

The seeder holds its fetch while its lease has lapsed and lets it go on when the lease is back
(:class:`frumitcache.agent._seeder._Fence`): while held, no byte is read from the origin's
socket (TCP flow control pauses the origin) and none is written to the store. The hold sits
between reads, so no read is in progress and httpx's read timeout does not run meanwhile.
"""

from __future__ import annotations

import trio


class FetchHold:
    """Open until :meth:`hold`, open again at :meth:`release`; a fetch passes
    :meth:`wait_open` before it sends a request and before it reads or writes each piece."""

    def __init__(self) -> None:
        self._open = trio.Event()
        self._open.set()

    @property
    def held(self) -> bool:
        return not self._open.is_set()

    def hold(self) -> None:
        if not self.held:
            self._open = trio.Event()

    def release(self) -> None:
        self._open.set()

    async def wait_open(self) -> None:
        """Return when the fetch may go on (at once, without a checkpoint, when open)."""
        if self.held:
            await self._open.wait()


__all__ = ["FetchHold"]
