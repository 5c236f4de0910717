"""One libtorrent session per agent, driven from trio.

:class:`Swarm` owns the session and its alert pump (``set_alert_fd`` on a non-blocking
socketpair, woken with ``trio.lowlevel.wait_readable``). Each chunk is its own deterministic v2
torrent (see :mod:`._torrent`): a chunk in the store is seeded in seed mode straight from its
store file; a missing chunk is downloaded into ``store.tmp_dir``, checked, adopted into the
store and then seeded on by the same torrent, pointed at the store's name of its file.

Settings, filters and torrent records are in :mod:`._lt`, the chunks' v2 trees in :mod:`._trees`,
the payload totals in :mod:`._totals`.
Traps handled here (measured, see shared/LIBTORRENT.md): settings are passed at construction; an
alert is copied out at once (it dies at the next ``pop_alerts``); a finished download is flushed
(``cache_flushed_alert``) before its file is read; every address is in the global peer class so
rate limits apply on a LAN; outgoing connections leave from the node's own address so that
libtorrent's per-IP bans and our IP filter see distinct nodes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import libtorrent as lt
import trio

from frumitcache.config import SwarmConfig
from frumitcache.errors import FrumitcacheError, NotInStoreError, PeerError
from frumitcache.swarm._holders import HolderPenalties
from frumitcache.swarm._lt import (
    SwarmStatistics,
    Torrent,
    add_params,
    drain,
    member_filter,
    peer_class_filter,
    seed_on,
    session_settings,
    unlink_quietly,
    wait_finished,
)
from frumitcache.swarm._merkle import MerkleTree
from frumitcache.swarm._storeapi import ChunkStore
from frumitcache.swarm._torrent import (
    ChunkTorrent,
    chunk_torrent,
    digest_of_name,
    site_mac,
    torrent_of_tree,
)
from frumitcache.swarm._totals import SwarmTotals
from frumitcache.swarm._trees import ChunkTrees, downloaded_tree

Address = tuple[str, int]

# Evicted chunks' torrents are removed at least this often, and after this many new torrents.
_SWEEP_S = 30.0
_SWEEP_EVERY = 256


class Swarm:
    """The libtorrent side of one agent. Start it with ``nursery.start(swarm.run)``."""

    def __init__(
        self,
        store: ChunkStore,
        *,
        address: str,
        port: int = 0,
        config: SwarmConfig | None = None,
        key: bytes | None = None,
    ) -> None:
        self._store = store
        # The site key names every torrent (see ._torrent): only key holders find a chunk.
        self._key = key
        self._address = address
        self._port = port
        self._config = config or SwarmConfig()
        self._ses: Any = None
        self._torrents: dict[bytes, Torrent] = {}
        self._holders: dict[bytes, set[Address]] = {}
        self._trees = ChunkTrees(store)
        self._fetching: dict[bytes, trio.Event] = {}
        self._totals = SwarmTotals()  # payload bytes, kept across torrent removals
        self._sweep_wanted = trio.Event()
        self._swept_at = 0  # torrent count after the last sweep
        # libtorrent bans a peer per torrent; we skip it for every chunk, for a back-off.
        self._banned = HolderPenalties()
        # Default deny: until the site says who its members are, only this node is admitted.
        self._members: set[str] | None = set()
        self._listen_port = 0
        self._stopping = False
        self._nursery: trio.Nursery | None = None  # follow-up work started by alerts

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def listen_port(self) -> int:
        return self._listen_port

    @property
    def address(self) -> str:
        return self._address

    @property
    def torrent_count(self) -> int:
        """Torrents in the session now (seeding and downloading)."""
        return len(self._torrents)

    @property
    def banned(self) -> frozenset[str]:
        """IPs libtorrent banned for sending data that failed its hash check (their back-off
        has not ended)."""
        return frozenset(self._banned.penalised(time.monotonic()))

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the session and pump its alerts until cancelled; reports the listen port."""
        params: Any = session_settings(self._address, self._port, self._config)
        # Listen only once the filters are in: no window in which anyone is admitted.
        listen = params.pop("listen_interfaces")
        quiet: Any = {**params, "listen_interfaces": ""}
        ses = lt.session(quiet)
        wake_r, wake_w = socket.socketpair()
        try:
            wake_r.setblocking(False)
            wake_w.setblocking(False)
            ses.set_alert_fd(wake_w.fileno())
            self._ses = ses
            self._apply_peer_classes()
            self._apply_members()
            ses.apply_settings({"listen_interfaces": listen})
            self._listen_port = await self._wait_listening(wake_r)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sweep_loop)
                task_status.started(self._listen_port)
                while True:
                    drain(wake_r)
                    for alert in ses.pop_alerts():
                        self._on_alert(alert)
                    await trio.lowlevel.wait_readable(wake_r)
        finally:
            self._nursery = None
            self._stopping = True
            self._ses = None
            for t in self._torrents.values():
                t.release()
            with contextlib.suppress(Exception):
                ses.set_alert_fd(-1)
            ses.pause()
            del ses
            wake_r.close()
            wake_w.close()

    async def _wait_listening(self, wake: socket.socket) -> int:
        with trio.fail_after(10):
            while True:
                drain(wake)
                for alert in self._ses.pop_alerts():
                    if isinstance(alert, lt.listen_failed_alert):
                        msg = alert.message()
                        raise PeerError(f"swarm cannot listen on {self._address}: {msg}")
                    self._on_alert(alert)
                port = int(self._ses.listen_port())
                if port:
                    return port
                await trio.lowlevel.wait_readable(wake)

    def _session(self) -> Any:
        if self._ses is None:
            raise PeerError("the swarm session is not running")
        return self._ses

    # --- admission ------------------------------------------------------------------------

    def _apply_peer_classes(self) -> None:
        self._ses.set_peer_class_filter(peer_class_filter())

    def set_members(self, ips: Iterable[str] | None) -> None:
        """Admit only these peer IPs (and this node); ``None`` admits everyone."""
        self._members = None if ips is None else {str(ipaddress.ip_address(i)) for i in ips}
        if self._ses is not None:
            self._apply_members()

    def admit(self, ip: str) -> None:
        """Admit one more peer IP now (it just proved the site key on the peer HTTP port),
        without waiting for the next membership refresh."""
        if self._members is None or ip in self._members:
            return
        self._members.add(str(ipaddress.ip_address(ip)))
        if self._ses is not None:
            self._apply_members()

    def _apply_members(self) -> None:
        self._ses.set_ip_filter(member_filter(self._members, self._address))

    # --- alerts ---------------------------------------------------------------------------

    def _on_alert(self, alert: Any) -> None:
        # Copy what is needed now: the alert object dies at the next pop_alerts().
        digest = digest_of_name(getattr(alert, "torrent_name", ""))
        t = self._torrents.get(digest) if digest else None
        if isinstance(alert, lt.torrent_finished_alert) and t is not None:
            t.finished.set()
        elif isinstance(alert, lt.cache_flushed_alert) and t is not None:
            t.flushed.set()
        elif isinstance(alert, lt.file_renamed_alert | lt.file_rename_failed_alert) and t:
            if isinstance(alert, lt.file_rename_failed_alert):
                t.error = alert.message()
            t.renamed.set()
        elif isinstance(alert, lt.torrent_removed_alert):
            # A removed torrent's name may already be reused by its successor: match handles.
            for t2 in list(self._torrents.values()):
                if t2.removed.is_set():
                    continue
                if t2.handle == alert.handle:
                    t2.removed.set()
        elif isinstance(alert, lt.hash_failed_alert):
            self._totals.hash_failures += 1
            if t is not None and t.seeding:
                # A seed-mode torrent hashes each piece on its first upload: our own store file
                # is bad. Stop serving it, and let the store check (and drop) the chunk.
                self._trees.corrupt.add(t.digest)
                self._retire(t, check=True)
        elif isinstance(alert, lt.peer_ban_alert):
            with contextlib.suppress(Exception):
                self._banned.penalise(str(alert.ip[0]), time.monotonic())
        elif isinstance(alert, lt.torrent_error_alert | lt.file_error_alert) and t is not None:
            t.error = alert.message()
            t.finished.set()
            t.flushed.set()
            if t.seeding:  # e.g. the store evicted the chunk under us
                self._retire(t, check=False)

    def _retire(self, t: Torrent, *, check: bool) -> None:
        """Stop seeding a chunk whose store file failed us; with ``check``, have the store
        verify it (its read path drops a corrupt chunk)."""
        if t.retiring:
            return
        t.retiring = True
        with contextlib.suppress(RuntimeError):
            t.handle.pause()
        if self._nursery is None:
            return

        async def retire() -> None:
            await self._remove(t)
            self._trees.forget(t.digest)
            if check:
                with contextlib.suppress(FrumitcacheError, OSError):
                    await self._store.read_chunk(t.digest)

        self._nursery.start_soon(retire)

    # --- seeding --------------------------------------------------------------------------

    async def tree(self, digest: bytes) -> MerkleTree:
        """The v2 tree (root and piece layer) of a stored chunk; peers ask for it over HTTP."""
        return await self._trees.of_stored(digest)

    def remember_tree(self, digest: bytes, tree: MerkleTree) -> None:
        """Keep a chunk's piece layer (computed while its bytes were hashed anyway)."""
        self._trees.remember(digest, tree)

    def _mac(self, digest: bytes) -> bytes:
        return site_mac(self._key, digest) if self._key else b""

    def _add(self, ct: ChunkTorrent, data: bytes, save_path: Path, flags: int) -> Torrent:
        atp = add_params(data, save_path, flags)
        handle = self._session().add_torrent(atp)
        t = Torrent(ct.digest, handle, seeding=bool(flags & int(lt.torrent_flags.seed_mode)))
        self._torrents[ct.digest] = t
        if len(self._torrents) >= self._swept_at + _SWEEP_EVERY:
            self._sweep_wanted.set()
        return t

    # --- forgetting evicted chunks ----------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            with trio.move_on_after(_SWEEP_S):
                await self._sweep_wanted.wait()
            self._sweep_wanted = trio.Event()
            await self.sweep()

    async def sweep(self) -> int:
        """Forget chunks the store no longer holds (evicted, dropped): remove their torrents
        (each costs ~14 KiB in libtorrent), trees, holder lists and per-chunk totals. Runs
        every ``_SWEEP_S`` and whenever ``_SWEEP_EVERY`` torrents were added since the last
        run, so memory follows the store's size, not the history. Returns torrents removed."""
        gone = [
            t
            for d, t in list(self._torrents.items())
            if t.seeding and not t.retiring and not self._store.has_chunk(d)
        ]
        for t in gone:
            await self._remove(t)
        live = self._torrents.keys() | self._fetching.keys()
        for d in [d for d in self._trees.digests() if d not in live]:
            if not self._store.has_chunk(d):
                self._trees.forget(d)
        for d in [d for d in self._holders if d not in live and not self._store.has_chunk(d)]:
            del self._holders[d]
        self._totals.fold(live)
        self._swept_at = len(self._torrents)
        return len(gone)

    async def seed(
        self, digest: bytes, *, super_seed: bool = False, verified: bool = False
    ) -> None:
        """Serve a stored chunk to the swarm (seed mode: libtorrent does not re-hash it).

        ``verified``: the store just checked the chunk's SHA-256 as it took the bytes, so
        its tree is computed without hashing the whole file again."""
        if digest in self._torrents and self._torrents[digest].seeding:
            return
        if not self._store.has_chunk(digest):
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
        path = self._store.chunk_path(digest)
        tree = await self._trees.of_file(digest, path, verified=verified)
        ct = torrent_of_tree(digest, tree, mac=self._mac(digest))
        flags = int(lt.torrent_flags.seed_mode)
        if super_seed:
            # Off by default: libtorrent reveals the first piece only after a 10 s timer.
            flags |= int(lt.torrent_flags.super_seeding)
        if digest in self._torrents:  # a finished download still in the session
            return
        self._add(ct, ct.seeder_bytes(tree.piece_layer), path.parent, flags)
        self._dial(digest)

    async def unseed(self, digest: bytes) -> None:
        t = self._torrents.get(digest)
        if t is not None:
            await self._remove(t)

    async def _remove(self, t: Torrent) -> None:
        if self._ses is not None and not t.removed.is_set():
            self._totals.account(t)
            try:
                self._ses.remove_torrent(t.handle)
            except RuntimeError:  # the handle is no longer valid: nothing left to remove
                t.removed.set()
            with trio.move_on_after(10):
                await t.removed.wait()
        if self._torrents.get(t.digest) is t:
            del self._torrents[t.digest]

    # --- fetching -------------------------------------------------------------------------

    def add_holders(self, digest: bytes, holders: Iterable[Address]) -> None:
        """More peers that hold (or are fetching) ``digest``; dialled at once if it is active."""
        own = (self._address, self._listen_port)
        new = {(h, int(p)) for h, p in holders if (h, int(p)) != own}
        self._holders.setdefault(digest, set()).update(new)
        # Holders come from the site's authenticated catalogue: members, so admitted (the
        # filter also refuses outgoing dials, and a fetch may start before the first refresh).
        for ip in {h for h, _ in new}:
            self.admit(ip)
        self._dial(digest)

    def _dial(self, digest: bytes) -> None:
        t = self._torrents.get(digest)
        if t is None or self._ses is None:
            return
        for peer in self._holders.get(digest, ()):
            if self._banned.is_penalised(peer[0], time.monotonic()):
                continue
            with contextlib.suppress(Exception):
                t.handle.connect_peer(peer)

    async def fetch_chunk(
        self,
        digest: bytes,
        size: int,
        holders: Iterable[Address],
        *,
        root: bytes,
        piece_layer: bytes | None = None,
        stall_timeout: float = 30.0,
    ) -> None:
        """Download chunk ``digest`` from the swarm into the store, then keep seeding it.

        ``root`` is the chunk's v2 pieces root (from the manifest); with ``digest`` and
        ``size`` it names the torrent. Raises :class:`PeerError` when no byte arrives for
        ``stall_timeout`` seconds, :class:`DigestMismatchError` when the result is not
        ``digest`` (a lying manifest).
        """
        self.add_holders(digest, holders)
        if self._store.has_chunk(digest):
            return
        running = self._fetching.get(digest)
        if running is not None:
            await running.wait()
            if not self._store.has_chunk(digest):
                raise PeerError(f"chunk {digest.hex()}: the concurrent fetch failed")
            return
        done = trio.Event()
        self._fetching[digest] = done
        try:
            await self._fetch(digest, size, root, piece_layer, stall_timeout)
        finally:
            del self._fetching[digest]
            done.set()

    async def _fetch(
        self, digest: bytes, size: int, root: bytes, piece_layer: bytes | None, stall_timeout: float
    ) -> None:
        ct = chunk_torrent(digest, size, root, mac=self._mac(digest))
        work = self._store.tmp_dir / "swarm"
        work.mkdir(exist_ok=True)
        partial, adopted = work / ct.name, work / f"{ct.name}.adopt"
        unlink_quietly(partial, adopted)
        data = ct.leecher_bytes() if piece_layer is None else ct.seeder_bytes(piece_layer)
        t = self._add(ct, data, work, 0)
        kept = False
        try:
            await wait_finished(t, self._dial, stall_timeout)
            self._session()
            t.handle.flush_cache()
            with trio.fail_after(30):
                await t.flushed.wait()
            if t.error:
                raise PeerError(f"chunk {digest.hex()}: {t.error}")
            # The store adopts a second name of the file, so the torrent reads on from the
            # first until it is told the store's: its peers stay connected, nothing re-added.
            try:
                os.link(partial, adopted)
            except OSError:  # no hard links here (e.g. vfat): hand over the file itself
                await self._remove(t)
                adopted = partial
            trees: list[MerkleTree] = []

            def verify(path: Path) -> bytes:
                # One read-back pass: the piece layer, the scrub's xxh3 and the root
                # re-checked, in the store's worker thread before it adopts the file.
                tree, xx = downloaded_tree(digest, path, size, root, piece_layer)
                trees.append(tree)
                return xx

            await self._store.adopt_chunk_file(adopted, digest, verify=verify, root=root)
            self._trees.remember(digest, trees[0])
            with contextlib.suppress(NotInStoreError):
                if adopted != partial:
                    kept = await seed_on(t, partial, self._store.chunk_path(digest))
        finally:
            if not kept and self._torrents.get(digest) is t:
                with trio.CancelScope(shield=True):
                    await self._remove(t)
            unlink_quietly(partial, adopted)
        if not kept:  # keep serving what we just fetched: the other leechers still trade
            await self.seed(digest, super_seed=False)

    def progressed_at(self, digest: bytes) -> float | None:
        """trio time an active download of ``digest`` last gained verified bytes (sampled
        once a second by its wait loop, so reading it costs no libtorrent call); ``None``
        when there is no active download."""
        t = self._torrents.get(digest)
        if t is None or t.seeding:
            return None
        return t.progressed_at

    # --- statistics -----------------------------------------------------------------------

    def statistics(self) -> SwarmStatistics:
        return self._totals.statistics(self._torrents, self.banned, self._trees.corrupt)


def cleanup_partials(store: ChunkStore) -> None:
    """Remove leftovers of downloads interrupted by a crash (call before the swarm starts)."""
    shutil.rmtree(store.tmp_dir / "swarm", ignore_errors=True)


__all__ = ["Swarm", "cleanup_partials"]
