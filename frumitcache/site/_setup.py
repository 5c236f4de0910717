"""What the site driver is built from, apart from the sockets' loop: the agent's hooks, the
node's advertisement from its config, static peers, the election's durable state on disk, the
multicast groups, and the statistics the driver reports."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from frumitcache._log import get_logger
from frumitcache.config import Config, SiteConfig
from frumitcache.errors import ConfigError, PeerError
from frumitcache.site._election import Durable
from frumitcache.site._messages import (
    Bulk,
    ErrorReply,
    FetchRequest,
    Have,
    Lookup,
    MemberInfo,
    ObjectInfo,
)

log = get_logger("site")

Addr = tuple[Any, ...]


class SiteHooks:
    """What the agent plugs into a :class:`SiteNode`; override what you need.

    Hooks run inside the node's nursery and must not block for long.
    """

    async def on_fetch_request(self, sender: str, request: FetchRequest) -> ObjectInfo | ErrorReply:
        """This node is the seeder and ``sender`` wants ``request.url``: start (or join) the
        single-flight origin fetch in the agent's own nursery and return at once with what is
        known now (``node.catalogue.info(url, fetching=True)``); progress then goes out through
        :meth:`SiteNode.announce_chunk` and friends."""
        return ErrorReply(request.request_id, "agent", "this node does not fetch")

    def have_report(self) -> list[Have]:
        """This node's holdings, sent to every new seeder (see :func:`split_have`)."""
        return []

    def on_seeder_change(self, seeder: tuple[str, int] | None) -> None:
        """The live seeder changed (``None``: no live seeder right now)."""

    def on_lease_renewed(self, until: float) -> None:
        """This node's seeder lease now runs to ``until`` (trio time): renewed, or won. A
        lease that lapsed and is renewed in the same term shows here, not as a change."""

    async def fetch_bulk(self, member: MemberInfo, bulk: Bulk) -> bytes:
        """The body ``member`` keeps for us under ``bulk.token`` (a message too large for a
        frame, :mod:`._bulk`), from its peer port (:meth:`SiteNode.bulk_body` there); at most
        ``bulk.size`` bytes. Raise :class:`~frumitcache.errors.PeerError` if it cannot."""
        raise PeerError("this node cannot fetch bulk bodies (no peer port client)")


@dataclass(slots=True)
class Pending:
    """An outstanding request: what was asked, and of whom (a reply from anyone else, or about
    anything else, is dropped)."""

    channel: trio.MemorySendChannel[ObjectInfo | ErrorReply]
    request: Lookup | FetchRequest
    asked: set[str]

    def matches(self, sender: str, reply: ObjectInfo | ErrorReply) -> str | None:
        """``None`` if ``reply`` answers this request, else the drop reason."""
        if sender not in self.asked:
            return "reply-not-from-seeder"
        if isinstance(reply, ErrorReply):
            return None
        url = self.request.url
        manifest = reply.manifest
        if reply.url != url or (manifest is not None and manifest.url != url):
            return "reply-wrong-url"
        sha256 = self.request.sha256 if isinstance(self.request, FetchRequest) else None
        if sha256 is not None and manifest is not None and manifest.digest not in (None, sha256):
            return "reply-wrong-digest"
        return None


@dataclass(frozen=True, slots=True)
class SiteStatistics:
    """Counters and state of a :class:`SiteNode` (what ``frumitcache status`` shows).

    ``dropped`` counts frames and messages dropped, per reason: the codec's
    (:data:`~._codec.REASONS`: ``bad-mac``, ``garbage``, ``replay``, ``stale``, ...) and the
    driver's (``not-from-seeder``: an announcement from a node that is not our seeder,
    ``not-for-seeder``: catalogue input while we are not the seeder, ``reply-unsolicited``: a
    reply to no outstanding request, ``reply-not-from-seeder``, ``reply-wrong-url``,
    ``reply-wrong-digest``: a reply that does not answer what we asked, ``subscriber-full``,
    ``too-large-out``: a message too large even for a bulk body, ``bulk-unavailable``: a bulk
    body its sender's peer port did not serve, ``bulk-mismatch``: one that was not the body
    named, ``socket-error``, ``multicast-v4-unavailable``, ...).
    """

    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    dropped: dict[str, int]
    send_errors: int
    requests_served: int
    elections_won: int
    term: int
    seeder: tuple[str, int] | None
    members: int
    role: str
    electorate: int
    #: Messages too large for a frame sent as a Bulk frame (bodies over the peer port), and
    #: bodies fetched from others.
    bulk_out: int = 0
    bulk_in: int = 0


def member_from_config(
    cfg: Config, *, node_id: str, ram_bytes: int = 0, free_disk_bytes: int = 0
) -> MemberInfo:
    """What this node advertises, from its config (``node_id`` is ``node.name`` or the host
    name, resolved by the caller; RAM and free disk are measured by the caller)."""
    return MemberInfo(
        node_id=node_id,
        address=cfg.node.address,
        control_port=cfg.site.control_port,
        peer_port=cfg.site.peer_port,
        swarm_port=cfg.swarm.port,
        priority=cfg.node.priority,
        model=cfg.node.model,
        ram_bytes=ram_bytes,
        free_disk_bytes=free_disk_bytes,
        link_mbit=cfg.node.link_mbit,
        wired=cfg.node.wired,
    )


def parse_peer(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``v6addr`` or ``[v6addr]:port`` -> ``(host, port)``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
        return host, port
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        return host, int(port_text)
    return text, default_port


def family_of(address: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def control_socket(site: SiteConfig, family: socket.AddressFamily) -> trio.socket.SocketType:
    """The node's unicast UDP socket (not bound yet: :func:`bind_control`)."""
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    if site.discovery and family == socket.AF_INET6:
        # The IPv6 beacon socket binds [::]:port (a link-local group cannot be bound
        # without a scope), which Linux allows beside this one only if both reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


async def bind_control(sock: trio.socket.SocketType, address: str, port: int) -> int:
    """Bind the control socket; the port bound (``port`` 0: any)."""
    try:
        await sock.bind((address, port))
    except OSError as exc:
        raise ConfigError(
            f"site.control_port: cannot bind UDP {address} port {port}: {exc.strerror or exc}"
        ) from None
    return int(sock.getsockname()[1])


def load_durable(path: Path | None) -> Durable | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            return None  # damaged: as any unreadable file, start as a new node
        voted_for = data.get("voted_for")
        return Durable(
            int(data["term"]),
            int(data["voted_term"]),
            voted_for if isinstance(voted_for, str) else None,
            # Rule 4 of the election counts majorities over at least this many for a while
            # after a restart (it was saved but not read back before).
            electorate=max(0, int(data.get("electorate", 0))),
            # A stretched promise may outlive the restart (election rule 4); older files
            # have none.
            promised_s=max(0.0, float(data.get("promised_s", 0.0))),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_durable(path: Path, durable: Durable) -> None:
    """Atomically write the election's durable state (rare: once per vote or term, and when
    a stretched lease is first promised or runs out)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(dataclasses.asdict(durable), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def open_multicast(
    site: SiteConfig,
    sock: trio.socket.SocketType,
    address: str,
    port: int,
    dropped: Counter[str],
) -> tuple[list[trio.socket.SocketType], list[Addr]]:
    """Join the beacon groups of the family of ``sock`` (bound to ``address``:``port``),
    best effort: a group that cannot be joined is logged and counted in ``dropped``.
    Returns the sockets to receive on and the group addresses to send to."""
    family = sock.family
    socks: list[trio.socket.SocketType] = []
    groups: list[Addr] = []
    if family == socket.AF_INET and site.multicast_v4:
        group = site.multicast_v4
        s = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(AttributeError, OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await s.bind((group, port))
            mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(address))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            socks.append(s)
            groups.append((group, port))
        except OSError as exc:
            s.close()
            dropped["multicast-v4-unavailable"] += 1
            log.warning("site.multicast-unavailable", family="ipv4", group=group, detail=str(exc))
    if family == socket.AF_INET6 and site.multicast_v6:
        group = site.multicast_v6
        s = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(AttributeError, OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await s.bind(("::", port))
            mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            socks.append(s)
            groups.append((group, port, 0, 0))
        except OSError as exc:
            s.close()
            dropped["multicast-v6-unavailable"] += 1
            log.warning("site.multicast-unavailable", family="ipv6", group=group, detail=str(exc))
    return socks, groups


async def resolve_peers(
    site: SiteConfig, family: socket.AddressFamily, me: tuple[str, int]
) -> list[Addr]:
    """The addresses of ``site.peers`` (each resolved once; unresolvable ones are logged and
    skipped), without this node's own ``me``."""
    out: list[Addr] = []
    for peer in site.peers:
        host, port = parse_peer(peer, site.control_port)
        try:
            infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("site.peer-unresolved", peer=peer, detail=str(exc))
            continue
        for info in infos[:1]:
            addr = info[4]
            if (addr[0], addr[1]) != me:
                out.append(addr)
    return out
