"""The agent's side of its site: the control plane and the chunk transports, wired together.

:class:`SiteLink` starts the peer HTTP port (small chunks, signed with the site key), the
libtorrent session (large chunks; not started on a one-node site, where nobody would dial
it) and the :class:`~frumitcache.site.SiteNode`. It turns the catalogue's node ids into
:class:`~frumitcache.swarm.Holder` addresses, keeps the swarm's IP filter equal to the live
members, and answers the site's hooks: what this node holds (for a new seeder's catalogue)
and fetch requests when this node is the seeder (handed to the content service).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable

import trio

from frumitcache._log import get_logger
from frumitcache.agent import _sysinfo
from frumitcache.agent._peerapi import (
    PrefetchHandler,
    PrefetchPeerHttpServer,
    request_bulk,
    request_tail,
)
from frumitcache.agent._tail import Tail, pack_tail
from frumitcache.config import Config
from frumitcache.errors import AgentError
from frumitcache.site import (
    Bulk,
    ErrorReply,
    FetchRequest,
    Have,
    MemberInfo,
    ObjectInfo,
    ObjectManifest,
    SiteHooks,
    SiteNode,
    split_have,
)
from frumitcache.store import Store
from frumitcache.swarm import (
    ChunkFetcher,
    Holder,
    HttpChunkClient,
    MerkleTree,
    PeerHttpServer,
    PeerLimits,
    Swarm,
)

log = get_logger("site")

FetchHandler = Callable[[str, FetchRequest], Awaitable[ObjectInfo | ErrorReply]]

# How often advertised figures (free disk, load) and the swarm's member filter are refreshed.
_REFRESH_S = 2.0


class SiteLink(SiteHooks):
    """One node's membership of its site; run it with ``nursery.start(link.run)``."""

    def __init__(self, config: Config, store: Store, key: bytes, node_id: str) -> None:
        self.config = config
        self.store = store
        self.key = key
        self.node_id = node_id
        self.solo = not config.site.peers and not config.site.discovery
        #: Set by the control server: stage a URL here when a member asks (prefetch).
        self.on_prefetch: PrefetchHandler | None = None
        self.http_server: PeerHttpServer = PrefetchPeerHttpServer(
            store,
            key,
            prefetch=self._prefetch,
            keys=self._keys,
            bulk=self._bulk_body,
            tail=self._tail_body,
            upload_rate=config.swarm.upload_rate,
            limits=PeerLimits.from_config(config.site),
            max_clock_skew_s=config.site.max_clock_skew_s,
        )
        # Requests leave from the node's address, the one its swarm dials from: a holder
        # admits a signed request's source to its libtorrent port.
        self.http_client = HttpChunkClient(
            store,
            key,
            local_address=config.node.address,
            answer_timeout=config.swarm.answer_timeout_s,
        )
        self.swarm: Swarm | None = None
        self.node: SiteNode | None = None
        self.chunks: ChunkFetcher | None = None
        self.on_fetch: FetchHandler | None = None
        self.seeder_changed = trio.Event()
        #: Set (and replaced) when the seeder changes and whenever our lease is renewed.
        self.lease_changed = trio.Event()

    # --- running --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        address = cfg.node.address
        async with trio.open_nursery(strict_exception_groups=True) as nursery:
            swarm_port = 0
            if not self.solo:
                self.swarm = Swarm(
                    self.store,
                    address=address,
                    port=cfg.swarm.port,
                    config=cfg.swarm,
                    key=self.key,
                )
                swarm_port = await nursery.start(self.swarm.run)
                self.http_server = PrefetchPeerHttpServer(
                    self.store,
                    self.key,
                    prefetch=self._prefetch,
                    keys=self._keys,
                    bulk=self._bulk_body,
                    tail=self._tail_body,
                    upload_rate=cfg.swarm.upload_rate,
                    trees=self._tree,
                    on_member=self.swarm.admit,
                    limits=PeerLimits.from_config(cfg.site),
                    max_clock_skew_s=cfg.site.max_clock_skew_s,
                )
            peer_port = await nursery.start(self.http_server.serve, address, cfg.site.peer_port)
            me = _sysinfo.local_member(
                cfg, self.node_id, self.store.root, peer_port=peer_port, swarm_port=swarm_port
            )
            # The peer port listens on node.address while the node runs (the same nursery:
            # one fails, both stop), so a late seeder's peer port may be probed (rule 8).
            self.node = SiteNode(
                cfg.site,
                me,
                self.key,
                hooks=self,
                durable_path=cfg.state_path / "site-term.json",
                probe_seeder=True,
            )
            self.chunks = ChunkFetcher.from_config(
                self.store,
                self.http_client,
                self.swarm,
                cfg.swarm,
                me=Holder(address, peer_port, swarm_port),
            )
            self.http_server.activity = self.chunks
            await nursery.start(self.node.run)
            nursery.start_soon(self._refresh)
            log.info(
                "site.joined",
                site=cfg.site.name,
                node=self.node_id,
                peer_port=peer_port,
                swarm_port=swarm_port,
                solo=self.solo,
            )
            task_status.started()

    def parts(self) -> tuple[SiteNode, ChunkFetcher]:
        """The running control plane and chunk fetcher (after :meth:`run` started)."""
        if self.node is None or self.chunks is None:
            raise AgentError("the site link is not running yet")
        return self.node, self.chunks

    async def _tree(self, digest: bytes) -> MerkleTree:
        # A member asking for a chunk's tree is about to dial us for it: seed it now.
        assert self.swarm is not None
        await self.swarm.seed(digest)
        return await self.swarm.tree(digest)

    async def _refresh(self) -> None:
        # Figures that drift, and the swarm filter: refreshed on a timer. A seeder change is
        # logged by the driver when it happens ("site.seeder-changed"), not polled here.
        assert self.node is not None
        while True:
            await trio.sleep(_REFRESH_S)
            self.node.update_self(
                free_disk_bytes=_sysinfo.free_disk_bytes(self.store.root),
                load=_sysinfo.load_average(),
            )
            if self.swarm is not None:
                self.swarm.set_members([m.address for m in self.node.members()])

    # --- queries the content service uses --------------------------------------------------

    def holders(self, nodes: Iterable[str]) -> tuple[Holder, ...]:
        """Addresses of the live members among ``nodes`` (this node left out)."""
        assert self.node is not None
        members = {m.node_id: m for m in self.node.members()}
        seeder = self.node.seeder()
        out = []
        for node in dict.fromkeys(nodes):
            member = members.get(node)
            if member is None or node == self.node_id:
                continue
            out.append(
                Holder(
                    member.address,
                    member.peer_port,
                    member.swarm_port,
                    seeder=seeder is not None and seeder[0] == node,
                )
            )
        return tuple(out)

    def other_members(self) -> list[str]:
        assert self.node is not None
        return [m.node_id for m in self.node.members() if m.node_id != self.node_id]

    def is_seeder(self) -> bool:
        return self.node is not None and self.node.is_seeder()

    def lease_until(self) -> float:
        """trio time at which this node's seeder lease runs out unless renewed."""
        return self.node.lease_until() if self.node is not None else -math.inf

    def seeder(self) -> tuple[str, int] | None:
        """``(node id, term)`` of the live seeder as this node sees it, else ``None``."""
        return self.node.seeder() if self.node is not None else None

    def hears_site(self) -> bool:
        """Does this node hear its site lately (a majority, or a seeder naming itself)?"""
        return self.node is not None and self.node.hears_site()

    async def seed_chunk(self, digest: bytes) -> None:
        """Offer a stored chunk to the swarm when it is big enough to go that way."""
        if self.swarm is None:
            return
        size = self.store.chunk_len(digest)
        if size is not None and size > self.config.swarm.small_chunk_bytes:
            await self.swarm.seed(digest)

    # --- hooks --------------------------------------------------------------------------------

    def _prefetch(self, url: str, sha256: bytes | None) -> str:
        if self.on_prefetch is None:
            raise AgentError("this agent is still starting")
        return self.on_prefetch(url, sha256)

    def _bulk_body(self, token: int) -> bytes | None:
        """A site message too large for a frame, kept here for the member it is for."""
        return self.node.bulk_body(token) if self.node is not None else None

    async def fetch_bulk(self, member: MemberInfo, bulk: Bulk) -> bytes:
        return await request_bulk(
            (member.address, member.peer_port), self.key, bulk.token, bulk.size
        )

    def _tail_body(self, key: str) -> bytes | str | None:
        """The unfinished chunk of ``key`` this node kept when its fetch stopped, packed for
        the seeder that took the object over (:mod:`._tail`); "writing" while a writer of
        the key that left none is open (a fenced fetch still unwinding)."""
        kept = self.store.kept_tail(key)
        if kept is None:
            return "writing" if self.store.is_writing(key) else None
        return pack_tail(self.key, key, Tail(*kept))

    async def fetch_tail(self, node: str, key: str) -> Tail | None:
        """The unfinished chunk of ``key`` that member ``node`` keeps, if it is live."""
        for holder in self.holders((node,)):
            return await request_tail(
                (holder.address, holder.peer_port),
                self.key,
                key,
                chunk_size=self.store.chunk_size,
                timeout_s=self.config.swarm.answer_timeout_s * 2,
            )
        return None

    def _keys(self, digest: bytes) -> list[str]:
        """The keys naming the complete object ``digest`` here (a member locating it asks)."""
        if self.store.lookup(digest) is None:
            return []
        for stored in self.store.objects():
            if stored.manifest.digest == digest:
                return list(stored.keys) or [f"sha256:{digest.hex()}"]
        return []

    async def on_fetch_request(self, sender: str, request: FetchRequest) -> ObjectInfo | ErrorReply:
        if self.on_fetch is None:
            return ErrorReply(request.request_id, "agent", "this agent is still starting")
        return await self.on_fetch(sender, request)

    def have_report(self) -> list[Have]:
        manifests = []
        for stored in self.store.objects():
            m = stored.manifest
            for key in stored.keys or (f"sha256:{m.digest.hex()}",):
                manifests.append(
                    ObjectManifest(key, m.digest, m.size, m.chunk_size, m.chunks, True)
                )
        for key in self.store.partial_keys():
            chunks = tuple(self.store.partial_chunks(key))
            if chunks:
                manifests.append(
                    ObjectManifest(key, None, None, self.store.chunk_size, chunks, False)
                )
        return split_have(self.node_id, tuple(manifests), (), ())

    def on_seeder_change(self, seeder: tuple[str, int] | None) -> None:
        # Wake whoever waits on the seeder (fetches that must re-ask the new one).
        event, self.seeder_changed = self.seeder_changed, trio.Event()
        event.set()
        self.on_lease_renewed(self.lease_until())

    def on_lease_renewed(self, until: float) -> None:
        # Wake a fence that holds the origin fetch while the lease has lapsed.
        event, self.lease_changed = self.lease_changed, trio.Event()
        event.set()
