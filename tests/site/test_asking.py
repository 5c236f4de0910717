"""A member's patience with a slow seeder and a seeder's memory of its answers
(``site/_asking.py``): the pure parts, then two SiteNodes over real UDP sockets."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
import trio
from trio.testing import MockClock

from frumitcache.errors import PeerError
from frumitcache.site import ErrorReply, FetchRequest, Message, ObjectInfo, SiteNode
from frumitcache.site._asking import CROSSED_S, KEEP_S, MAX_PATIENCE, Answered, Patience
from frumitcache.testing.net import loopback_address
from tests.site.test_driver import RecordingHooks, eventually, make_node, running, wait_one_seeder

SEEDER = ("s", 3)
H = TypeVar("H", bound=RecordingHooks)


def test_patience_grows_while_unanswered_and_is_back_at_an_answer_or_another_seeder() -> None:
    p = Patience(0.25)
    assert p.timeout(2.0, SEEDER) == 2.0
    p.timed_out()
    assert p.timeout(2.0, SEEDER) == 4.0
    for _ in range(5):
        p.timed_out()
    assert p.timeout(2.0, SEEDER) == 2.0 * MAX_PATIENCE  # bounded
    assert p.timeout(1.0, SEEDER) == MAX_PATIENCE  # a factor of what the caller asks
    p.answered()
    assert p.timeout(2.0, SEEDER) == 2.0
    p.timed_out()
    assert p.timeout(2.0, ("s", 4)) == 2.0  # a new term may be quick
    p.timed_out()
    assert p.timeout(2.0, None) == 2.0  # and so may whoever comes after none


def test_resends_are_quick_for_a_second_then_back_off_to_one_a_second() -> None:
    gaps = list(itertools.islice(Patience(0.25).resend_gaps(), 7))
    assert gaps == [0.25, 0.25, 0.25, 0.25, 0.5, 1.0, 1.0]
    # Tests that ask for slower resends than the cap get them unchanged.
    assert list(itertools.islice(Patience(2.0).resend_gaps(), 2)) == [2.0, 2.0]


def test_an_answered_question_is_dropped_while_its_reply_crosses_then_answered_again() -> None:
    answered = Answered(limit=2)
    reply = ErrorReply(7, "origin", "gone")
    assert answered.copy_of(("m", 7), 0.0) == (False, None)  # new: serve it
    answered.remember(("m", 7), reply, 10.0)
    assert answered.copy_of(("m", 7), 10.0 + CROSSED_S / 2) == (True, None)  # crossed: drop
    assert answered.copy_of(("m", 7), 10.0 + 2 * CROSSED_S) == (True, reply)  # lost: send again
    assert answered.copy_of(("m", 8), 11.0) == (False, None)  # another question
    assert answered.copy_of(("n", 7), 11.0) == (False, None)  # another asker's id
    # Forgotten after KEEP_S, and beyond the limit the oldest go first.
    assert answered.copy_of(("m", 7), 10.0 + KEEP_S + 0.1) == (False, None)
    for rid in (1, 2, 3):
        answered.remember(("m", rid), reply, 30.0)
    assert answered.copy_of(("m", 1), 31.0) == (False, None)
    assert answered.copy_of(("m", 3), 31.0) == (True, reply)


class SlowHooks(RecordingHooks):
    """A loaded seeder: each fetch request takes ``delay_s`` to answer."""

    delay_s = 3.0

    async def on_fetch_request(self, sender: str, request: FetchRequest) -> ObjectInfo | ErrorReply:
        await trio.sleep(self.delay_s)
        return await super().on_fetch_request(sender, request)


@asynccontextmanager
async def seated(hooks: type[H]) -> AsyncIterator[tuple[SiteNode, SiteNode, H]]:
    """Two nodes with ``hooks``, running: (seeder, member, the seeder's hooks)."""
    a, b = loopback_address(), loopback_address()
    nodes = [make_node("node0", a, [b]), make_node("node1", b, [a])]
    for node in nodes:
        node.hooks = hooks()
        node.hooks.node = node
    async with running(*nodes):
        seeder = await wait_one_seeder(nodes)
        member = next(n for n in nodes if n is not seeder)
        assert isinstance(seeder.hooks, hooks)
        yield seeder, member, seeder.hooks


def count_requests(seeder: SiteNode) -> list[FetchRequest]:
    """Every fetch request frame the seeder takes in, copies included."""
    seen: list[FetchRequest] = []
    handle = seeder._handle

    async def counting(sender: str, msg: Message) -> None:
        if isinstance(msg, FetchRequest):
            seen.append(msg)
        await handle(sender, msg)

    seeder._handle = counting  # type: ignore[method-assign]
    return seen


async def test_a_seeder_slower_than_the_timeout_answers_the_next_longer_wait(
    autojump_clock: MockClock,
) -> None:
    with trio.fail_after(60):
        async with seated(SlowHooks) as (seeder, member, hooks):
            seen = count_requests(seeder)
            with pytest.raises(PeerError, match="did not answer within 2 s"):
                await member.request(FetchRequest(0, "http://o/x"))
            # Sent at 0, 0.25, 0.5, 0.75, 1 and 1.5 s (every 0.25 s before: 8), served once.
            assert len(seen) == 6
            assert len({m.request_id for m in seen}) == 1
            assert hooks.fetches == []  # still being served
            await eventually(lambda: len(hooks.fetches) == 1)
            # The next request waits twice as long, and the slow seeder's answer makes it.
            del seen[:]
            start = trio.current_time()
            reply = await member.request(FetchRequest(0, "http://o/x"))
            assert isinstance(reply, ObjectInfo)
            assert 3.0 <= trio.current_time() - start < 4.0
            assert len(hooks.fetches) == 2
            assert len(seen) <= 7  # ... and 2.5 s: 12 copies before in 3 s
            # Answered: the patience is back at the caller's 2 s.
            with pytest.raises(PeerError, match="within 2 s"):
                await member.request(FetchRequest(0, "http://o/x"))


async def test_a_copy_of_an_answered_request_is_not_served_twice(
    autojump_clock: MockClock,
) -> None:
    with trio.fail_after(60):
        async with seated(RecordingHooks) as (seeder, member, hooks):
            ask = FetchRequest(77, "http://o/x")  # sent by hand: the member waits for no reply

            def unsolicited() -> int:
                return member.statistics().dropped.get("reply-unsolicited", 0)

            await member.send(seeder.me.node_id, ask)
            await eventually(lambda: unsolicited() == 1)  # served and answered
            assert len(hooks.fetches) == 1
            # A copy that crossed the reply: dropped, no second answer.
            await member.send(seeder.me.node_id, dataclasses.replace(ask))
            await eventually(lambda: seeder.statistics().dropped.get("request-copy", 0) == 1)
            # A copy sent later (the reply was lost): the same answer again, not served again.
            await trio.sleep(CROSSED_S)
            await member.send(seeder.me.node_id, ask)
            await eventually(lambda: unsolicited() == 2)
            assert len(hooks.fetches) == 1
            assert seeder.statistics().requests_served == 1
