"""Writing h11 events to a trio stream, and the small HTTP helpers the proxy's parts share."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import h11
import trio

from frumitcache.content import http_status
from frumitcache.errors import (
    DigestMismatchError,
    FrumitcacheError,
    NotAllowedError,
    OriginError,
    OriginStatusError,
    OriginUnreachableError,
)


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


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def reason(status: int) -> bytes:
    """The reason phrase apt prints in its errors ("502  Bad Gateway"), or b"" if unknown."""
    return _REASONS.get(status, b"")


def source_error(exc: FrumitcacheError, url: str) -> tuple[int, str]:
    """The status and text answering a request whose source failed with ``exc``."""
    if isinstance(exc, NotAllowedError):
        return 403, f"{exc}\n"  # a redirect (or a seeder) refused by the allow-list
    if isinstance(exc, OriginStatusError):
        status = exc.status if 400 <= exc.status < 600 else 502
        return status, f"the origin answered {exc.status} for {url}\n"
    if isinstance(exc, OriginUnreachableError):
        return 504, f"the origin for {url} is unreachable and no copy is held here: {exc}\n"
    if isinstance(exc, DigestMismatchError):
        return 502, (
            f"{url} from the origin does not match the SHA-256 its index lists; "
            "refused (not served, not cached)\n"
        )
    if isinstance(exc, OriginError):
        return 502, f"fetching {url} failed: {exc}\n"
    return http_status(exc), f"cannot serve {url}: {exc}\n"


async def send(conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
    if isinstance(event, h11.Data):
        # Body pieces go out as they are (no join into a fresh buffer).
        for part in conn.send_with_data_passthrough(event) or ():
            await stream.send_all(part)
        return
    if isinstance(event, h11.Response) and not event.reason and event.status_code in _REASONS:
        # apt prints the reason phrase in its errors ("502  Bad Gateway"): always send one.
        event = h11.Response(
            status_code=event.status_code,
            headers=event.headers,
            reason=_REASONS[event.status_code],
        )
    data = conn.send(event)
    if data:
        await stream.send_all(data)
