"""The h11 helpers shared by the peer HTTP server (:mod:`._peer_http`) and its client
(:mod:`._peer_client`)."""

from __future__ import annotations

import h11
import trio

Address = tuple[str, int]


def header(req: h11.Request, name: bytes) -> bytes | None:
    for key, value in req.headers:
        if key == name:
            return bytes(value)
    return None


async def next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        return event


async def send_simple(
    conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes
) -> None:
    head = h11.Response(status_code=status, headers=[(b"content-length", str(len(body)).encode())])
    await stream.send_all(
        (conn.send(head) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )


#: Chunks whose trees one ``GET /trees/<hex>,<hex>,...`` may ask for (a 4.2 KB target).
MAX_TREES = 64


def pack_trees(trees: list[bytes | None]) -> bytes:
    """The body of a ``/trees`` answer: per asked chunk, in order, a 2-byte length and its
    pieces root + piece layer (at most 33 hashes); length 0 for a chunk not held."""
    out = bytearray()
    for tree in trees:
        body = tree or b""
        out += len(body).to_bytes(2, "big") + body
    return bytes(out)


def unpack_trees(body: bytes | bytearray, count: int) -> list[bytes | None]:
    """The inverse of :func:`pack_trees` for ``count`` chunks; ValueError when malformed."""
    trees: list[bytes | None] = []
    at = 0
    for _ in range(count):
        if at + 2 > len(body):
            raise ValueError("trees answer cut short")
        n = int.from_bytes(body[at : at + 2], "big")
        at += 2
        if at + n > len(body):
            raise ValueError("trees answer cut short")
        trees.append(bytes(body[at : at + n]) or None)
        at += n
    if at != len(body):
        raise ValueError("trees answer too long")
    return trees
