"""A hold on an origin fetch: the gate its body passes before each piece.

The seeder holds its fetch while its lease has lapsed and lets it go on when the lease is back
(:class:`frumitcache.agent._seeder._Fence`): while held, no byte is read from the origin's
socket (TCP flow control pauses the origin) and none is written to the store. The hold sits
between reads, so no read is in progress and httpx's read timeout does not run meanwhile.

When the site names another seeder the fetch is stopped; first, :meth:`FetchHold.drain` lets it
take the bytes that already crossed the uplink and wait in its socket (a held fetch's receive
buffer: ~0.5 MB on loopback), short of the end of the chunk after the one it is in, so that they
join its unfinished chunk, which the new seeder takes over (agent/_tail.py) with the chunk it
completed, if any, instead of asking the origin for them again. It shrinks the socket's receive
buffer first, so that the room each read makes does not let the origin's send buffer cross only
to be dropped at the close. Nothing is announced meanwhile: :meth:`FetchHold.wait_open` stays
shut.
"""

from __future__ import annotations

import trio


class FetchHold:
    """Open until :meth:`hold`, open again at :meth:`release`; a fetch passes
    :meth:`wait_open` before it sends a request and before it reads or writes each piece."""

    def __init__(self) -> None:
        self._open = trio.Event()
        self._open.set()
        self._gate = self._open  # what the body copy waits on: opens to drain as well
        self._drained = trio.Event()
        #: Set by :meth:`drain`: the chunk size; the drained bytes cross one boundary at most.
        self.grain: int | None = None

    @property
    def held(self) -> bool:
        return not self._open.is_set()

    @property
    def draining(self) -> bool:
        return self.grain is not None

    def hold(self) -> None:
        if not self.held and not self.draining:
            self._open, self._gate = trio.Event(), trio.Event()

    def release(self) -> None:
        self._open.set()
        self._gate.set()

    async def wait_open(self) -> None:
        """Return when the fetch may go on (at once, without a checkpoint, when open)."""
        if self.held:
            await self._open.wait()

    async def wait_body(self) -> bool:
        """The body copy's gate: return when the fetch may go on (``False``) or must drain
        what its socket holds and stop (``True``)."""
        if self.held and not self.draining:
            await self._gate.wait()
        return self.held and self.draining

    async def drain(self, *, chunk_size: int, limit_s: float = 1.0) -> None:
        """Let the held body copy take what has already arrived, short of the second chunk
        boundary from here (see the module docstring); return once it says :meth:`drained` (at most
        ``limit_s``). The caller then stops the fetch."""
        if not self.held:
            return
        self.grain = chunk_size
        self._gate.set()
        with trio.move_on_after(limit_s):
            await self._drained.wait()

    def drained(self) -> None:
        self._drained.set()


__all__ = ["FetchHold"]
