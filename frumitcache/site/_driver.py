"""The trio driver of the site control plane: sockets, one timer, routing. No decisions.

:class:`SiteNode` owns one UDP socket on ``node.address:site.control_port`` (unicast to
members and static peers) and, when discovery is on, a socket per multicast group (IPv4 and
IPv6, each optional: a group that cannot be joined is logged and counted, never fatal). Every
frame goes through the :class:`~._codec.FrameCodec` (out, and a message too large for a frame
via the peer port: :mod:`._transport`); rejected ones are counted in :meth:`statistics`.
Membership and election decisions are the :class:`~._core.SiteCore`'s, fed with
``trio.current_time()``; the driver re-arms one deadline from ``next_deadline()``. Catalogue
decisions (what the seeder records, who is told what, the ``Have`` reports to a new seeder) are
the :class:`~._policy.CataloguePolicy`'s, carried out here; fetch requests go to the agent's
:class:`SiteHooks`. Waiting is on events (the wake-up of the timer task, the seeder becoming
known), never on a polling loop.

What the agent wires (see also :class:`SiteHooks`):

- ``await nursery.start(node.run)`` -> ``(address, port)`` bound;
- ``node.seeder()``, ``node.members()``, ``node.is_seeder()`` and ``node.lease_until()`` (a
  seeder's fence: it must stop fetching the moment its lease is gone);
- ``await node.request(FetchRequest(0, url, sha256))`` -> :class:`ObjectInfo` or
  :class:`ErrorReply` from the seeder (answered locally when this node is the seeder);
- ``node.open_subscription()``: the seeder's announcements (chunk, object, failure);
- ``node.wait_catalogue_change()``: until the catalogue takes a member's message;
- ``node.announce_chunk/object/failure(...)`` (the seeder broadcasts, a member tells it).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from frumitcache._log import get_logger
from frumitcache.config import SiteConfig
from frumitcache.errors import FrumitcacheError, NotSeederError, origin_status
from frumitcache.site._asking import Answered, Asker
from frumitcache.site._catalogue import Catalogue
from frumitcache.site._codec import FrameCodec, FrameRejected, derive_mac_key
from frumitcache.site._core import SiteCore, Timings
from frumitcache.site._election import Durable, Outgoing
from frumitcache.site._evidence import Probe
from frumitcache.site._listeners import Listeners
from frumitcache.site._messages import (
    Bulk,
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
from frumitcache.site._policy import (
    Action,
    Announcement,
    CataloguePolicy,
    Drop,
    Publish,
    Reports,
    SeederChanged,
    View,
)
from frumitcache.site._probe import peer_port_answer, probe_seeder
from frumitcache.site._setup import (
    Addr,
    SiteHooks,
    SiteStatistics,
    bind_control,
    control_socket,
    family_of,
    load_durable,
    open_multicast,
    resolve_peers,
    save_durable,
)
from frumitcache.site._transport import BulkTaker, FrameSender

__all__ = ["SiteNode"]

log = get_logger("site")

_RECV_SIZE = 65536


class SiteNode:
    """One node's control plane over real sockets. ``me`` is what this node advertises
    (``me.control_port`` 0 binds any port: tests); ``wall_clock`` stamps frames. With
    ``probe_seeder`` a late seeder's peer port is probed (election rule 8): only for a node
    whose own peer port listens on ``me.address`` for as long as it runs (an agent's)."""

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
        probe_seeder: bool = False,
    ) -> None:
        self.site = site
        self.me = me
        self.hooks = hooks or SiteHooks()
        self.durable_path = durable_path
        self._wall = wall_clock
        self._answered = Answered()
        self.probe_seeder = probe_seeder
        self.codec = FrameCodec(
            derive_mac_key(site_key, site.name),
            me.node_id,
            boot=secrets.randbits(63),
            max_skew_s=site.max_clock_skew_s,
        )
        self.timings = Timings.from_config(site)
        self.solo = not site.peers and not site.discovery
        self.policy = CataloguePolicy(me.node_id, self.hooks.have_report)
        self._core: SiteCore | None = None
        self._mcast: list[Addr] = []
        self._static: list[Addr] = []
        self._last_addr: dict[str, Addr] = {}
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._seeder_known = trio.Event()
        self._last_durable: Durable | None = None
        self._lease_seen = float("-inf")  # our lease's end, as the hooks last heard it
        self._dropped: Counter[str] = Counter()
        self._listeners = Listeners(self._dropped)
        self._frames_in = self._bytes_in = 0
        self._sender = FrameSender(
            self.codec,
            targets=self._targets,
            now=self._now,
            wall=wall_clock,
            dropped=self._dropped,
        )
        self._taker = BulkTaker(self.hooks, self._dropped)
        self._served = 0
        self._asker = Asker(
            request_retry_s, me.node_id, self.seeder, self.send, self._serve, self._dropped
        )
        self._serving: set[tuple[str, int]] = set()
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

    def hears_site(self) -> bool:
        """Does this node hear its site lately (a majority, or a seeder naming itself)?"""
        return self._core is not None and self._core.hears_site(self._now())

    def lease_until(self) -> float:
        """trio time at which our seeder lease runs out unless renewed (-inf: none held)."""
        return self._core.lease_until() if self._core is not None else float("-inf")

    async def listening(self, node: str) -> bool | None:
        """Does a process of member ``node`` live? Its peer port, probed at the address its
        frames come from: True accepted, False refused (gone), None no answer or unknown."""
        info = self._core.membership.info(node) if self._core else None
        if self._core is None or info is None:
            return None
        source, timeout_s = self._last_addr.get(node), self._core.timings.lease_s / 3
        return await peer_port_answer(info.address, info.peer_port, source, timeout_s=timeout_s)

    def statistics(self) -> SiteStatistics:
        core = self._core
        return SiteStatistics(
            frames_in=self._frames_in,
            frames_out=self._sender.frames_out,
            bytes_in=self._bytes_in,
            bytes_out=self._sender.bytes_out,
            dropped=dict(self._dropped),
            send_errors=self._sender.send_errors,
            bulk_out=self._sender.bulk_out,
            bulk_in=self._taker.taken,
            requests_served=self._served,
            elections_won=core.election.elections_won if core else 0,
            term=core.election.term if core else 0,
            seeder=self.seeder(),
            members=len(self.members()),
            role=core.election.role.value if core else "follower",
            electorate=core.election.durable.electorate if core else 1,
        )

    @property
    def catalogue(self) -> Catalogue:
        """The site catalogue (meaningful while this node is the seeder)."""
        return self.policy.catalogue

    async def wait_seeder(self) -> tuple[str, int]:
        """Until there is a live seeder (bound it with a cancel scope)."""
        while True:
            seeder = self.seeder()
            if seeder is not None:
                return seeder
            if self._seeder_known.is_set():  # it was, until its lease ran out
                self._seeder_known = trio.Event()
            await self._seeder_known.wait()

    # --- running ------------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        family = family_of(self.me.address)
        sock = control_socket(self.site, family)
        mcast_socks: list[trio.socket.SocketType] = []
        try:
            port = await bind_control(sock, self.me.address, self.me.control_port)
            self.me = dataclasses.replace(self.me, control_port=port)
            self._sender.sock = sock
            self._static = await resolve_peers(self.site, family, (self.me.address, port))
            if self.site.discovery:
                mcast_socks, self._mcast = await open_multicast(
                    self.site, sock, self.me.address, port, self._dropped
                )
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
                    await self._sender.send_all(self._core.leave(self._now()))
            for s in (sock, *mcast_socks):
                s.close()
            self._listeners.close()

    async def _timer_loop(self) -> None:
        assert self._core is not None
        while True:
            deadline = min(self._core.next_deadline(), self.policy.next_deadline())
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = self._now()
            await self._sender.send_all(self._core.on_timer(now))
            probe = self._core.take_probe(now)
            if probe is not None and self.probe_seeder and self._nursery is not None:
                self._nursery.start_soon(self._probe, probe)
            await self._after_event(now)
            await self._carry_out(self.policy.on_timer(now))

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
        await self._sender.send_all(self._core.receive(sender, msg, now))
        if isinstance(msg, Lookup | FetchRequest):
            # A retransmission of a request still being served gets the one reply.
            # One answered is not served again: a loaded seeder must not fall further behind.
            key = (sender, msg.request_id)
            answered, again = self._answered.copy_of(key, now)
            if again is not None:
                await self.send(sender, again)
            elif answered:
                self._dropped["request-copy"] += 1
            elif key not in self._serving:
                assert self._nursery is not None
                self._serving.add(key)
                self._nursery.start_soon(self._serve_remote, sender, msg)
        elif isinstance(msg, ObjectInfo | ErrorReply):
            self._asker.reply(sender, msg)
        elif isinstance(msg, Bulk) and self._taker.wanted(sender, msg):
            assert self._nursery is not None
            self._nursery.start_soon(self._take_bulk, sender, msg)
        elif isinstance(msg, ChunkAnnounce | ObjectAnnounce | FetchFailed | Have):
            await self._carry_out(self.policy.receive(sender, msg, self._view(now)))
            self._listeners.changed()
        await self._after_event(now)
        self._wakeup.set()  # the deadline may have moved

    async def _probe(self, probe: Probe) -> None:
        """Election rule 8: a refused connect at the late seeder's peer port voids the promise."""
        assert self._core is not None
        source = self._last_addr.get(probe.seeder)
        out = await probe_seeder(self._core, probe, source, now=self._now, wall=self._wall)
        if out is not None:
            await self._sender.send_all(out)
            await self._after_event(self._now())
            self._wakeup.set()

    async def _take_bulk(self, sender: str, bulk: Bulk) -> None:
        assert self._core is not None
        msg = await self._taker.take(sender, bulk, self._core.membership.info(sender))
        if msg is not None:
            await self._handle(sender, msg)

    def bulk_body(self, token: int) -> bytes | None:
        """A body this node put in its outbox (the peer port serves it to the recipient)."""
        return self._sender.outbox.get(token, self._now())

    def _view(self, now: float) -> View:
        assert self._core is not None
        return self._core.view(now)

    async def _carry_out(self, actions: list[Action]) -> None:
        """What the catalogue policy decided: send, publish, count, tell the agent."""
        out: list[Outgoing] = []
        for action in actions:
            if isinstance(action, Outgoing):
                out.append(action)
            elif isinstance(action, Publish):
                self._listeners.publish(action.msg)
            elif isinstance(action, Drop):
                self._dropped[action.reason] += 1
            elif isinstance(action, SeederChanged):
                seeder, previous = action.seeder, action.previous
                at = round(self._wall(), 3)  # wall time: to compare with other agents' logs
                log.info("site.seeder-changed", seeder=seeder, was=previous, at=at)
                self.hooks.on_seeder_change(seeder)
        await self._sender.send_all(out)

    async def _after_event(self, now: float) -> None:
        """Follow-ups of any state change: durable state, then the catalogue policy (departures,
        a new term of ours, a new seeder)."""
        core = self._core
        assert core is not None
        durable = core.durable
        if durable != self._last_durable and self.durable_path is not None:
            try:
                save_durable(self.durable_path, durable)
            except OSError as exc:
                log.warning("site.state-not-saved", detail=str(exc))
        self._last_durable = durable
        lease = core.lease_until()
        if lease > self._lease_seen:
            self.hooks.on_lease_renewed(lease)  # a held fetch goes on (no seeder change)
        self._lease_seen = lease
        view = self._view(now)
        if view.seeder is not None:
            self._seeder_known.set()
        departed = core.membership.take_departures()
        await self._carry_out(self.policy.on_view(view, now, departed))

    # --- sending ------------------------------------------------------------------------------

    def _targets(self, out: Outgoing) -> list[Addr]:
        assert self._core is not None
        if out.to is None:
            return [*self._mcast, *self._static]
        info = self._core.membership.info(out.to)
        if info is not None:
            return [(info.address, info.control_port)]
        addr = self._last_addr.get(out.to)
        return [addr] if addr is not None else []

    async def send(self, to: str, msg: Message) -> None:
        """Send ``msg`` to member ``to`` (no reply expected)."""
        await self._sender.send_all([Outgoing(to, msg)])

    # --- catalogue API for the agent ----------------------------------------------------------

    async def request(
        self, msg: Lookup | FetchRequest, *, timeout_s: float = 2.0
    ) -> ObjectInfo | ErrorReply:
        """Ask the seeder; resent every ``request_retry_s`` for a second, then less often,
        until answered or ``timeout_s``, which grows while the seeder does not answer
        (``_asking.Patience``).

        Raises :class:`~frumitcache.errors.PeerError` when there is no live seeder or it does
        not answer in time (the caller may then fall back to the origin if allowed).
        """
        return await self._asker.request(msg, timeout_s)

    async def _serve_remote(self, sender: str, msg: Lookup | FetchRequest) -> None:
        try:
            reply = await self._serve(sender, msg)
            self._answered.remember((sender, msg.request_id), reply, self._now())
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
        self.policy.asked(sender, msg.url, self._now())
        if isinstance(msg, Lookup):
            return self.policy.answer(sender, self.policy.lookup(msg), self._now())
        try:
            reply = await self.hooks.on_fetch_request(sender, msg)
        except FrumitcacheError as exc:  # e.g. a URL outside the allow-list: the asker learns why
            return ErrorReply(msg.request_id, exc.code, str(exc), *origin_status(exc))
        return self.policy.answer(sender, reply, self._now(), msg.request_id)

    def reports(self) -> Reports:
        """Seeder: who sent ``Have`` this term, and the seeder this node followed before."""
        return self.policy.reports(self._view(self._now()))

    def resume_index(self, url: str) -> int:
        """Seeder: the first chunk of ``url`` no alive member holds whole (fetches resume there)."""
        live = {m.node_id for m in self.members()}
        return self.catalogue.resume_index(url, live)

    def open_subscription(self, max_buffer: int = 1024) -> trio.MemoryReceiveChannel[Announcement]:
        """The seeder's announcements (ours too when seeder); full: drops, ``subscriber-full``."""
        return self._listeners.subscribe(max_buffer)

    async def wait_catalogue_change(self) -> None:
        """Until the catalogue takes a member's announcement or ``Have`` (not this node's own)."""
        await self._listeners.wait_changed()

    async def announce_chunk(self, url: str, index: int, digest: bytes, chunk_size: int) -> None:
        """Chunk ``index`` of ``url`` is whole here (the seeder broadcasts it, a member tells)."""
        msg = ChunkAnnounce(url, index, digest, chunk_size, self.me.node_id)
        await self._carry_out(self.policy.announce(msg, self._view(self._now())))

    async def announce_object(self, manifest: ObjectManifest) -> None:
        """``manifest`` is complete here (the seeder also publishes it site-wide)."""
        msg = ObjectAnnounce(manifest, self.me.node_id)
        await self._carry_out(self.policy.announce(msg, self._view(self._now())))

    async def announce_failure(self, url: str, exc: FrumitcacheError) -> None:
        """The seeder's fetch of ``url`` failed with ``exc``: tell every waiting member."""
        msg = FetchFailed(url, exc.code, str(exc), *origin_status(exc))
        await self._carry_out(self.policy.announce(msg, self._view(self._now())))

    def update_self(self, **changes: Any) -> None:
        """Change advertised figures (``load``, ``free_disk_bytes``, ...) for the next beacon."""
        self.me = dataclasses.replace(self.me, **changes)
        if self._core is not None:
            self._core.update_self(self.me)

    async def wait_ready(self) -> None:
        await self._ready.wait()
