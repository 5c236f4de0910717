"""The library's way into the local agent: :class:`AgentClient`, an async (trio) client for
the control socket. See :mod:`frumitcache.client` for the rules every call keeps."""

from __future__ import annotations

import contextlib
import os
import socket as _socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
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
    SiteInfo,
    VerifyReport,
)
from frumitcache.client._copy import copy_range
from frumitcache.client._prefetch import PrefetchHandle
from frumitcache.client._pull import (
    RESTARTS,
    PullOutcome,
    PullStream,
    check_url,
    default_socket,
    parse_sha256,
    rewind,
    target_path,
    umask,
    unavailable,
    verified,
    write_all,
)
from frumitcache.client._receiver import CopyFile, Finished, PullReceiver, Retry, Started, Write
from frumitcache.client._replies import (
    cache_contents,
    estimate_item,
    location,
    pin_state,
    site_info,
)
from frumitcache.config import Config
from frumitcache.control import (
    CacheListing,
    CacheListRequest,
    EstimateReply,
    EstimateRequest,
    Failed,
    GcReply,
    GcRequest,
    ImportReply,
    ImportRequest,
    LocateReply,
    LocateRequest,
    Message,
    MessageStream,
    PinReply,
    PinRequest,
    PrefetchReply,
    PrefetchRequest,
    Pull,
    PullStarted,
    SiteReply,
    SiteRequest,
    Status,
    StatusRequest,
    VerifyReply,
    VerifyRequest,
)
from frumitcache.errors import FetchRestartedError, ProtocolError

_R = TypeVar("_R", bound=Message)


def _ignore(n: int | None) -> None:
    pass


class AgentClient:
    """Talks to the agent at ``socket`` (default: the one the config file names).

    Every method is a trio coroutine (or async context manager) and raises
    :class:`~frumitcache.errors.FrumitcacheError` subclasses:
    :class:`~frumitcache.errors.AgentUnavailableError` when no agent listens,
    :class:`~frumitcache.errors.BadUrlError` for a URL that is not http(s),
    :class:`~frumitcache.errors.NotInStoreError` for a digest nobody holds.
    """

    def __init__(self, socket: Path | str | None = None, *, config: Config | None = None) -> None:
        if socket is not None:
            self.socket = Path(socket)
        elif config is not None:
            self.socket = config.socket_path
        else:
            self.socket = default_socket()
        # Whether the agent passes files (PullFiles); None until a pull finds out.
        self._files: bool | None = None

    @asynccontextmanager
    async def _connect(self, *, receive_fds: bool = False) -> AsyncIterator[MessageStream]:
        sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            await sock.connect(os.fspath(self.socket))
        except OSError as exc:
            sock.close()
            raise unavailable(self.socket, exc) from None
        conn = MessageStream(trio.SocketStream(sock), receive_fds=receive_fds)
        try:
            yield conn
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def _ask(self, request: Message) -> Message:
        async with self._connect() as conn:
            await conn.send(request)
            reply = await conn.receive_required()
        if isinstance(reply, Failed):
            raise reply.to_error()
        return reply

    async def _expect(self, request: Message, kind: type[_R]) -> _R:
        reply = await self._ask(request)
        if not isinstance(reply, kind):
            raise ProtocolError(f"unexpected {reply.tag} to a {request.tag} request")
        return reply

    async def status(self) -> Status:
        """The agent's raw status snapshot (what ``frumitcache status --json`` prints)."""
        reply = await self._ask(StatusRequest())
        if not isinstance(reply, Status):
            raise ProtocolError(f"unexpected {reply.tag} to a status request")
        return reply

    @asynccontextmanager
    async def pull(
        self, url: str, *, sha256: bytes | None = None, offset: int = 0
    ) -> AsyncIterator[PullStream]:
        """Stream the object at ``url`` through the agent (low level; see :meth:`stream`)::

        async with client.pull(url, sha256=digest) as stream:
            async for data in stream:
                ...
        """
        async with self._connect() as conn:
            await conn.send(Pull(url=url, sha256=sha256, offset=offset))
            first = await conn.receive_required()
            if isinstance(first, Failed):
                raise first.to_error()
            if not isinstance(first, PullStarted):
                raise ProtocolError(f"unexpected {first.tag} to a pull")
            yield PullStream(conn, first)

    # --- content ---------------------------------------------------------------------------

    @asynccontextmanager
    async def stream(
        self, url: str, *, sha256: str | bytes | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The object's bytes as the agent verifies them, chunk by chunk::

            async with client.stream(url) as chunks:
                async for data in chunks:
                    ...

        The whole object is hashed too: after the last chunk the iterator raises
        :class:`~frumitcache.errors.DigestMismatchError` if it does not match ``sha256`` (or the
        digest the agent reports), so a caller that consumed it all got exactly those bytes.
        """
        check_url(url)
        digest = parse_sha256(sha256)
        async with self.pull(url, sha256=digest) as pulled:
            yield verified(url, pulled, digest)

    async def fetch(
        self,
        url: str,
        *,
        sha256: str | bytes | None = None,
        dest: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Bring ``url`` through the agent into a file and return its path.

        ``dest`` is a file path or an existing directory (the URL's file name is used there);
        by default :func:`default_download_dir`. The bytes go to a temporary file beside the
        target (copied from the agent's verified chunk files, or hashed as they arrive from an
        older agent), and the target appears (by rename, after fsync) only when the whole
        object checked out; on any failure no target file is left. Should the agent drop what
        it sent (:class:`~frumitcache.errors.FetchRestartedError`: a federation link's bytes
        failed the object's SHA-256, or the site changed its listing, and it fetches the
        object again), the file starts over.
        """
        check_url(url)
        digest = parse_sha256(sha256)
        target = target_path(url, dest)
        await trio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        tmp = trio.Path(tmp_name)
        try:
            try:
                for attempt in range(RESTARTS + 1):
                    try:
                        await self.pull_into(url, fd, sha256=digest)
                        break
                    except FetchRestartedError:
                        # The agent dropped what it sent (bytes that failed the SHA-256, a
                        # changed site listing) and fetches it again: start the file over.
                        if attempt == RESTARTS or not rewind(fd):
                            raise
                await trio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
            await tmp.chmod(0o644 & ~umask())
            await tmp.replace(target)
        except BaseException:
            with trio.CancelScope(shield=True):
                await tmp.unlink(missing_ok=True)
            raise
        return target

    async def pull_into(
        self,
        url: str,
        out: int,
        *,
        sha256: bytes | None = None,
        files: bool = True,
        started: Callable[[int | None], None] = _ignore,
        advance: Callable[[int], None] = _ignore,
    ) -> PullOutcome:
        """Write the object at ``url`` to the open file ``out`` (from its position); the
        low-level half of :meth:`fetch` and ``frumitcache pull``.

        With ``files`` (and an agent that passes them) the agent's verified chunk files are
        copied in the kernel and nothing is hashed here; otherwise Data frames are written
        and hashed. Either way the object's SHA-256 must match ``sha256`` when given
        (DigestMismatchError; the caller discards what was written). ``started(size)`` is
        called once the agent answered, ``advance(n)`` after every ``n`` bytes written.
        """
        receiver = PullReceiver(url, sha256=sha256, files=files and self._files is not False)
        outcome = await self._pull_once(receiver, out, started, advance)
        if outcome is None:  # an agent older than PullFiles: ask with Pull
            self._files = False
            receiver = PullReceiver(url, sha256=sha256, files=False)
            outcome = await self._pull_once(receiver, out, started, advance)
        elif receiver.files:
            self._files = True
        assert outcome is not None
        return outcome

    async def _pull_once(
        self,
        receiver: PullReceiver,
        out: int,
        started: Callable[[int | None], None],
        advance: Callable[[int], None],
    ) -> PullOutcome | None:
        """One conversation of a pull (see :mod:`._receiver`); ``None``: ask again with Pull."""
        async with self._connect(receive_fds=receiver.files) as conn:
            try:
                await conn.send(receiver.request())
                while True:
                    msg = await conn.receive_required()
                    receiver.add_fds(conn.take_fds())
                    action = receiver.receive(msg)
                    if isinstance(action, CopyFile):
                        try:
                            await trio.to_thread.run_sync(
                                copy_range, action.fd, out, action.skip, action.count
                            )
                        finally:
                            os.close(action.fd)
                        advance(action.count)
                    elif isinstance(action, Write):
                        # Blocking but small (<= 256 KiB a frame); a worker thread would cost
                        # more than it saves.
                        write_all(out, action.data)
                        advance(len(action.data))
                    elif isinstance(action, Started):
                        started(action.size)
                    elif isinstance(action, Retry):
                        return None
                    elif isinstance(action, Finished):
                        return action.outcome
            finally:
                for fd in receiver.unclaimed_fds():
                    with contextlib.suppress(OSError):
                        os.close(fd)

    async def prefetch(
        self,
        urls: Iterable[str] | Mapping[str, str | bytes | None],
        *,
        nodes: Iterable[str] | None = None,
    ) -> PrefetchHandle:
        """Stage ``urls`` on ``nodes`` (node ids; ``None``: every member) and return at once.

        ``urls`` may map each URL to its expected SHA-256. Each member fetches through the
        site as a pull would (the uplink still carries each byte once). The returned
        :class:`PrefetchHandle` reports progress (:meth:`PrefetchHandle.status`) and can
        :meth:`~PrefetchHandle.wait` until every member holds every URL.
        """
        wanted = dict(urls) if isinstance(urls, Mapping) else dict.fromkeys(urls)
        for url in wanted:
            check_url(url)
        node_list = None if nodes is None else list(nodes)
        started: dict[str, dict[str, str]] = {}
        for url, sha in wanted.items():
            reply = await self._expect(
                PrefetchRequest(url=url, sha256=parse_sha256(sha), nodes=node_list),
                PrefetchReply,
            )
            started[url] = dict(reply.nodes)
        return PrefetchHandle(self, started)

    # --- pins ------------------------------------------------------------------------------

    async def pin(self, target: str) -> PinState:
        """Keep an object from eviction on this node; ``target`` is a URL it was fetched under
        or its SHA-256 (64 hex digits). A digest not stored yet is pinned ahead of its arrival."""
        return pin_state(await self._expect(PinRequest(target, True), PinReply))

    async def unpin(self, target: str) -> PinState:
        """Let an object be evicted again (a URL or a SHA-256, as for :meth:`pin`)."""
        return pin_state(await self._expect(PinRequest(target, False), PinReply))

    # --- the site --------------------------------------------------------------------------

    async def locate(self, target: str) -> Location:
        """Which members hold the object named by a URL or a SHA-256, fully or in part.

        Answered from the seeder's catalogue (this node's store on a one-node site). An unknown
        URL gives a :class:`Location` with no holders; an unknown digest raises
        :class:`~frumitcache.errors.NotInStoreError`.
        """
        if len(target) != 64 and not target.lower().startswith("sha256:"):
            check_url(target)
        return location(await self._expect(LocateRequest(target), LocateReply))

    async def site(self) -> SiteInfo:
        """Members and their capabilities, the seeder and its term, uplink and cache figures."""
        return site_info(await self._expect(SiteRequest(), SiteReply))

    async def estimate(self, urls: Iterable[str]) -> Estimate:
        """How many bytes of ``urls`` must still cross the uplink, and how many the site has.

        A URL the site has never seen is sized by a HEAD request the agent sends to the origin
        (the caller never contacts the origin); if the origin does not say, its ``uplink`` is
        ``None`` and it is listed in :attr:`Estimate.unknown`.
        """
        url_list = list(urls)
        for url in url_list:
            check_url(url)
        reply = await self._expect(EstimateRequest(url_list), EstimateReply)
        items = tuple(estimate_item(i) for i in reply.items)
        return Estimate(
            items=items,
            uplink_bytes=sum(i.uplink for i in items if i.uplink is not None),
            in_site_bytes=sum(i.in_site for i in items),
            unknown=tuple(i.url for i in items if i.uplink is None),
        )

    # --- the local store -------------------------------------------------------------------

    async def cache_list(self) -> CacheContents:
        """Every complete object in this node's store, and keys held in part."""
        return cache_contents(await self._expect(CacheListRequest(), CacheListing))

    async def verify(self) -> VerifyReport:
        """Re-hash every chunk of this node's store; bad chunks are removed (and refetched
        from the site when next needed)."""
        reply = await self._expect(VerifyRequest(), VerifyReply)
        return VerifyReport(**reply.report)

    async def gc(self, *, free: int = 0) -> GcReport:
        """Evict unpinned objects, least recently used first, until ``free`` more bytes fit
        under the store's cap (0: only what is over the cap)."""
        reply = await self._expect(GcRequest(free), GcReply)
        return GcReport(reply.freed, reply.bytes_used, reply.max_bytes)

    async def import_debs(self, directory: str | os.PathLike[str]) -> ImportReport:
        """Ingest the ``*.deb`` files under ``directory`` (e.g. ``/var/cache/apt/archives``)
        into this node's store, keyed by content (``sha256:<hex>``), so apt requests for the
        same packages are served locally. The agent reads the files: they must be readable by
        the agent's user. Files already stored are counted as ``present``."""
        path = await trio.to_thread.run_sync(lambda: str(Path(directory).absolute()))
        reply = await self._expect(ImportRequest(path), ImportReply)
        return ImportReport(
            reply.files,
            reply.imported,
            reply.present,
            reply.failed,
            reply.bytes_imported,
            tuple(reply.errors),
        )
