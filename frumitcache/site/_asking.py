"""How a member asks its seeder and how a seeder hears a question twice: paced, so a loaded
seeder is not buried under copies of the questions it is already slow to answer.

Measured (issue 14, 100 agents on 2 cores): a herd's start and each new term make every member
ask the seeder at once. Each request used to be resent every 0.25 s until answered or 2 s,
each timed-out member asked again half a second later (up to 60 members failing in the same
second, every 2.5 s), and a copy that arrived after the seeder's reply was served anew. A
member's site then showed no progress for up to 27 s; at 60 s the fallback clock sends a
member to the origin (the whole object over the uplink again). :class:`Patience` and
:class:`Answered` are pure (time passed in); :class:`Asker` carries a member's requests out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import trio

from frumitcache.errors import PeerError
from frumitcache.site._messages import ErrorReply, FetchRequest, Lookup, Message, ObjectInfo
from frumitcache.site._setup import Pending

Reply = ObjectInfo | ErrorReply

#: A member's requests wait at most this many times the asked timeout (2 s: 8 s).
MAX_PATIENCE = 4.0
#: Resends of one request come every ``retry_s`` for this long, then back off to at most one
#: a second.
QUICK_S = 1.0
MAX_RESEND_S = 1.0
#: A copy of a question arriving this soon after its answer crossed the reply: no new reply.
CROSSED_S = 0.1
#: Answers are remembered this long (longer than any member's patience).
KEEP_S = 10.0


@dataclass(slots=True)
class Patience:
    """A member's patience with its seeder ``(node, term)``: each request that goes unanswered
    doubles the next one's timeout (up to :data:`MAX_PATIENCE` times what the caller asked),
    an answer brings it back to 1, and so does another seeder (a new one may be quick; a dead
    one is found by its leases, not by requests). Within a request, resends come every
    ``retry_s`` for :data:`QUICK_S`, then twice as far apart each time, at most
    :data:`MAX_RESEND_S`."""

    retry_s: float
    factor: float = 1.0
    seeder: tuple[str, int] | None = None

    def timeout(self, asked_s: float, seeder: tuple[str, int] | None) -> float:
        if seeder != self.seeder:
            self.seeder, self.factor = seeder, 1.0
        return asked_s * self.factor

    def resend_gaps(self) -> Iterator[float]:
        # Quick at first (a control frame lost on a LAN full of chunk bytes is resent within
        # ``retry_s``), then backing off: a seeder slow to answer is not sent ever more copies.
        waited = 0.0
        gap = self.retry_s
        while True:
            yield gap
            waited += gap
            if waited >= QUICK_S:
                gap = min(gap * 2, max(MAX_RESEND_S, self.retry_s))

    def answered(self) -> None:
        self.factor = 1.0

    def timed_out(self) -> None:
        self.factor = min(self.factor * 2, MAX_PATIENCE)


@dataclass(slots=True)
class Answered:
    """A seeder's recent answers by ``(asker, request id)``. A copy of a question already
    answered is not served again (no catalogue work, no hooks): within :data:`CROSSED_S` of
    the answer it is dropped (it crossed the reply), later the same reply is sent again (the
    first was lost). At most ``limit`` answers, each for :data:`KEEP_S`."""

    limit: int = 4096
    _answers: OrderedDict[tuple[str, int], tuple[float, Reply]] = field(default_factory=OrderedDict)

    def remember(self, key: tuple[str, int], reply: Reply, now: float) -> None:
        self._answers[key] = (now, reply)
        self._answers.move_to_end(key)
        self._expire(now)

    def copy_of(self, key: tuple[str, int], now: float) -> tuple[bool, Reply | None]:
        """``(answered, reply to send again)``: ``(False, None)`` for a new question,
        ``(True, None)`` for a copy to drop."""
        self._expire(now)
        known = self._answers.get(key)
        if known is None:
            return False, None
        at, reply = known
        return True, (None if now - at < CROSSED_S else reply)

    def _expire(self, now: float) -> None:
        answers = self._answers
        while answers and (
            len(answers) > self.limit or next(iter(answers.values()))[0] < now - KEEP_S
        ):
            answers.popitem(last=False)


class Asker:
    """A node's questions to its seeder: the outstanding ones, and the replies they take.
    ``seeder`` names the live seeder, ``send`` sends a frame, ``serve`` answers a question
    here (this node is the seeder), ``dropped`` counts replies that answer nothing asked."""

    def __init__(
        self,
        retry_s: float,
        me: str,
        seeder: Callable[[], tuple[str, int] | None],
        send: Callable[[str, Message], Awaitable[None]],
        serve: Callable[[str, Lookup | FetchRequest], Awaitable[Reply]],
        dropped: Counter[str],
    ) -> None:
        self.patience = Patience(retry_s)
        self._me, self._seeder, self._send, self._serve = me, seeder, send, serve
        self._dropped = dropped
        self._pending: dict[int, Pending] = {}

    async def request(self, msg: Lookup | FetchRequest, timeout_s: float) -> Reply:
        """See :meth:`SiteNode.request`."""
        # Unpredictable ids: an outsider cannot pre-compute the id of a reply to forge.
        rid = secrets.randbits(64)
        while rid in self._pending:
            rid = secrets.randbits(64)
        msg = dataclasses.replace(msg, request_id=rid)
        if self._seeder() is None:
            raise PeerError("no live seeder in the site")
        send, receive = trio.open_memory_channel[Reply](1)
        pending = self._pending[rid] = Pending(send, msg, set())
        patience = self.patience
        timeout_s = patience.timeout(timeout_s, self._seeder())
        gaps = patience.resend_gaps()
        try:
            with trio.move_on_after(timeout_s):
                while True:
                    # Asked afresh on every try: the seeder may fail over meanwhile.
                    seeder = self._seeder()
                    if seeder is not None and seeder[0] == self._me:
                        return await self._serve(self._me, msg)
                    if seeder is not None:
                        pending.asked.add(seeder[0])
                        await self._send(seeder[0], msg)
                    with trio.move_on_after(next(gaps)):
                        reply = await receive.receive()
                        patience.answered()
                        return reply
            patience.timed_out()
            raise PeerError(f"the seeder did not answer within {timeout_s:g} s")
        finally:
            del self._pending[rid]

    def reply(self, sender: str, msg: Reply) -> None:
        """A reply arrived: to the request it answers, if any asked it of ``sender``."""
        pending = self._pending.get(msg.request_id)
        problem = "reply-unsolicited" if pending is None else pending.matches(sender, msg)
        if problem is not None:
            self._dropped[problem] += 1
            return
        assert pending is not None
        with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
            pending.channel.send_nowait(msg)
