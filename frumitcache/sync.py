"""A synchronous face of :class:`~frumitcache.client.AgentClient`, for code that is not async.

Each call runs the async call to completion with ``trio.run`` (so it must not be called from
inside a trio run: use :class:`~frumitcache.client.AgentClient` there). :meth:`Client.stream`
runs its transfer in a helper thread and hands the verified chunks over as an ordinary
iterator. Results and errors are the same as the async client's::

    from frumitcache import Client

    client = Client()  # the agent named by the config file in use
    path = client.fetch("http://deb.debian.org/debian/README")
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import trio

from frumitcache._results import (
    CacheContents,
    Estimate,
    GcReport,
    ImportReport,
    Location,
    PinState,
    PrefetchProgress,
    SiteInfo,
    VerifyReport,
)
from frumitcache.client import AgentClient, PrefetchHandle
from frumitcache.config import Config
from frumitcache.control import Status

_T = TypeVar("_T")
_END = object()


def _run(fn: Callable[[], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        return await fn()

    return trio.run(main)


class Prefetch:
    """A prefetch under way (synchronous face of :class:`~frumitcache.client.PrefetchHandle`)."""

    def __init__(self, handle: PrefetchHandle) -> None:
        self._handle = handle
        #: URL -> node -> "present", "fetching" or "error: ..." (the members' first answer).
        self.started = handle.started

    def status(self) -> tuple[PrefetchProgress, ...]:
        """Bytes each member holds of each URL now."""
        return _run(self._handle.status)

    def wait(self, *, timeout_s: float | None = None) -> tuple[PrefetchProgress, ...]:
        """Until every member holds every URL; :class:`~frumitcache.errors.PeerError` if a
        member could not be asked, ``TimeoutError`` after ``timeout_s``."""

        async def wait() -> tuple[PrefetchProgress, ...]:
            if timeout_s is None:
                return await self._handle.wait()
            try:
                with trio.fail_after(timeout_s):
                    return await self._handle.wait()
            except trio.TooSlowError:
                raise TimeoutError(f"prefetch not complete after {timeout_s}s") from None

        return _run(wait)


class Client:
    """The local agent, synchronously; same arguments and results as
    :class:`~frumitcache.client.AgentClient`."""

    def __init__(self, socket: Path | str | None = None, *, config: Config | None = None) -> None:
        self.aclient = AgentClient(socket, config=config)
        self.socket = self.aclient.socket

    def status(self) -> Status:
        """The agent's raw status snapshot."""
        return _run(self.aclient.status)

    def site(self) -> SiteInfo:
        """Members with capabilities, seeder and term, uplink and cache statistics."""
        return _run(self.aclient.site)

    def fetch(
        self,
        url: str,
        *,
        sha256: str | bytes | None = None,
        dest: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Bring ``url`` into a file atomically; see :meth:`AgentClient.fetch`."""
        return _run(lambda: self.aclient.fetch(url, sha256=sha256, dest=dest))

    def stream(self, url: str, *, sha256: str | bytes | None = None) -> Iterator[bytes]:
        """The object's verified bytes, chunk by chunk (a generator; close it to stop early).

        The last ``next()`` raises :class:`~frumitcache.errors.DigestMismatchError` if the
        whole object does not match ``sha256`` or the agent's digest."""
        chunks: queue.Queue[object] = queue.Queue(maxsize=8)
        stop = threading.Event()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    chunks.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        async def produce() -> None:
            async with self.aclient.stream(url, sha256=sha256) as stream:
                async for data in stream:
                    await trio.to_thread.run_sync(put, data)
                    if stop.is_set():
                        return

        def worker() -> None:
            try:
                trio.run(produce)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)
            else:
                put(_END)

        thread = threading.Thread(target=worker, name="frumitcache-stream", daemon=True)
        thread.start()
        try:
            while True:
                item = chunks.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, bytes)
                yield item
        finally:
            stop.set()
            thread.join()

    def prefetch(
        self,
        urls: Iterable[str] | Mapping[str, str | bytes | None],
        *,
        nodes: Iterable[str] | None = None,
    ) -> Prefetch:
        """Stage ``urls`` on ``nodes`` (default: every member) and return at once."""
        return Prefetch(_run(lambda: self.aclient.prefetch(urls, nodes=nodes)))

    def pin(self, target: str) -> PinState:
        """Keep an object (URL or SHA-256) from eviction on this node."""
        return _run(lambda: self.aclient.pin(target))

    def unpin(self, target: str) -> PinState:
        """Let an object (URL or SHA-256) be evicted again."""
        return _run(lambda: self.aclient.unpin(target))

    def locate(self, target: str) -> Location:
        """Which members hold the object named by a URL or a SHA-256."""
        return _run(lambda: self.aclient.locate(target))

    def estimate(self, urls: Iterable[str]) -> Estimate:
        """Bytes of ``urls`` that must still cross the uplink vs already in the site."""
        url_list = list(urls)
        return _run(lambda: self.aclient.estimate(url_list))

    def cache_list(self) -> CacheContents:
        """This node's stored objects."""
        return _run(self.aclient.cache_list)

    def verify(self) -> VerifyReport:
        """Re-hash this node's store."""
        return _run(self.aclient.verify)

    def gc(self, *, free: int = 0) -> GcReport:
        """Evict until ``free`` more bytes fit under the cap."""
        return _run(lambda: self.aclient.gc(free=free))

    def import_debs(self, directory: str | os.PathLike[str]) -> ImportReport:
        """Ingest the ``*.deb`` files under ``directory`` into this node's store."""
        return _run(lambda: self.aclient.import_debs(directory))
