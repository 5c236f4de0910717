"""How the agent answers "give me the bytes of this URL": the one path every front door uses.

A request is served from the local store when the object is complete there (looked up by
URL, or by digest when the caller knows it — content addressing makes the URL secondary).
Otherwise an origin fetch is started (single-flight inside the fetcher) and the caller reads
the object cut-through from the store while it is still being written: every chunk it gets has
been hashed and stored first.

Fetches run in the agent's own nursery, not the caller's: a client that hangs up does not
abort a fetch other clients share, and a failing fetch does not cancel a caller halfway
through a send (which would cut a frame in two); the caller's reader just ends, and the
fetch's error is what the caller is told.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import trio

from frumitcache._log import get_logger
from frumitcache.errors import DigestMismatchError, FrumitcacheError
from frumitcache.origin import FetchInfo, OriginFetcher
from frumitcache.store import Store

log = get_logger("content")


@dataclass(frozen=True, slots=True)
class Opened:
    """An object being delivered: where it comes from, its size if known, its chunks in order."""

    source: str
    size: int | None
    chunks: AsyncIterator[bytes]


class _Outcome:
    """How a background fetch went: started (its writer exists), done, and its error.

    It is handed to the fetcher as its ``task_status``: the fetcher reports "the writer
    exists" the trio way, by calling ``started()``.
    """

    def __init__(self) -> None:
        self.writing = trio.Event()
        self.done = trio.Event()
        self.error: FrumitcacheError | None = None
        self.info: FetchInfo | None = None

    def started(self, value: FetchInfo | None = None) -> None:
        self.info = value
        self.writing.set()


class ContentService:
    """Finds or fetches objects for the control API and the other front doors."""

    def __init__(self, store: Store, fetcher: OriginFetcher, nursery: trio.Nursery) -> None:
        self._store = store
        self._fetcher = fetcher
        self._nursery = nursery

    def lookup(self, url: str, sha256: bytes | None) -> bytes | None:
        """Digest of a complete local object for this request, or ``None``."""
        if sha256 is not None:
            manifest = self._store.lookup(sha256)
            if manifest is not None:
                return manifest.digest
        manifest = self._store.lookup(url)
        if manifest is None:
            return None
        if sha256 is not None and manifest.digest != sha256:
            # The URL's stored content is not what the caller wants: never hand it over.
            raise DigestMismatchError(
                f"{url} is stored with SHA-256 {manifest.digest.hex()}, not {sha256.hex()}"
            )
        return manifest.digest

    @asynccontextmanager
    async def open(
        self, url: str, *, sha256: bytes | None = None, offset: int = 0
    ) -> AsyncIterator[Opened]:
        """Deliver the object at ``url`` from ``offset``; errors are :class:`FrumitcacheError`."""
        digest = self.lookup(url, sha256)
        if digest is not None:
            self._store.touch(digest)
            async with self._store.open_reader(digest, offset=offset) as reader:
                yield Opened("store", reader.size, _chunks(reader))
            return
        outcome = _Outcome()
        self._nursery.start_soon(self._fetch, url, sha256, outcome)
        async with trio.open_nursery() as waiters:  # whichever comes first
            for event in (outcome.writing, outcome.done):
                waiters.start_soon(_set_then_cancel, event, waiters.cancel_scope)
        if not outcome.writing.is_set() and outcome.error is not None:
            raise outcome.error
        try:
            async with self._store.open_reader(url, offset=offset) as reader:
                size = reader.size
                if size is None and outcome.info is not None:
                    size = outcome.info.size
                yield Opened("origin", size, _chunks(reader))
        except FrumitcacheError:
            # The reader only knows the writer went away; the fetch knows why.
            await outcome.done.wait()
            if outcome.error is not None:
                raise outcome.error from None
            raise

    async def _fetch(self, url: str, sha256: bytes | None, outcome: _Outcome) -> None:
        try:
            await self._fetcher.fetch(
                url, expected_digest=sha256, task_status=cast("trio.TaskStatus[FetchInfo]", outcome)
            )
        except FrumitcacheError as exc:
            # Reported to the waiting caller; the agent's nursery must not die of it.
            log.warning("fetch.failed", url=url, error=exc.code, detail=str(exc))
            outcome.error = exc
        finally:
            outcome.done.set()


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _chunks(reader: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in reader:
        yield chunk
