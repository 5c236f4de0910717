"""A site node's wire, both ways, for the driver: frames out over UDP for what fits a frame, a
:class:`~._messages.Bulk` frame and the node's :class:`~._bulk.Outbox` for what does not;
and in, the bodies that Bulk frames name, fetched from their senders' peer ports through the
agent's :meth:`~._setup.SiteHooks.fetch_bulk` (:mod:`._bulk`). Counts what it sent, took and
dropped; decides nothing else."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

from frumitcache._log import get_logger
from frumitcache.errors import PeerError
from frumitcache.site._bulk import Outbox, open_bulk
from frumitcache.site._codec import FrameCodec, FrameRejected, encode_body
from frumitcache.site._election import Outgoing
from frumitcache.site._messages import Bulk, MemberInfo, Message
from frumitcache.site._setup import SiteHooks

log = get_logger("site")

#: Longest wait for a bulk body (a few MB over the LAN; the asker's request may retry).
BULK_TIMEOUT_S = 10.0

Addr = tuple[Any, ...]


class FrameSender:
    """Sends :class:`~._election.Outgoing` messages on ``sock`` (set once it is bound) to the
    addresses ``targets`` names; ``now`` is the driver's clock (outbox expiry), ``wall`` stamps
    frames."""

    def __init__(
        self,
        codec: FrameCodec,
        *,
        targets: Callable[[Outgoing], list[Addr]],
        now: Callable[[], float],
        wall: Callable[[], float],
        dropped: Counter[str],
    ) -> None:
        self.codec = codec
        # A random first token: a token of an earlier boot names nothing after a restart.
        self.outbox = Outbox(first_token=secrets.randbits(62))
        self.sock: trio.socket.SocketType | None = None
        self._targets = targets
        self._now = now
        self._wall = wall
        self._dropped = dropped
        self.frames_out = self.bytes_out = self.send_errors = 0
        #: Messages that went as a Bulk frame (their bodies over the peer port).
        self.bulk_out = 0

    async def send_all(self, outgoing: list[Outgoing]) -> None:
        if self.sock is None:
            return
        sent: set[tuple[Addr, int]] = set()
        for out in outgoing:
            frame: bytes | None = None
            for addr in self._targets(out):
                if (addr, id(out.msg)) in sent:
                    continue
                sent.add((addr, id(out.msg)))
                if frame is None:
                    frame = self._encode(out.to, out.msg)
                    if frame is None:
                        self._dropped["too-large-out"] += 1
                        break
                try:
                    await self.sock.sendto(frame, addr)
                except OSError:
                    self.send_errors += 1
                    continue
                self.frames_out += 1
                self.bytes_out += len(frame)

    def _encode(self, to: str | None, msg: Message) -> bytes | None:
        try:
            return self.codec.encode(msg, to=to, wall=self._wall())
        except FrameRejected:
            pass
        if to is None or isinstance(msg, Bulk):
            return None  # broadcasts are beacons and byes: always small
        stub = self.outbox.put(encode_body(msg), self._now())
        if stub is None:
            return None
        self.bulk_out += 1
        return self.codec.encode(stub, to=to, wall=self._wall())


class BulkTaker:
    """Fetches the bodies Bulk frames name (one fetch per sender and token at a time)."""

    def __init__(self, hooks: SiteHooks, dropped: Counter[str]) -> None:
        self._hooks = hooks
        self._dropped = dropped
        self._taking: set[tuple[str, int]] = set()
        self.taken = 0

    def wanted(self, sender: str, bulk: Bulk) -> bool:
        """False while the same body is being fetched already (a retried request's reply)."""
        return (sender, bulk.token) not in self._taking

    async def take(self, sender: str, bulk: Bulk, info: MemberInfo | None) -> Message | None:
        """The message of the body, or ``None`` (counted) if it could not be had."""
        self._taking.add((sender, bulk.token))
        try:
            if info is None:
                raise PeerError(f"{sender} is not a member")
            with trio.fail_after(BULK_TIMEOUT_S):
                msg = open_bulk(bulk, await self._hooks.fetch_bulk(info, bulk))
        except FrameRejected as exc:
            self._dropped[exc.reason] += 1
            return None
        except (PeerError, trio.TooSlowError) as exc:
            self._dropped["bulk-unavailable"] += 1
            log.info("site.bulk-unavailable", sender=sender, size=bulk.size, detail=str(exc))
            return None
        finally:
            self._taking.discard((sender, bulk.token))
        self.taken += 1
        return msg
