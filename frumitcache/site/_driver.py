"""The trio driver of the site control plane: sockets, one timer, routing. No decisions.

:class:`SiteNode` owns one UDP socket on ``node.address:site.control_port`` (unicast to
members and static peers) and, when discovery is on, a socket per multicast group (IPv4 and
IPv6, each optional: a group that cannot be joined is logged and counted, never fatal). Every
frame goes through the :class:`~._codec.FrameCodec`; frames it rejects are dropped and
counted per reason in :meth:`SiteNode.statistics`. Membership and election decisions are the
:class:`~._core.SiteCore`'s, fed with ``trio.current_time()``; the driver re-arms one deadline
from ``next_deadline()``. While this node is the seeder it keeps the site
:class:`~._catalogue.Catalogue` and answers lookups from it; fetch requests go to the agent's
:class:`SiteHooks`.

What the agent wires (see also :class:`SiteHooks`):

- ``await nursery.start(node.run)`` -> ``(address, port)`` bound;
- ``node.seeder()``, ``node.is_seeder()`` (the fetch path checks it before every origin
  request and between chunks: a fenced seeder must stop), ``node.members()``;
- ``await node.request(FetchRequest(0, url, sha256))`` -> :class:`ObjectInfo` or
  :class:`ErrorReply` from the seeder (answered locally when this node is the seeder);
- ``node.open_subscription()``: a channel of the seeder's :class:`ChunkAnnounce`,
  :class:`ObjectAnnounce` and :class:`FetchFailed`;
- ``node.announce_chunk(...)`` / ``node.announce_object(...)`` / ``node.announce_failure(...)``
  as chunks complete (the seeder broadcasts, a member tells the seeder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import secrets
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from frumitcache.config import Config, SiteConfig
from frumitcache.errors import (
    ConfigError,
    FrumitcacheError,
    NotSeederError,
    OriginStatusError,
    PeerError,
)
from frumitcache.site._catalogue import Catalogue
from frumitcache.site._codec import FrameCodec, FrameRejected, derive_mac_key
from frumitcache.site._core import SiteCore, Timings
from frumitcache.site._election import Durable, Outgoing, Role
from frumitcache.site._messages import (
    ChunkAnnounce,
    ErrorReply,
    FetchFailed,
    FetchRequest,
    Have,
    Lookup,
    MemberInfo,
    Message,
    ObjectAnnounce,
    ObjectInfo,
    ObjectManifest,
)

log = logging.getLogger("frumitcache.site")

Announcement = ChunkAnnounce | ObjectAnnounce | FetchFailed
_Addr = tuple[Any, ...]
_RECV_SIZE = 65536


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


@dataclass(slots=True)
class _Pending:
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
    ``too-large-out``, ``socket-error``, ``multicast-v4-unavailable``, ...).
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


def _family(address: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def load_durable(path: Path | None) -> Durable | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        voted_for = data.get("voted_for")
        return Durable(
            int(data["term"]),
            int(data["voted_term"]),
            voted_for if isinstance(voted_for, str) else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_durable(path: Path, durable: Durable) -> None:
    """Atomically write the election's durable state (rare: once per vote or term)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(dataclasses.asdict(durable), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SiteNode:
    """One node's control plane over real sockets.

    ``me`` is what this node advertises; ``me.control_port`` 0 binds any port (tests). The
    clock is trio's (``trio.current_time``), the wall clock (frame timestamps) ``wall_clock``.
    """

    def __init__(
        self,
        site: SiteConfig,
        me: MemberInfo,
        site_key: bytes,
        *,
        hooks: SiteHooks | None = None,
        durable_path: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        request_retry_s: float = 0.25,
    ) -> None:
        self.site = site
        self.me = me
        self.hooks = hooks or SiteHooks()
        self.durable_path = durable_path
        self._wall = wall_clock
        self._retry = request_retry_s
        self.codec = FrameCodec(
            derive_mac_key(site_key, site.name),
            me.node_id,
            boot=secrets.randbits(63),
            max_skew_s=site.max_clock_skew_s,
        )
        self.timings = Timings.from_config(site)
        self.solo = not site.peers and not site.discovery
        self.catalogue = Catalogue()
        self._core: SiteCore | None = None
        self._sock: trio.socket.SocketType | None = None
        self._mcast: list[_Addr] = []
        self._static: list[_Addr] = []
        self._last_addr: dict[str, _Addr] = {}
        self._wakeup = trio.Event()
        self._pending: dict[int, _Pending] = {}
        self._subscribers: list[trio.MemorySendChannel[Announcement]] = []
        self._nursery: trio.Nursery | None = None
        self._last_seeder: tuple[str, int] | None = None
        self._last_durable: Durable | None = None
        self._dropped: Counter[str] = Counter()
        self._frames_in = self._frames_out = self._bytes_in = self._bytes_out = 0
        self._send_errors = 0
        self._served = 0
        self._serving: set[tuple[str, int]] = set()
        self._catalogue_term = -1
        self._ready = trio.Event()
        #: Send a Bye on shutdown (tests clear it to look like a crash).
        self.say_goodbye = True

    # --- public queries -----------------------------------------------------------------------

    def _now(self) -> float:
        return trio.current_time()

    def members(self) -> tuple[MemberInfo, ...]:
        """Alive members, this node first."""
        return self._core.members(self._now()) if self._core else (self.me,)

    def seeder(self) -> tuple[str, int] | None:
        """``(node id, term)`` of the live seeder, or ``None`` while there is none."""
        return self._core.seeder(self._now()) if self._core else None

    def is_seeder(self) -> bool:
        """True only while this node holds a live seeder lease: check before fetching."""
        return self._core is not None and self._core.is_seeder(self._now())

    def statistics(self) -> SiteStatistics:
        core = self._core
        return SiteStatistics(
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
            dropped=dict(self._dropped),
            send_errors=self._send_errors,
            requests_served=self._served,
            elections_won=core.election.elections_won if core else 0,
            term=core.election.term if core else 0,
            seeder=self.seeder(),
            members=len(self.members()),
            role=core.election.role.value if core else "follower",
            electorate=core.election.durable.electorate if core else 1,
        )

    async def wait_seeder(self) -> tuple[str, int]:
        """Until there is a live seeder (bound it with a cancel scope)."""
        while True:
            seeder = self.seeder()
            if seeder is not None:
                return seeder
            await trio.sleep(0.05)

    # --- running ------------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        family = _family(self.me.address)
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        if self.site.discovery and family == socket.AF_INET6:
            # The IPv6 beacon socket binds [::]:port (a link-local group cannot be bound
            # without a scope), which Linux allows beside this one only if both reuse.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        mcast_socks: list[trio.socket.SocketType] = []
        try:
            try:
                await sock.bind((self.me.address, self.me.control_port))
            except OSError as exc:
                raise ConfigError(
                    f"site.control_port: cannot bind UDP {self.me.address} port "
                    f"{self.me.control_port}: {exc.strerror or exc}"
                ) from None
            port = sock.getsockname()[1]
            self.me = dataclasses.replace(self.me, control_port=port)
            self._sock = sock
            for peer in self.site.peers:
                await self._add_static(peer, family)
            if self.site.discovery:
                mcast_socks = await self._open_multicast(family, port)
            self._core = SiteCore(
                self.me,
                self.timings,
                now=self._now(),
                solo=self.solo,
                unicast_beacons=not self.site.discovery,
                durable=load_durable(self.durable_path),
            )
            self._last_durable = self._core.durable
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._recv_loop, sock)
                for ms in mcast_socks:
                    nursery.start_soon(self._recv_loop, ms)
                nursery.start_soon(self._timer_loop)
                self._ready.set()
                task_status.started((self.me.address, port))
        finally:
            self._nursery = None
            if self._core is not None and self.say_goodbye:
                with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                    await self._send_all(self._core.leave(self._now()))
            for s in (sock, *mcast_socks):
                s.close()
            for channel in self._subscribers:
                channel.close()

    async def _add_static(self, peer: str, family: socket.AddressFamily) -> None:
        host, port = parse_peer(peer, self.site.control_port)
        try:
            infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("site: cannot resolve static peer %s: %s", peer, exc)
            return
        for info in infos[:1]:
            addr = info[4]
            if (addr[0], addr[1]) != (self.me.address, self.me.control_port):
                self._static.append(addr)

    async def _open_multicast(
        self, family: socket.AddressFamily, port: int
    ) -> list[trio.socket.SocketType]:
        """Join the beacon groups of this node's address family (best effort, counted)."""
        socks: list[trio.socket.SocketType] = []
        assert self._sock is not None
        if family == socket.AF_INET and self.site.multicast_v4:
            group = self.site.multicast_v4
            s = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with contextlib.suppress(AttributeError, OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                await s.bind((group, port))
                mreq = struct.pack(
                    "4s4s", socket.inet_aton(group), socket.inet_aton(self.me.address)
                )
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                self._sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.me.address)
                )
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
                socks.append(s)
                self._mcast.append((group, port))
            except OSError as exc:
                s.close()
                self._dropped["multicast-v4-unavailable"] += 1
                log.warning("site: IPv4 multicast %s unavailable: %s", group, exc)
        if family == socket.AF_INET6 and self.site.multicast_v6:
            group = self.site.multicast_v6
            s = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with contextlib.suppress(AttributeError, OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                await s.bind(("::", port))
                mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", 0)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
                socks.append(s)
                self._mcast.append((group, port, 0, 0))
            except OSError as exc:
                s.close()
                self._dropped["multicast-v6-unavailable"] += 1
                log.warning("site: IPv6 multicast %s unavailable: %s", group, exc)
        return socks

    async def _timer_loop(self) -> None:
        assert self._core is not None
        while True:
            with trio.move_on_at(self._core.next_deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = self._now()
            await self._send_all(self._core.on_timer(now))
            await self._after_event(now)

    async def _recv_loop(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, addr = await sock.recvfrom(_RECV_SIZE)
            except OSError:  # ICMP errors surface here on some systems; never fatal
                self._dropped["socket-error"] += 1
                continue
            self._bytes_in += len(data)
            try:
                sender, msg = self.codec.decode(data, wall=self._wall())
            except FrameRejected as exc:
                self._dropped[exc.reason] += 1
                continue
            self._frames_in += 1
            self._last_addr[sender] = addr
            await self._handle(sender, msg)

    # --- routing ------------------------------------------------------------------------------

    async def _handle(self, sender: str, msg: Message) -> None:
        assert self._core is not None
        now = self._now()
        await self._send_all(self._core.receive(sender, msg, now))
        if isinstance(msg, Lookup | FetchRequest):
            # A retransmission of a request still being served gets the one reply.
            if (sender, msg.request_id) not in self._serving:
                assert self._nursery is not None
                self._serving.add((sender, msg.request_id))
                self._nursery.start_soon(self._serve_remote, sender, msg)
        elif isinstance(msg, ObjectInfo | ErrorReply):
            pending = self._pending.get(msg.request_id)
            problem = "reply-unsolicited" if pending is None else pending.matches(sender, msg)
            if problem is not None:
                self._dropped[problem] += 1
            else:
                assert pending is not None
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    pending.channel.send_nowait(msg)
        elif isinstance(msg, ChunkAnnounce | ObjectAnnounce | FetchFailed | Have):
            self._on_catalogue_message(sender, msg, now)
        await self._after_event(now)
        self._wakeup.set()  # the deadline may have moved

    def _on_catalogue_message(self, sender: str, msg: Message, now: float) -> None:
        assert self._core is not None
        seeder = self._core.seeder(now)
        # Reports count from the moment we won the term, before the first lease round is
        # acked: members send their Have as soon as they follow us.
        if self._core.election.role is Role.SEEDER:
            # Members may only speak for themselves: no injecting holders for others.
            if isinstance(msg, ChunkAnnounce) and msg.holder == sender:
                if self.catalogue.add_chunk(msg.url, msg.index, msg.digest, msg.chunk_size):
                    self.catalogue.add_holder(msg.digest, sender)
            elif isinstance(msg, ObjectAnnounce) and msg.holder == sender:
                self.catalogue.put_manifest(msg.manifest)
                for digest in msg.manifest.chunks:
                    self.catalogue.add_holder(digest, sender)
            elif isinstance(msg, Have) and msg.node_id == sender:
                self.catalogue.apply_have(msg)
            else:
                self._dropped["not-for-seeder"] += 1
            return
        if isinstance(msg, Announcement) and seeder is not None and seeder[0] == sender:
            self._publish(msg)
        else:
            self._dropped["not-from-seeder"] += 1

    def _publish(self, msg: Announcement) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(msg)
            except trio.WouldBlock:
                self._dropped["subscriber-full"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(channel)

    async def _after_event(self, now: float) -> None:
        """Follow-ups of any state change: durable state, departures, seeder change."""
        core = self._core
        assert core is not None
        durable = core.durable
        if durable != self._last_durable and self.durable_path is not None:
            try:
                save_durable(self.durable_path, durable)
            except OSError as exc:
                log.warning("site: cannot save election state: %s", exc)
        self._last_durable = durable
        for node in core.membership.take_departures():
            self.catalogue.remove_member(node)
        election = core.election
        if election.role is Role.SEEDER and self._catalogue_term != election.term:
            # A new term of ours: a fresh catalogue, rebuilt from our own holdings and the
            # members' Have reports as they start following us.
            self._catalogue_term = election.term
            self.catalogue = Catalogue()
            for have in self.hooks.have_report():
                self.catalogue.apply_have(dataclasses.replace(have, node_id=self.me.node_id))
        seeder = core.seeder(now)
        if seeder == self._last_seeder:
            return
        previous, self._last_seeder = self._last_seeder, seeder
        log.info("site %s: seeder %s (was %s)", self.site.name, seeder, previous)
        if seeder is not None and seeder[0] != self.me.node_id:
            reports = self.hooks.have_report()
            if previous is not None and previous[0] == self.me.node_id and len(self.catalogue):
                # We stepped down (partition healed): hand over what we knew.
                reports.append(Have(self.me.node_id, objects=self.catalogue.snapshot()))
            assert self._nursery is not None
            self._nursery.start_soon(self._send_haves, seeder, reports)
        self.hooks.on_seeder_change(seeder)

    async def _send_haves(self, seeder: tuple[str, int], reports: list[Have]) -> None:
        """Our holdings to a new seeder, repeated a few times (UDP may lose one; merging a
        report twice changes nothing) while it stays the seeder."""
        for delay in (0.0, 0.3, 1.0):
            await trio.sleep(delay)
            if self.seeder() != seeder:
                return
            await self._send_all([Outgoing(seeder[0], h) for h in reports])

    # --- sending ------------------------------------------------------------------------------

    def _targets(self, out: Outgoing) -> list[_Addr]:
        assert self._core is not None
        if out.to is None:
            return [*self._mcast, *self._static]
        info = self._core.membership.info(out.to)
        if info is not None:
            return [(info.address, info.control_port)]
        addr = self._last_addr.get(out.to)
        return [addr] if addr is not None else []

    async def _send_all(self, outgoing: list[Outgoing]) -> None:
        if self._sock is None:
            return
        sent: set[tuple[_Addr, int]] = set()
        for out in outgoing:
            frame: bytes | None = None
            for addr in self._targets(out):
                if (addr, id(out.msg)) in sent:
                    continue
                sent.add((addr, id(out.msg)))
                if frame is None:
                    try:
                        frame = self.codec.encode(out.msg, to=out.to, wall=self._wall())
                    except FrameRejected:
                        self._dropped["too-large-out"] += 1
                        break
                try:
                    await self._sock.sendto(frame, addr)
                except OSError:
                    self._send_errors += 1
                    continue
                self._frames_out += 1
                self._bytes_out += len(frame)

    async def send(self, to: str, msg: Message) -> None:
        """Send ``msg`` to member ``to`` (no reply expected)."""
        await self._send_all([Outgoing(to, msg)])

    # --- catalogue API for the agent ----------------------------------------------------------

    async def request(
        self, msg: Lookup | FetchRequest, *, timeout_s: float = 2.0
    ) -> ObjectInfo | ErrorReply:
        """Ask the seeder; resent every ``request_retry_s`` until answered or ``timeout_s``.

        Raises :class:`~frumitcache.errors.PeerError` when there is no live seeder or it does
        not answer in time (the caller may then fall back to the origin if allowed).
        """
        # Unpredictable ids: an outsider cannot pre-compute the id of a reply to forge.
        rid = secrets.randbits(64)
        while rid in self._pending:
            rid = secrets.randbits(64)
        msg = dataclasses.replace(msg, request_id=rid)
        if self.seeder() is None:
            raise PeerError("no live seeder in the site")
        send, receive = trio.open_memory_channel[ObjectInfo | ErrorReply](1)
        pending = self._pending[rid] = _Pending(send, msg, set())
        try:
            with trio.move_on_after(timeout_s):
                while True:
                    # Asked afresh on every try: the seeder may fail over meanwhile.
                    seeder = self.seeder()
                    if seeder is not None and seeder[0] == self.me.node_id:
                        return await self._serve(self.me.node_id, msg)
                    if seeder is not None:
                        pending.asked.add(seeder[0])
                        await self.send(seeder[0], msg)
                    with trio.move_on_after(self._retry):
                        return await receive.receive()
            raise PeerError(f"the seeder did not answer within {timeout_s}s")
        finally:
            del self._pending[rid]

    async def _serve_remote(self, sender: str, msg: Lookup | FetchRequest) -> None:
        try:
            reply = await self._serve(sender, msg)
            await self.send(sender, reply)
        finally:
            self._serving.discard((sender, msg.request_id))

    async def _serve(self, sender: str, msg: Lookup | FetchRequest) -> ObjectInfo | ErrorReply:
        if not self.is_seeder():
            seeder = self.seeder()
            return ErrorReply(
                msg.request_id,
                NotSeederError.code,
                f"not the seeder (seeder: {seeder[0] if seeder else None})",
            )
        self._served += 1
        if isinstance(msg, Lookup):
            return self.catalogue.info(msg.url, request_id=msg.request_id)
        try:
            reply = await self.hooks.on_fetch_request(sender, msg)
        except FrumitcacheError as exc:  # e.g. a URL outside the allow-list: the asker learns why
            status = exc.status if isinstance(exc, OriginStatusError) else 0
            return ErrorReply(msg.request_id, exc.code, str(exc), status)
        return dataclasses.replace(reply, request_id=msg.request_id)

    def resume_index(self, url: str) -> int:
        """Seeder: index of the first chunk of ``url`` that no alive member holds completely;
        an interrupted origin fetch resumes there with ``Range: bytes=index*chunk_size-``."""
        live = {m.node_id for m in self.members()}
        return self.catalogue.resume_index(url, live)

    def open_subscription(self, max_buffer: int = 1024) -> trio.MemoryReceiveChannel[Announcement]:
        """A channel of the seeder's announcements (and this node's own, when it is the
        seeder). Close it when done; a full channel drops (counted as ``subscriber-full``)."""
        send, receive = trio.open_memory_channel[Announcement](max_buffer)
        self._subscribers.append(send)
        return receive

    async def announce_chunk(self, url: str, index: int, digest: bytes, chunk_size: int) -> None:
        """Chunk ``index`` of ``url`` is complete here. The seeder records and broadcasts it to
        every alive member; a member tells the seeder it now holds it."""
        msg = ChunkAnnounce(url, index, digest, chunk_size, self.me.node_id)
        if self.is_seeder():
            if self.catalogue.add_chunk(url, index, digest, chunk_size):
                self.catalogue.add_holder(digest, self.me.node_id)
            self._publish(msg)
            await self._broadcast_members(msg)
        else:
            await self._to_seeder(msg)

    async def announce_object(self, manifest: ObjectManifest) -> None:
        """``manifest`` is complete here (the seeder also publishes it site-wide)."""
        msg = ObjectAnnounce(manifest, self.me.node_id)
        if self.is_seeder():
            self.catalogue.finish(manifest)
            for digest in manifest.chunks:
                self.catalogue.add_holder(digest, self.me.node_id)
            self._publish(msg)
            await self._broadcast_members(msg)
        else:
            await self._to_seeder(msg)

    async def announce_failure(self, url: str, code: str, message: str, status: int = 0) -> None:
        """The seeder's fetch of ``url`` failed: tell every waiting member."""
        msg = FetchFailed(url, code, message, status)
        self.catalogue.forget(url)
        self._publish(msg)
        if self.is_seeder():
            await self._broadcast_members(msg)

    async def _broadcast_members(self, msg: Message) -> None:
        assert self._core is not None
        ids = self._core.membership.alive_ids(self._now())
        await self._send_all([Outgoing(n, msg) for n in ids])

    async def _to_seeder(self, msg: Message) -> None:
        seeder = self.seeder()
        if seeder is not None:
            await self.send(seeder[0], msg)

    def update_self(self, **changes: Any) -> None:
        """Change advertised figures (``load``, ``free_disk_bytes``, ...) for the next beacon."""
        self.me = dataclasses.replace(self.me, **changes)
        if self._core is not None:
            self._core.update_self(self.me)

    async def wait_ready(self) -> None:
        await self._ready.wait()
