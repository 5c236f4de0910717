"""CONNECT tunnels of the apt proxy: allow-listed by ``apt.connect_allowed_hosts``, not cached,
every byte counted as uplink traffic."""

from __future__ import annotations

import h11
import trio

from frumitcache.apt._requests import Rejection, parse_connect_target
from frumitcache.apt._status import ProxyMetrics
from frumitcache.apt._wire import send, simple_error

_RECEIVE = 65536
_TUNNEL_CONNECT_S = 10.0


async def tunnel(
    conn: h11.Connection,
    stream: trio.SocketStream,
    request: h11.Request,
    allowed: list[str],
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
    try:
        with trio.fail_after(_TUNNEL_CONNECT_S):
            upstream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        metrics.requests[("CONNECT", 502)] += 1
        await simple_error(conn, stream, 502, f"cannot reach {host}:{port}: {exc}\n")
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
    src: trio.SocketStream, dst: trio.SocketStream, down: bool, metrics: ProxyMetrics
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
