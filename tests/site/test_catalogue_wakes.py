"""``SiteNode.wait_catalogue_change`` is an event: over real loopback UDP (trio's autojump
clock), a seeder's waiter wakes the instant a member's ``Have`` report is in the catalogue,
not at the next tick of some timer."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from frumitcache.site import Have, ObjectManifest
from tests.site.test_driver import running, site, wait_one_seeder


async def test_a_members_report_wakes_the_seeders_waiter_at_once(
    autojump_clock: MockClock,
) -> None:
    nodes = site(2)
    digest = b"\7" * 32
    object_ = ObjectManifest("http://o/z", None, None, 1 << 20, (digest,), False)
    with trio.fail_after(15):
        async with running(*nodes):
            seeder = await wait_one_seeder(nodes)
            member = next(n for n in nodes if n is not seeder)
            woke: list[float] = []

            async def waiter(*, task_status: trio.TaskStatus[None]) -> None:
                task_status.started()
                await seeder.wait_catalogue_change()
                woke.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                await nursery.start(waiter)
                # Off any tick grid, and long after the election: only the report can wake it.
                await trio.sleep(3.137)
                sent = trio.current_time()
                await member.send(seeder.me.node_id, Have(member.me.node_id, objects=(object_,)))
            assert len(woke) == 1
            assert woke[0] - sent < 1e-3
            assert seeder.catalogue.get("http://o/z") == object_
            assert seeder.catalogue.holders(digest).full == (member.me.node_id,)
