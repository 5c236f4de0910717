"""locate, prefetch, estimate and site() across the members of a real three-agent site."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache import AgentClient
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

MiB = 1024 * 1024


async def cli(socket: Path, *args: str) -> Any:
    result = await trio.run_process(
        [sys.executable, "-m", "frumitcache", *args, "--socket", str(socket)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


async def wait_for_site(clients: list[AgentClient]) -> str:
    with trio.fail_after(30):
        while True:
            views = [await c.site() for c in clients]
            seeders = {v.seeder for v in views}
            if (
                None not in seeders
                and len(seeders) == 1
                and all(len(v.members) == len(clients) for v in views)
            ):
                return str(seeders.pop())
            await trio.sleep(0.2)


@pytest.mark.slow
async def test_prefetch_and_locate_across_members(origin: OriginServer, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)  # two chunks of the default 4 MiB
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/site/big.bin", data)
    origin.add("/site/other.bin", b"y" * 1000)
    url = origin.url("/site/big.bin")
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        clients = [AgentClient(a.socket) for a in site.agents]
        seeder = await wait_for_site(clients)
        names = [(await c.site()).node for c in clients]
        asker = clients[names.index(seeder) - 1]  # a member that is not the seeder
        with trio.fail_after(90):
            info = await asker.site()
            assert not info.solo
            assert info.seeder == seeder
            assert info.term >= 1
            assert sorted(m.node for m in info.members) == sorted(names)
            assert [m.node for m in info.members if m.seeder] == [seeder]
            assert all(m.ram_bytes > 0 and m.free_disk_bytes > 0 for m in info.members)

            est = await asker.estimate([url])
            assert est.uplink_bytes == len(data)
            assert est.in_site_bytes == 0

            # Stage it on two members only; the third keeps nothing.
            targets = [*[n for n in names if n != seeder][:1], seeder]
            handle = await asker.prefetch([url], nodes=targets)
            assert set(handle.started[url]) == set(targets)
            assert set(handle.started[url].values()) <= {"fetching", "present"}
            progress = await handle.wait(poll_s=0.2)
            assert sorted(p.node for p in progress if p.complete) == sorted(targets)
            assert origin.stats.bytes_sent["/site/big.bin"] == len(data)  # the uplink once

            for client in clients:  # every member sees the same answer
                where = await client.locate(url)
                assert where.complete
                assert where.digest == digest
                assert sorted(where.full) == sorted(targets)
                assert where.partial == ()
            by_digest = await asker.locate(digest)
            assert sorted(by_digest.full) == sorted(targets)

            est = await asker.estimate([url, origin.url("/site/other.bin")])
            assert est.items[0].uplink == 0
            assert est.items[0].in_site == len(data)
            assert est.items[1].uplink == 1000
            assert est.uplink_bytes == 1000

            # Now everyone: the last member takes it from the site, not the origin.
            everyone = await asker.prefetch([url])
            assert set(everyone.started[url]) == set(names)
            await everyone.wait(poll_s=0.2)
            assert sorted((await asker.locate(url)).full) == sorted(names)
            assert origin.stats.bytes_sent["/site/big.bin"] == len(data)

            # The command line over the same site: stage the small one on one member,
            # then ask another member where it is.
            small = origin.url("/site/other.bin")
            last = names[-1]
            staged = await cli(
                site.agents[0].socket, "prefetch", small, "--node", last, "--wait", "--json"
            )
            assert staged["started"] == {small: {last: "fetching"}}
            where = await cli(site.agents[1].socket, "locate", small, "--json")
            # The seeder fetched it for the member, so it holds it too; nobody else does.
            assert sorted(where["full"]) == sorted({last, seeder})
            assert where["size"] == 1000
    finally:
        site.kill()
