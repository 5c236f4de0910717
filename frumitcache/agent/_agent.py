"""The agent: one trio nursery that owns every part of a node.

Start-up order matters for readiness: the store is opened (and recovered after a power cut)
first, then the servers bind; :meth:`Agent.run` reports :class:`AgentInfo` through
``task_status`` only when every front door really accepts connections, which is what
systemd's READY=1 and the tests wait for.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from frumitcache._log import get_logger
from frumitcache._version import __version__
from frumitcache.agent import _sysinfo
from frumitcache.agent._content import ContentService
from frumitcache.agent._control import ControlServer
from frumitcache.agent._keys import load_federation_key, load_site_key
from frumitcache.agent._sitelink import SiteLink
from frumitcache.apt import AptProxy, HashBook, SiteStatus
from frumitcache.config import Config
from frumitcache.control import Status
from frumitcache.errors import AgentError
from frumitcache.federation import FederationServer, FederationTransport
from frumitcache.oci import RegistryMetrics, is_manifest_url, serve_registry, tag_revalidation
from frumitcache.origin import AllowList, AllowPolicy, OriginFetcher, UpstreamBackoff
from frumitcache.site import MemberInfo
from frumitcache.store import Store
from frumitcache.swarm import PeerLimits

log = get_logger("agent")


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """Where a running agent can be reached and where it keeps its data."""

    node: str
    socket: Path
    store: Path
    apt: tuple[str, int] | None
    oci: tuple[str, int] | None = None


def node_name(config: Config) -> str:
    return config.node.name or socket.gethostname()


class Agent:
    """A node's agent; :meth:`run` it in a nursery (or with ``trio.run``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._started = time.monotonic()
        self._store: Store | None = None
        self._fetcher: OriginFetcher | None = None
        self._apt: tuple[str, int] | None = None
        self._oci: tuple[str, int] | None = None
        self._oci_metrics = RegistryMetrics()
        self._site: SiteLink | None = None
        self._content: ContentService | None = None
        self._proxy: AptProxy | None = None
        self._federation: FederationServer | None = None
        self._links: FederationTransport | None = None

    def status(self) -> Status:
        store_stats: dict[str, int] = {}
        origin_stats: dict[str, int] = {}
        if self._store is not None:
            store_stats = _int_fields(self._store.stats())
        if self._fetcher is not None:
            fetched = self._fetcher.statistics()
            origin_stats = _int_fields(fetched)
            # Provenance per federation link: "uplink federation parent@host:port" in status.
            for link, n in sorted(fetched.federation_by_link.items()):
                origin_stats[f"federation {link}"] = n
            # Objects whose bytes from a link failed verification: "federation rejected ...".
            for link, n in sorted(fetched.federation_rejected.items()):
                origin_stats[f"federation rejected {link}"] = n
        if self._federation is not None:
            served = self._federation.stats
            origin_stats["federation_served_bytes"] = served.bytes_served
            # Per child site: "uplink federation served edge1@10.0.1.2" in status.
            for child, n in sorted(served.bytes_by_child.items()):
                origin_stats[f"federation served {child}"] = n
            origin_stats["federation_refused"] = served.refused
            origin_stats["federation_busy"] = served.busy  # siblings sent on (503 busy)
            origin_stats["federation_relayed"] = served.relayed  # served from a running fetch
        return Status(
            version=__version__,
            node=node_name(self.config),
            address=self.config.node.address,
            socket=str(self.config.socket_path),
            store_path=str(self.config.store_path),
            apt=f"{self._apt[0]}:{self._apt[1]}" if self._apt else "",
            pid=os.getpid(),
            uptime_s=time.monotonic() - self._started,
            store=store_stats,
            origin=origin_stats,
            site=self._site_status(),
            oci=f"{self._oci[0]}:{self._oci[1]}" if self._oci else "",
            oci_counters=self._oci_metrics.summary() if self._oci else None,
        )

    async def _serve_apt(
        self,
        content: ContentService,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        cfg = self.config
        hashes = await trio.to_thread.run_sync(HashBook, cfg.state_path / "apt-hashes.sqlite")
        async with trio.open_nursery() as nursery:
            # CONNECT's own list, checked again by the uplink client at connect time.
            connect = AllowList.parse(cfg.apt.connect_allowed_hosts, "apt.connect_allowed_hosts")
            proxy = AptProxy(
                cfg.apt,
                content.source,
                hashes=hashes,
                status=self._apt_site_status,
                tunnels=content.fetcher.tunnel_opener(connect),
            )
            self._proxy = proxy
            try:
                bound: tuple[str, int] = await nursery.start(proxy.serve)
            except OSError as exc:
                raise AgentError(
                    f"cannot serve the apt proxy on {cfg.apt.listen}:{cfg.apt.port}: "
                    f"{exc.strerror or exc} (change apt.listen / apt.port, or apt.enabled = false)"
                ) from None
            task_status.started(bound)

    def _wrap_uplink(
        self, key: bytes | None
    ) -> Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None:
        """The federation's links around the uplink transport, when parents or siblings are
        configured (None: the origin only, as without federation)."""
        fed = self.config.federation
        if key is None or not (fed.parents or fed.siblings):
            return None

        def wrap(origin: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
            self._links = FederationTransport(
                origin, config=fed, key=key, site=self.config.site.name
            )
            return self._links

        return wrap

    def _upstream(self, url: str) -> tuple[str, ...] | None:
        """The sites this agent's uplink fetch of ``url`` comes through (relay_depth); () for
        a site without parents or siblings, which fetches from the origin itself."""
        return () if self._links is None else self._links.upstream(url)

    async def _serve_federation(
        self,
        content: ContentService,
        key: bytes,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        cfg = self.config
        server = FederationServer(
            content.source,
            key,
            held=lambda url: content.lookup(url, None) is not None,
            fetching=content.is_fetching,
            limits=PeerLimits.from_config(cfg.site),
            max_clock_skew_s=cfg.site.max_clock_skew_s,
            max_rate=cfg.federation.max_rate,
            max_sibling_streams=cfg.federation.max_sibling_streams,
            relay_depth=cfg.federation.relay_depth if cfg.federation.serve_relays else 0,
            site=cfg.site.name,
            upstream=self._upstream,
        )
        self._federation = server
        address = cfg.federation.listen or cfg.node.address  # "*": every address
        async with trio.open_nursery() as nursery:
            try:
                bound: tuple[str, int] = await nursery.start(
                    server.serve, address, cfg.federation.port
                )
            except OSError as exc:
                raise AgentError(
                    f"cannot serve the federation endpoint on {address}:{cfg.federation.port}: "
                    f"{exc.strerror or exc} (change federation.listen / federation.port)"
                ) from None
            task_status.started(bound)

    def _apt_site_status(self) -> SiteStatus:
        site = self._site_status()
        members = site.get("members", [])
        stats = self._fetcher.statistics() if self._fetcher else None
        return SiteStatus(
            site=self.config.site.name,
            node=node_name(self.config),
            seeder=str(site.get("seeder") or ""),
            members=tuple(str(m["node"]) for m in members),
            uplink_bytes=stats.bytes_received if stats else None,
            federation_bytes=tuple(sorted(stats.federation_by_link.items())) if stats else (),
        )

    async def _scrub_loop(self, store: Store, interval_s: float) -> None:
        """Re-check every chunk now and then: bit rot on an SD card is found before a peer
        or a client would be handed it (reads check xxh3 too, this finds what nobody reads)."""
        while True:
            await trio.sleep(interval_s)
            report = await store.scrub()
            log.info(
                "store.scrub",
                chunks=report.chunks_checked,
                corrupt=report.corrupt_chunks,
                missing=report.missing_chunks,
                objects_affected=report.objects_affected,
            )

    async def drain(self) -> None:
        """Until no fetch is in flight (SIGTERM: let transfers finish before stopping)."""
        if self._content is not None:
            await self._content.wait_idle()

    def _site_status(self) -> dict[str, Any]:
        name = node_name(self.config)
        out: dict[str, Any] = {"name": self.config.site.name}
        if self._content is not None:
            out.update(dataclasses.asdict(self._content.stats))
        node = self._site.node if self._site is not None else None
        if node is None:
            me = _sysinfo.local_member(
                self.config, name, self.config.store_path, peer_port=0, swarm_port=0
            )
            out.update(members=[_member_dict(me)], seeder=name, term=0, solo=True)
            return out
        seeder = node.seeder()
        stats = node.statistics()
        out.update(
            solo=False,
            seeder=seeder[0] if seeder else None,
            term=seeder[1] if seeder else stats.term,
            dropped_frames=sum(stats.dropped.values()),
            frames_in=stats.frames_in,
            frames_out=stats.frames_out,
            bytes_in=stats.bytes_in,
            bytes_out=stats.bytes_out,
            # Messages too large for a frame, their bodies over the peer port (big objects).
            bulk_in=stats.bulk_in,
            bulk_out=stats.bulk_out,
            members=[_member_dict(m) for m in node.members()],
        )
        assert self._site is not None
        # Which carrier moved the LAN bytes: libtorrent payload vs peer HTTP bodies.
        if self._site.swarm is not None:
            swarm = self._site.swarm.statistics()
            out.update(swarm_uploaded=swarm.uploaded, swarm_downloaded=swarm.downloaded)
        out.update(
            node=name,
            peer_http_served=self._site.http_server.statistics().bytes_served,
            peer_http_fetched=self._site.http_client.bytes_fetched,
            # Chunk requests a holder left unanswered (frozen Pi): each skipped it a while.
            peer_http_silent=self._site.http_client.silent_holders,
        )
        return out

    async def run(
        self, *, task_status: trio.TaskStatus[AgentInfo] = trio.TASK_STATUS_IGNORED
    ) -> None:
        cfg = self.config
        await trio.to_thread.run_sync(lambda: cfg.state_path.mkdir(parents=True, exist_ok=True))
        store = await trio.to_thread.run_sync(Store.from_config, cfg)
        self._store = store
        recovery = store.recovery
        if any(dataclasses.astuple(recovery)):
            log.info("store.recovered", **dataclasses.asdict(recovery))
        try:
            fed_key: bytes | None = None
            if cfg.federation.enabled:
                fed_key = await trio.to_thread.run_sync(load_federation_key, cfg)
            fetcher = OriginFetcher(
                cfg.origin,
                store,
                allow=AllowPolicy.from_config(cfg),
                wrap=self._wrap_uplink(fed_key),
            )
            self._fetcher = fetcher
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    site: SiteLink | None = None
                    if cfg.site.peers or cfg.site.discovery:
                        key = await trio.to_thread.run_sync(load_site_key, cfg)
                        site = SiteLink(cfg, store, key, node_name(cfg))
                        self._site = site
                    content = ContentService(
                        store,
                        fetcher,
                        nursery,
                        site,
                        cfg.site,
                        index_window_s=cfg.apt.index_window_s,
                        revalidation={"oci": tag_revalidation(cfg.oci.tag_window_s)},
                        backoff={
                            "oci": UpstreamBackoff(
                                cfg.oci.unreachable_backoff_s, cfg.oci.unreachable_backoff_max_s
                            )
                        },
                        manifest_urls={"oci": is_manifest_url},
                    )
                    self._content = content
                    self._oci_metrics.spared_for_members = functools.partial(
                        _spared_for_members, content
                    )
                    self._oci_metrics.served_stale = lambda: content.stale["oci"]
                    if site is not None:
                        await nursery.start(site.run)
                    if cfg.apt.enabled:
                        self._apt = await nursery.start(self._serve_apt, content)
                    if cfg.oci.enabled:
                        self._oci = await nursery.start(
                            functools.partial(
                                serve_registry,
                                cfg.oci,
                                content.source,
                                fetcher.token_getter("oci"),
                                metrics=self._oci_metrics,
                            )
                        )
                    if fed_key is not None:
                        await nursery.start(self._serve_federation, content, fed_key)
                    if cfg.store.scrub_interval_s > 0:
                        nursery.start_soon(self._scrub_loop, store, cfg.store.scrub_interval_s)
                    control = ControlServer(cfg.socket_path, content, self.status, cfg.control)
                    sock_path: Path = await nursery.start(control.serve)
                    info = AgentInfo(
                        node_name(cfg), sock_path, cfg.store_path, self._apt, self._oci
                    )
                    log.info(
                        "agent.ready",
                        node=info.node,
                        socket=str(info.socket),
                        store=str(info.store),
                        apt=f"{self._apt[0]}:{self._apt[1]}" if self._apt else "off",
                        oci=f"{self._oci[0]}:{self._oci[1]}" if self._oci else "off",
                    )
                    task_status.started(info)
            finally:
                with trio.CancelScope(shield=True):
                    await fetcher.aclose()
        finally:
            store.close()
            log.info("agent.stopped")


def _member_dict(m: MemberInfo) -> dict[str, Any]:
    """A member as the status reply and the library show it."""
    return {
        "node": m.node_id,
        "address": m.address,
        "priority": m.priority,
        "model": m.model,
        "ram_bytes": m.ram_bytes,
        "free_disk_bytes": m.free_disk_bytes,
        "link_mbit": m.link_mbit,
        "wired": m.wired,
        "load": m.load,
    }


def _int_fields(obj: object) -> dict[str, int]:
    """The integer counters of a statistics dataclass, flattened for the status reply."""
    out: dict[str, int] = {}
    for name in getattr(obj, "__dataclass_fields__", {}):
        value = getattr(obj, name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            out[name] = value
        elif isinstance(value, float):
            out[name] = int(value)
    return out


def _spared_for_members(content: ContentService) -> int | None:
    """The seeder's count of members' manifests it answered without an upstream GET; None on
    a member (the site's figure is the seeder's)."""
    return content.stats.manifests_spared_for_members if content.decides_freshness() else None
