"""What a door may ask of the uplink besides content: a tunnel (apt's ``CONNECT``).

The agent hands a door a :data:`TunnelOpener` bound to the door's tunnel allow-list; the stream
it opens is paced by ``origin.max_rate`` and counted with the origin fetches, both ways. It
raises :class:`~frumitcache.errors.NotAllowedError` (refused name or address) or
:class:`~frumitcache.errors.OriginUnreachableError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

#: ``open(host, port)``: a stream to the upstream through the uplink.
TunnelOpener = Callable[[str, int], Awaitable[trio.abc.HalfCloseableStream]]
