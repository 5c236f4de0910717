"""A read of an object a flight is bringing in, when the fetch drops what it stored and
starts over (a federation link's bytes failed the SHA-256, or a member's site now lists other
chunks): with the object's SHA-256 known up front (``hold_back``) and nothing handed out yet,
the read follows the new fetch, so a door whose response has not begun answers with the good
bytes instead of a 502 (CI saw that 502 after a corrupt .deb was fixed at the origin);
otherwise the reader is told, with the cause. Real store and flight; the fetch is scripted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio

from frumitcache.agent._flight import FEDERATION_RESTART, SITE_RESTART, Flight
from frumitcache.agent._reading import FlightContent
from frumitcache.content import ContentInfo, HttpMeta
from frumitcache.errors import DigestMismatchError, FetchRestartedError
from frumitcache.store import ObjectWriter, Store

URL = "http://origin.test/pool/main/p/pkg_1.0_all.deb"
CHUNK = 64 * 1024


def _bad(good: bytes) -> bytes:
    flipped = bytearray(good)
    flipped[-100] ^= 0xFF
    return bytes(flipped)


class _Fetch:
    """What a member or an uplink fetch does to the store and the flight, step by step."""

    def __init__(self, store: Store, flight: Flight, sha: bytes) -> None:
        self.store, self.flight, self.sha = store, flight, sha
        self.writer: ObjectWriter | None = None

    def open(self) -> ObjectWriter:
        self.writer = self.store.open_writer(URL, expected_digest=self.sha)
        self.flight.writing.set()
        self.flight.handover()
        return self.writer

    async def start_over(self, why: str) -> None:
        assert self.writer is not None
        await self.writer.discard()
        self.flight.restarted(None, why=why)

    async def finish(self) -> None:
        assert self.writer is not None
        self.flight.manifest = await self.writer.finish()
        self.flight.done.set()


async def _read(
    content: FlightContent, size: int, got: list[bytes], errors: list[FetchRestartedError]
) -> None:
    try:
        async with content.read(0, size) as pieces:
            async for piece in pieces:
                got.append(piece)
    except FetchRestartedError as exc:
        errors.append(exc)


def _setup(tmp_path: Path, good: bytes) -> tuple[Store, Flight, _Fetch, FlightContent]:
    store = Store.open(tmp_path / "store", max_bytes=1 << 26, chunk_size=CHUNK)
    sha = hashlib.sha256(good).digest()
    flight = Flight(URL, sha)
    flight.size = len(good)
    info = ContentInfo(len(good), sha, HttpMeta(), "uplink")
    return (
        store,
        flight,
        _Fetch(store, flight, sha),
        FlightContent(info, store, flight, hold_back=True),
    )


async def test_a_fetch_that_starts_over_before_a_byte_was_handed_out_is_followed(
    tmp_path: Path,
) -> None:
    good = bytes(range(256)) * (CHUNK // 256)  # one whole chunk: the read's only piece
    store, _, fetch, content = _setup(tmp_path, good)
    got: list[bytes] = []
    errors: list[FetchRestartedError] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await (fetch.open()).write(_bad(good))  # a stale site listing's chunk arrives
            nursery.start_soon(_read, content, len(good), got, errors)
            await trio.sleep(0.2)  # the read holds its last (only) piece back for the check
            assert got == []
            await fetch.start_over(SITE_RESTART)
            await (fetch.open()).write(good)
            await fetch.finish()
    assert b"".join(got) == good
    assert errors == []
    store.close()


async def test_a_fetch_that_starts_over_after_bytes_were_handed_out_tells_the_reader_why(
    tmp_path: Path,
) -> None:
    good = bytes(range(256)) * (2 * CHUNK // 256)  # two chunks: the first is handed out
    store, _, fetch, content = _setup(tmp_path, good)
    got: list[bytes] = []
    errors: list[FetchRestartedError] = []
    with trio.fail_after(10):
        writer = fetch.open()
        await writer.write(good[:CHUNK])
        await writer.write(_bad(good)[CHUNK:])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read, content, len(good), got, errors)
            await trio.sleep(0.2)
            assert b"".join(got) == good[:CHUNK]
            await fetch.start_over(FEDERATION_RESTART)
            await (fetch.open()).write(good)
            await fetch.finish()
    assert b"".join(got) == good[:CHUNK]  # never a byte of the second copy after the first
    assert len(errors) == 1
    assert FEDERATION_RESTART in str(errors[0])
    store.close()


async def test_a_fetch_that_starts_over_then_fails_ends_the_read_with_its_error(
    tmp_path: Path,
) -> None:
    good = bytes(range(256)) * (CHUNK // 256)
    store, flight, fetch, content = _setup(tmp_path, good)
    got: list[bytes] = []
    failed: list[DigestMismatchError] = []

    async def read() -> None:
        try:
            await _read(content, len(good), got, [])
        except DigestMismatchError as exc:
            failed.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await (fetch.open()).write(_bad(good))
            nursery.start_soon(read)
            await trio.sleep(0.2)
            await fetch.start_over(SITE_RESTART)
            await (fetch.open()).write(_bad(good))
            flight.error = DigestMismatchError(f"{URL}: SHA-256 differs; nothing stored")
            await fetch.start_over(SITE_RESTART)
            flight.done.set()
    assert got == []
    assert [str(e) for e in failed] == [f"{URL}: SHA-256 differs; nothing stored"]
    store.close()
