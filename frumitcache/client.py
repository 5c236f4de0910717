"""The library's way into the local agent: an async (trio) client for the control socket.

Every call opens a connection to the agent's Unix socket, has one conversation and closes it;
errors arrive as the agent raised them, from :mod:`frumitcache.errors`. When no agent
listens, :class:`~frumitcache.errors.AgentUnavailableError` says so and how to start one —
the client never goes around the site to the origin on its own.

Results are the frozen dataclasses of :mod:`frumitcache._results` (re-exported by the package).
:mod:`frumitcache.sync` wraps every call for code that is not async.
"""

from __future__ import annotations

import hashlib
import os
import socket as _socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from frumitcache._results import (
    CacheContents,
    CachedObject,
    CacheStats,
    Estimate,
    EstimateItem,
    GcReport,
    Holding,
    ImportReport,
    Location,
    Member,
    PinState,
    PrefetchProgress,
    SiteInfo,
    UplinkStats,
    VerifyReport,
)
from frumitcache.config import Config, find_config_file, load_config
from frumitcache.control._protocol import (
    CacheListing,
    CacheListRequest,
    Data,
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
    PinReply,
    PinRequest,
    PrefetchReply,
    PrefetchRequest,
    Pull,
    PullDone,
    PullStarted,
    SiteReply,
    SiteRequest,
    Status,
    StatusRequest,
    VerifyReply,
    VerifyRequest,
)
from frumitcache.control._stream import MessageStream
from frumitcache.errors import (
    AgentUnavailableError,
    BadUrlError,
    DigestMismatchError,
    FrumitcacheError,
    ProtocolError,
)

_R = TypeVar("_R", bound=Message)


def default_download_dir() -> Path:
    """Where :meth:`AgentClient.fetch` puts files when no ``dest`` is given:
    ``$XDG_CACHE_HOME/frumitcache/downloads``, else ``~/.cache/frumitcache/downloads``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "frumitcache" / "downloads"


def check_url(url: str) -> None:
    """Raise :class:`~frumitcache.errors.BadUrlError` unless ``url`` is an http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BadUrlError(f"not a URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrlError(f"not an http:// or https:// URL: {url!r}")


def parse_sha256(text: str | bytes | None) -> bytes | None:
    """A digest given as 64 hex digits (optionally ``sha256:``) or 32 raw bytes."""
    if text is None or (isinstance(text, bytes) and len(text) == 32):
        return text
    raw = text.decode() if isinstance(text, bytes) else text
    hexpart = raw[7:] if raw.lower().startswith("sha256:") else raw
    try:
        digest = bytes.fromhex(hexpart)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ProtocolError(f"a SHA-256 is 64 hex digits, got {raw!r}")
    return digest


def default_socket() -> Path:
    """The control socket named by the config file in use (or the built-in default)."""
    return load_config(find_config_file()).socket_path


class PullStream:
    """The bytes of one object as the agent sends them, verified chunk by chunk.

    ``size`` is the object's size when known, ``source`` where the agent got it (``store``,
    ``origin`` or ``site``); ``digest`` is set once the last byte arrived."""

    def __init__(self, conn: MessageStream, started: PullStarted) -> None:
        self._conn = conn
        self.size = started.size
        self.source = started.source
        self.digest: bytes | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            msg = await self._conn.receive_required()
            if isinstance(msg, Data):
                yield msg.data
            elif isinstance(msg, PullDone):
                self.digest = msg.digest
                return
            elif isinstance(msg, Failed):
                raise msg.to_error()
            else:
                raise ProtocolError(f"unexpected {msg.tag} in a pull")


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

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[MessageStream]:
        sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            await sock.connect(os.fspath(self.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise AgentUnavailableError(
                f"no frumitcache agent is listening on {self.socket}; start one with "
                "`frumitcache agent` (or `systemctl start frumitcache`)"
            ) from None
        except OSError as exc:
            sock.close()
            raise AgentUnavailableError(
                f"cannot reach the agent on {self.socket}: {exc.strerror or exc}"
            ) from None
        conn = MessageStream(trio.SocketStream(sock))
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
            yield _verified(url, pulled, digest)

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
        target, are hashed as they arrive, and the target appears (by rename, after fsync)
        only when the whole object checked out; on any failure no target file is left.
        """
        check_url(url)
        digest = parse_sha256(sha256)
        target = _target_path(url, dest)
        await trio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        os.close(fd)
        tmp = trio.Path(tmp_name)
        try:
            async with await trio.open_file(tmp_name, "wb") as out:
                async with self.stream(url, sha256=digest) as chunks:
                    async for data in chunks:
                        await out.write(data)
                await out.flush()
                await trio.to_thread.run_sync(os.fsync, out.fileno())
            await tmp.chmod(0o644 & ~_umask())
            await tmp.replace(target)
        except BaseException:
            with trio.CancelScope(shield=True):
                await tmp.unlink(missing_ok=True)
            raise
        return target

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
        return _pin_state(await self._expect(PinRequest(target, True), PinReply))

    async def unpin(self, target: str) -> PinState:
        """Let an object be evicted again (a URL or a SHA-256, as for :meth:`pin`)."""
        return _pin_state(await self._expect(PinRequest(target, False), PinReply))

    # --- the site --------------------------------------------------------------------------

    async def locate(self, target: str) -> Location:
        """Which members hold the object named by a URL or a SHA-256, fully or in part.

        Answered from the seeder's catalogue (this node's store on a one-node site). An unknown
        URL gives a :class:`Location` with no holders; an unknown digest raises
        :class:`~frumitcache.errors.NotInStoreError`.
        """
        if len(target) != 64 and not target.lower().startswith("sha256:"):
            check_url(target)
        return _location(await self._expect(LocateRequest(target), LocateReply))

    async def site(self) -> SiteInfo:
        """Members and their capabilities, the seeder and its term, uplink and cache figures."""
        return _site_info(await self._expect(SiteRequest(), SiteReply))

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
        items = tuple(_estimate_item(i) for i in reply.items)
        return Estimate(
            items=items,
            uplink_bytes=sum(i.uplink for i in items if i.uplink is not None),
            in_site_bytes=sum(i.in_site for i in items),
            unknown=tuple(i.url for i in items if i.uplink is None),
        )

    # --- the local store -------------------------------------------------------------------

    async def cache_list(self) -> CacheContents:
        """Every complete object in this node's store, and keys held in part."""
        reply = await self._expect(CacheListRequest(), CacheListing)
        return CacheContents(
            objects=tuple(
                CachedObject(
                    digest=o["digest"],
                    size=o["size"],
                    chunks=o["chunks"],
                    keys=tuple(o["keys"]),
                    pinned=o["pinned"],
                    last_used=o["last_used"],
                )
                for o in reply.objects
            ),
            partial=tuple(reply.partial),
        )

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


class PrefetchHandle:
    """A prefetch under way: what each member answered, and its progress on demand."""

    def __init__(self, client: AgentClient, started: dict[str, dict[str, str]]) -> None:
        self._client = client
        #: URL -> node -> "present", "fetching" or "error: ..." (the members' first answer).
        self.started = started

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs being prefetched."""
        return tuple(self.started)

    @property
    def errors(self) -> dict[tuple[str, str], str]:
        """``(url, node) -> reason`` for every member that refused or could not be asked."""
        return {
            (url, node): state
            for url, nodes in self.started.items()
            for node, state in nodes.items()
            if state.startswith("error")
        }

    async def status(self) -> tuple[PrefetchProgress, ...]:
        """Bytes each member holds of each URL now (from :meth:`AgentClient.locate`)."""
        out: list[PrefetchProgress] = []
        for url, nodes in self.started.items():
            where = await self._client.locate(url)
            held = {h.node: h for h in where.holders}
            for node, state in nodes.items():
                h = held.get(node)
                out.append(
                    PrefetchProgress(
                        url=url,
                        node=node,
                        bytes=h.bytes if h else 0,
                        size=where.size,
                        complete=bool(h and h.complete),
                        started=state,
                    )
                )
        return tuple(out)

    async def wait(self, *, poll_s: float = 0.5) -> tuple[PrefetchProgress, ...]:
        """Until every member that accepted holds every URL completely; raises
        :class:`~frumitcache.errors.PeerError` at once when a member could not be asked at
        all. A member whose fetch later fails (origin error) never completes, so bound the
        wait with ``trio.fail_after``."""
        if self.errors:
            (url, node), reason = next(iter(self.errors.items()))
            raise _peer_error(f"{node} did not take {url}: {reason}")
        while True:
            progress = await self.status()
            if all(p.complete for p in progress):
                return progress
            await trio.sleep(poll_s)


def _peer_error(message: str) -> FrumitcacheError:
    from frumitcache.errors import PeerError

    return PeerError(message)


async def _verified(url: str, pulled: PullStream, digest: bytes | None) -> AsyncIterator[bytes]:
    hasher = hashlib.sha256()
    async for data in pulled:
        hasher.update(data)
        yield data
    got = hasher.digest()
    if pulled.digest is not None and pulled.digest != got:
        raise DigestMismatchError(
            f"{url}: received bytes hash to {got.hex()}, the agent reports {pulled.digest.hex()}"
        )
    if digest is not None and got != digest:
        raise DigestMismatchError(f"{url}: SHA-256 is {got.hex()}, expected {digest.hex()}")


def _target_path(url: str, dest: str | os.PathLike[str] | None) -> Path:
    name = Path(urlsplit(url).path).name
    if dest is not None and not Path(dest).is_dir():
        return Path(dest).absolute()
    if not name:
        raise BadUrlError(f"cannot name a file after {url!r}; pass dest=")
    return (Path(dest) if dest is not None else default_download_dir()).absolute() / name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pin_state(reply: PinReply) -> PinState:
    return PinState(reply.digest.hex(), reply.pinned, reply.present)


def _location(reply: LocateReply) -> Location:
    holders = tuple(
        Holding(
            node=node,
            chunks=int(h["chunks"]),
            bytes=int(h["bytes"]),
            complete=reply.complete and int(h["chunks"]) == reply.chunks,
        )
        for node, h in sorted(reply.holders.items())
    )
    return Location(
        url=reply.url,
        digest=reply.digest.hex() if reply.digest is not None else None,
        size=reply.size,
        chunks=reply.chunks,
        complete=reply.complete,
        fetching=reply.fetching,
        holders=holders,
    )


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def _site_info(reply: SiteReply) -> SiteInfo:
    members = tuple(
        Member(
            node=str(m.get("node", "")),
            address=str(m.get("address", "")),
            model=str(m.get("model", "")),
            ram_bytes=_int(m, "ram_bytes"),
            free_disk_bytes=_int(m, "free_disk_bytes"),
            link_mbit=_int(m, "link_mbit"),
            wired=bool(m.get("wired", True)),
            load=float(m.get("load", 0.0)),
            priority=_int(m, "priority"),
            seeder=m.get("node") == reply.seeder,
        )
        for m in reply.members
        if isinstance(m, dict)
    )
    u = reply.uplink
    c = reply.cache
    return SiteInfo(
        node=reply.node,
        site=reply.site,
        solo=reply.solo,
        seeder=reply.seeder,
        term=reply.term,
        members=members,
        uplink=UplinkStats(
            bytes_fetched=_int(u, "bytes_fetched"),
            bytes_served=_int(u, "bytes_served"),
            bytes_spared=_int(u, "bytes_spared"),
            rate=float(u.get("rate", 0.0)),
            budget=_int(u, "budget"),
            fetches=_int(u, "fetches"),
            active_fetches=_int(u, "active_fetches"),
        ),
        cache=CacheStats(
            objects=_int(c, "objects"),
            partial_objects=_int(c, "partial_objects"),
            bytes_used=_int(c, "bytes_used"),
            pinned_bytes=_int(c, "pinned_bytes"),
            max_bytes=_int(c, "max_bytes"),
            free_disk_bytes=_int(c, "free_disk_bytes"),
            hits=_int(c, "hits"),
            misses=_int(c, "misses"),
            evicted_bytes=_int(c, "evicted_bytes"),
        ),
    )


def _estimate_item(item: Mapping[str, Any]) -> EstimateItem:
    return EstimateItem(
        url=str(item["url"]),
        size=item.get("size"),
        in_site=int(item.get("in_site") or 0),
        uplink=item.get("uplink"),
        source=str(item.get("source", "")),
        error=item.get("error"),
    )
