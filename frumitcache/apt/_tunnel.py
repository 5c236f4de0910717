"""CONNECT tunnels of the apt proxy: allow-listed by ``apt.connect_allowed_hosts``, not cached.

The upstream connection comes from the agent's :data:`~frumitcache.content.TunnelOpener`, the
uplink client's: its address check, ``origin.max_rate`` and the uplink byte counters hold for
tunnelled bytes as for fetched ones. A proxy without an opener refuses every CONNECT.
"""

from __future__ import annotations

import h11
import trio

from frumitcache.apt._requests import Rejection, parse_connect_target
from frumitcache.apt._status import ProxyMetrics
from frumitcache.apt._wire import send, simple_error
from frumitcache.content import TunnelOpener
from frumitcache.errors import NotAllowedError, OriginError

_RECEIVE = 65536


async def tunnel(
    conn: h11.Connection,
    stream: trio.SocketStream,
    request: h11.Request,
    allowed: list[str],
    opener: TunnelOpener | None,
    metrics: ProxyMetrics,
) -> None:
    """Answer a CONNECT: refuse it, or open the tunnel and pump both ways until either ends."""
    resolved = parse_connect_target(request.target, allowed)
    if isinstance(resolved, Rejection):
        metrics.rejected[resolved.status] += 1
        metrics.requests[("CONNECT", resolved.status)] += 1
        await simple_error(conn, stream, resolved.status, resolved.reason + "\n")
        return
    host, port = resolved
    if opener is None:
        metrics.rejected[403] += 1
        metrics.requests[("CONNECT", 403)] += 1
        await simple_error(conn, stream, 403, "this proxy opens no tunnels\n")
        return
    try:
        upstream = await opener(host, port)
    except NotAllowedError as exc:
        metrics.rejected[403] += 1
        metrics.requests[("CONNECT", 403)] += 1
        await simple_error(conn, stream, 403, f"{exc}\n")
        return
    except OriginError as exc:
        metrics.requests[("CONNECT", 502)] += 1
        await simple_error(conn, stream, 502, f"{exc}\n")
        return
    async with upstream:
        await send(conn, stream, h11.Response(status_code=200, headers=[]))
        metrics.requests[("CONNECT", 200)] += 1
        metrics.connect_tunnels += 1
        leftover, _closed = conn.trailing_data
        if leftover:
            await upstream.send_all(leftover)
            metrics.connect_bytes += len(leftover)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, stream, upstream, False, metrics)
            nursery.start_soon(_pump, upstream, stream, True, metrics)


async def _pump(
    src: trio.abc.HalfCloseableStream,
    dst: trio.abc.HalfCloseableStream,
    down: bool,
    metrics: ProxyMetrics,
) -> None:
    try:
        while data := await src.receive_some(_RECEIVE):
            await dst.send_all(data)
            metrics.connect_bytes += len(data)
            if down:  # what the client received all crossed the uplink
                metrics.bytes_served["uplink"] += len(data)
        await dst.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await dst.aclose()
