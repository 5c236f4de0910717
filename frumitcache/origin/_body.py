"""A streamed response's body that can be left in the middle, cleanly.

httpx reads a body through a chain of async generators (its own and httpcore's). A fetch that
stops half-way (cancelled, or refusing the bytes) leaves them suspended, for the garbage
collector to finalise at some later moment (trio warns of each: a ResourceWarning); and
httpcore before 1.0 skips closing the connection when cancelled, so the origin would keep
sending into a socket nobody reads. :meth:`ResponseBody.abandon` closes the socket, then runs
the chain to its end (the closed socket ends it with an error), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx


class ResponseBody:
    """The body of one streamed response, read at most once through :meth:`chunks`."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] | None = None
        self.done = False  # read to its end, or abandoned

    def chunks(self) -> AsyncIterator[bytes]:
        self._chunks = self._response.aiter_raw()
        return self._chunks

    async def abandon(self, *, cancelled: bool = False) -> None:
        """Leave the body unread: a no-op when it was read to its end. Never raises; call it
        shielded. ``cancelled``: close the socket even if no byte was asked for yet (httpcore
        before 1.0 would not)."""
        if self.done:
            return
        self.done = True
        chunks, self._chunks = self._chunks, None
        if chunks is None and not cancelled:
            return  # no generator started: the response's own close is enough
        stream = self._response.extensions.get("network_stream")
        with contextlib.suppress(Exception):
            # First tell every layer the body is given up on (a federation link must not take
            # the break that follows for a failure of its own), then close the socket.
            await self._response.aclose()
        with contextlib.suppress(Exception):
            if stream is not None:
                await stream.aclose()
        if chunks is None:
            return
        with contextlib.suppress(Exception):
            if stream is None:  # no socket to close: closing the outer generator must do
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                return
            async for _ in chunks:  # ends at once on the closed socket
                pass


__all__ = ["ResponseBody"]
