"""Writing h11 events to a trio stream, and the small HTTP helpers the proxy's parts share."""

from __future__ import annotations

import contextlib
from http import HTTPStatus
from typing import Any

import h11
import trio


async def simple_error(
    conn: h11.Connection, stream: trio.SocketStream, status: int, text: str
) -> None:
    """A final text answer on a connection that closes after it."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = text.encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    try:
        await send(conn, stream, h11.Response(status_code=status, headers=headers))
        await send(conn, stream, h11.Data(data=body))
        await send(conn, stream, h11.EndOfMessage())
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def lower(name: bytes) -> str:
    return name.decode("latin-1").lower()


_TYPES = {
    ".deb": "application/vnd.debian.binary-package",
    ".udeb": "application/vnd.debian.binary-package",
    ".gz": "application/gzip",
    ".xz": "application/x-xz",
    ".bz2": "application/x-bzip2",
    ".gpg": "application/pgp-signature",
    ".dsc": "text/plain",
}


def content_type(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for suffix, ctype in _TYPES.items():
        if name.endswith(suffix):
            return ctype
    if name in ("InRelease", "Release", "Packages", "Sources") or name.startswith("Translation-"):
        return "text/plain"
    return "application/octet-stream"


async def send(conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
    if isinstance(event, h11.Data):
        # Body pieces go out as they are (no join into a fresh buffer).
        for part in conn.send_with_data_passthrough(event) or ():
            await stream.send_all(part)
        return
    if isinstance(event, h11.Response) and not event.reason:
        # apt prints the reason phrase in its errors ("502  Bad Gateway"): always send one.
        with contextlib.suppress(ValueError):
            event = h11.Response(
                status_code=event.status_code,
                headers=event.headers,
                reason=HTTPStatus(event.status_code).phrase.encode(),
            )
    data = conn.send(event)
    if data:
        await stream.send_all(data)
