"""The peer HTTP client: small chunks pulled with one signed request from a holder.

The client verifies SHA-256 before storing and moves on to the next holder on any failure,
remembering holders that sent bad bytes (they are told, and skipped for a back-off).

Requests leave from the node's own address when it is given (``local_address``), as the
swarm's libtorrent connections do: a holder admits the source of a signed request to its
libtorrent port at once, so both must be the same address. Left to the kernel, a request to
another address on the same host (loopback test nodes, a second address on a Pi) leaves
from the primary one, and the holder admitted an address the swarm never dials from.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable

import h11
import trio
import xxhash

from frumitcache._log import get_logger
from frumitcache._signing import HEADER, sign
from frumitcache.errors import DigestMismatchError, HolderSilentError, PeerError
from frumitcache.swarm._holders import HolderPenalties
from frumitcache.swarm._merkle import MerkleTree, tree_from_layer
from frumitcache.swarm._peer_wire import (
    MAX_TREES,
    Address,
    content_length,
    next_event,
    receive_body,
    unpack_trees,
)
from frumitcache.swarm._storeapi import ChunkStore

log = get_logger("swarm")

#: Chunks above this are streamed to a temp file while hashed, not held in memory.
_STREAM_MIN = 256 * 1024


async def get_chunk(
    address: Address,
    digest: bytes,
    key: bytes,
    *,
    max_bytes: int,
    what: str = "",
    method: bytes = b"GET",
    sink: Callable[[bytes | memoryview], None] | None = None,
    local_address: str | None = None,
    answer_s: float = math.inf,
) -> bytearray:
    """One signed ``GET /chunk/<hex>[/what]`` for chunk ``digest`` from ``address``; the body,
    unverified. ``answer_s`` bounds each step of the answer (see :func:`signed_request`).

    With ``sink`` the body is handed to it piece by piece as it arrives (and an empty
    bytearray returned): a large chunk never sits whole in memory.
    The caller bounds it with a cancel scope (:class:`HttpChunkClient` does, per holder).
    """
    name = digest.hex()  # the peer port's paths name chunks in hex
    path = f"/chunk/{name}{'/' + what if what else ''}"
    return await signed_request(
        address,
        path,
        key,
        max_bytes=max_bytes,
        method=method,
        sink=sink,
        what=f"chunk {name}",
        local_address=local_address,
        answer_s=answer_s,
    )


async def signed_request(
    address: Address,
    path: str,
    key: bytes,
    *,
    max_bytes: int,
    what: str,
    method: bytes = b"GET",
    sink: Callable[[bytes | memoryview], None] | None = None,
    local_address: str | None = None,
    answer_s: float = math.inf,
) -> bytearray:
    """One signed request for ``path``; the body (``what`` names it in errors). It leaves
    from ``local_address`` when that is of the holder's address family.

    A holder that sends no response head within ``answer_s`` of the connect, or then no
    body bytes for ``answer_s``, raises :class:`HolderSilentError`: the kernel of a frozen
    Pi still accepts the connection, so only the answer tells."""
    target = path.encode()
    host = address[0]
    bind = local_address if _same_family(local_address, host) else None
    with trio.move_on_after(answer_s) as connecting:
        stream = await trio.open_tcp_stream(host, address[1], local_address=bind)
    if connecting.cancelled_caught:
        raise HolderSilentError(f"{host}: no connection in {answer_s:g} s")
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        headers = [
            (b"host", host.encode()),
            (HEADER, sign(key, method, target, time.time())),
            (b"connection", b"close"),
        ]
        if method != b"GET":
            headers.append((b"content-length", b"0"))
        req = h11.Request(method=method, target=target, headers=headers)
        with trio.move_on_after(answer_s) as asking:
            await stream.send_all((conn.send(req) or b"") + (conn.send(h11.EndOfMessage()) or b""))
            resp = await next_event(conn, stream)
        if asking.cancelled_caught:
            raise HolderSilentError(f"{host}: {what}: no answer in {answer_s:g} s")
        if not isinstance(resp, h11.Response):
            raise PeerError(f"{host}: no HTTP response")
        if resp.status_code != 200:
            raise PeerError(f"{host}: {what}: HTTP {resp.status_code}")
        body = bytearray()
        length = content_length(resp)
        if length is not None:
            # Every answer of the peer port has a Content-Length: read it off the socket.
            if length > max_bytes:
                raise PeerError(f"{host}: {what} longer than {max_bytes} bytes")
            await receive_body(conn, stream, length, sink or body.extend, stall_s=answer_s)
            return body
        received = 0
        while True:
            event = await next_event(conn, stream)
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > max_bytes:
                    raise PeerError(f"{host}: {what} longer than {max_bytes} bytes")
                if sink is not None:
                    sink(event.data)
                else:
                    body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return body
            else:
                raise PeerError(f"{host}: broken response")


def _same_family(local: str | None, host: str) -> bool:
    if not local:
        return False
    try:
        return ipaddress.ip_address(local).version == ipaddress.ip_address(host).version
    except ValueError:  # a host name: let the kernel pick
        return False


# A holder that is gone, slow, closes early or speaks garbage: try the next one.
_FETCH_ERRORS = (PeerError, OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError)


class HttpChunkClient:
    """Pulls chunks from holders over peer HTTP, verifying each. A holder that sends bad bytes
    is told (it re-checks and drops that chunk) and skipped for a back-off
    (:class:`~._holders.HolderPenalties`), not for good."""

    def __init__(
        self,
        store: ChunkStore,
        key: bytes,
        *,
        clock: Callable[[], float] = time.monotonic,
        local_address: str | None = None,
        answer_timeout: float = 5.0,
    ) -> None:
        self._store = store
        self._key = key
        #: The node's own address: requests leave from it (see the module docstring).
        self.local_address = local_address
        self._clock = clock
        self.penalties = HolderPenalties()
        self.timeout = 30.0
        #: A chunk's holder that takes no step of its answer for this long is skipped for a
        #: back-off (``swarm.answer_timeout_s``). Not for trees: a holder may compute them.
        self.answer_timeout = answer_timeout
        #: Chunk requests a holder left unanswered (:class:`HolderSilentError`).
        self.silent_holders = 0
        self.bytes_fetched = 0
        self.digest_mismatches = 0
        #: Holders told about a bad chunk that answered they dropped it.
        self.reported_dropped = 0

    @property
    def bad_holders(self) -> set[str]:
        """Holders skipped now (their back-off has not ended)."""
        return self.penalties.penalised(self._clock())

    def penalise(self, address: str) -> None:
        self.penalties.penalise(address, self._clock())

    async def report_bad(self, holder: Address, digest: bytes) -> None:
        """Tell ``holder`` its chunk ``digest`` came out wrong, so it re-checks and drops it.
        Best effort: a holder that can't be told is still skipped for its back-off."""
        try:
            with trio.fail_after(min(self.timeout, 10.0)):
                state = await get_chunk(
                    holder,
                    digest,
                    self._key,
                    max_bytes=64,
                    what="verify",
                    method=b"POST",
                    local_address=self.local_address,
                )
        except _FETCH_ERRORS:
            return
        if state == b"dropped":
            self.reported_dropped += 1

    async def chunk_state(self, holder: Address, digest: bytes) -> bytes | None:
        """What ``holder`` says of chunk ``digest``: ``held``, ``fetching``, ``absent`` or
        ``idle``; None when it gives no answer within ``answer_timeout`` (gone, or frozen)."""
        try:
            with trio.fail_after(self.answer_timeout):
                body = await get_chunk(
                    holder,
                    digest,
                    self._key,
                    max_bytes=16,
                    what="state",
                    local_address=self.local_address,
                )
        except _FETCH_ERRORS:
            return None
        return bytes(body)

    async def fetch_tree(
        self, digest: bytes, size: int, holders: Iterable[Address], root: bytes | None = None
    ) -> tuple[MerkleTree, Address]:
        """A chunk's v2 tree from the first holder that has it, checked against itself (and
        ``root`` when known). A lying holder is caught later: the bytes it leads to will not
        hash to ``digest``."""
        errors: list[str] = []
        for holder in holders:
            if self.penalties.is_penalised(holder[0], self._clock()):
                continue
            try:
                with trio.fail_after(self.timeout):
                    body = await get_chunk(
                        holder,
                        digest,
                        self._key,
                        max_bytes=32 * 33,
                        what="tree",
                        local_address=self.local_address,
                    )
                tree = tree_from_layer(size, bytes(body[:32]), bytes(body[32:]))
            except _FETCH_ERRORS as exc:
                errors.append(f"{holder[0]}: {exc}")
                continue
            except ValueError as exc:
                self.penalise(holder[0])
                errors.append(f"{holder[0]}: {exc}")
                continue
            if root is not None and tree.root != root:
                self.penalise(holder[0])
                errors.append(f"{holder[0]}: wrong pieces root")
                continue
            return tree, holder
        detail = "; ".join(errors) or "no usable holder"
        raise PeerError(f"chunk {digest.hex()}: no tree: {detail}")

    async def fetch_trees(
        self, chunks: dict[bytes, int], holder: Address
    ) -> dict[bytes, MerkleTree]:
        """The v2 trees of many chunks (digest → size, at most :data:`MAX_TREES`) from one
        holder in one request: the trees it has, each checked against itself (a lying one is
        caught like in :meth:`fetch_tree`). Empty when the holder can't answer; a malformed
        answer penalises it."""
        if not chunks or self.penalties.is_penalised(holder[0], self._clock()):
            return {}
        digests = list(chunks)[:MAX_TREES]
        try:
            with trio.fail_after(self.timeout):
                body = await signed_request(
                    holder,
                    "/trees/" + ",".join(d.hex() for d in digests),
                    self._key,
                    max_bytes=len(digests) * (2 + 32 * 33),
                    what="trees",
                    local_address=self.local_address,
                )
        except _FETCH_ERRORS:
            return {}
        trees: dict[bytes, MerkleTree] = {}
        try:
            for digest, raw in zip(digests, unpack_trees(body, len(digests)), strict=True):
                if raw is not None:
                    trees[digest] = tree_from_layer(chunks[digest], raw[:32], raw[32:])
        except ValueError:
            self.penalise(holder[0])
            return {}
        return trees

    async def _fetch_to_file(self, holder: Address, digest: bytes, size: int) -> None:
        """Stream a large chunk into a temp file, hashing it (SHA-256 and the scrub's xxh3)
        as it arrives, then adopt it: one hash pass, no whole-chunk buffer, no copy."""
        work = self._store.tmp_dir / "http"
        path = work / f"{digest.hex()}.{secrets.token_hex(4)}"
        sha, xx = hashlib.sha256(), xxhash.xxh3_64()
        fds: list[int] = []  # the file is created with the first body bytes (not for a 403)

        def sink(data: bytes | memoryview) -> None:
            if not fds:
                work.mkdir(exist_ok=True)
                fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            sha.update(data)
            xx.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fds[0], view) :]

        try:
            try:
                await get_chunk(
                    holder,
                    digest,
                    self._key,
                    max_bytes=size,
                    sink=sink,
                    local_address=self.local_address,
                    answer_s=self.answer_timeout,
                )
            finally:
                for fd in fds:
                    os.close(fd)
            if not fds or os.stat(path).st_size != size or sha.digest() != digest:
                raise DigestMismatchError(f"chunk {digest.hex()}: the bytes do not hash to it")
            await self._store.adopt_chunk_file(path, digest, verified_xxh3=xx.digest())
        finally:
            if fds:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)

    async def fetch(self, digest: bytes, size: int, holders: Iterable[Address]) -> Address:
        """Store chunk ``digest``; returns the holder it came from."""
        errors: list[str] = []
        for holder in holders:
            if self.penalties.is_penalised(holder[0], self._clock()):
                continue
            try:
                if size > _STREAM_MIN:
                    with trio.fail_after(self.timeout):
                        await self._fetch_to_file(holder, digest, size)
                else:
                    with trio.fail_after(self.timeout):
                        data = await get_chunk(
                            holder,
                            digest,
                            self._key,
                            max_bytes=size,
                            local_address=self.local_address,
                            answer_s=self.answer_timeout,
                        )
                    if len(data) != size:
                        raise DigestMismatchError(f"{len(data)} bytes, expected {size}")
                    # The store hashes the bytes once, as it takes them, and refuses a mismatch.
                    await self._store.put_chunk(data, digest)
            except HolderSilentError as exc:
                # Frozen but still a member: the chunks behind this one skip it at once.
                self.silent_holders += 1
                self.penalise(holder[0])
                log.info("holder.silent", holder=holder[0], error=str(exc))
                errors.append(f"{holder[0]}: {exc}")
                continue
            except _FETCH_ERRORS as exc:
                errors.append(f"{holder[0]}: {exc}")
                continue
            except DigestMismatchError:
                self.digest_mismatches += 1
                self.penalise(holder[0])
                await self.report_bad(holder, digest)
                errors.append(f"{holder[0]}: sent bytes that do not hash to {digest.hex()}")
                continue
            self.bytes_fetched += size
            self.penalties.forgive(holder[0])
            return holder
        detail = "; ".join(errors) or "no usable holder"
        if errors and all("do not hash" in e for e in errors):
            raise DigestMismatchError(f"chunk {digest.hex()}: {detail}")
        raise PeerError(f"chunk {digest.hex()}: {detail}")
