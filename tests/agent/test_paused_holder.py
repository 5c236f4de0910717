"""A holder that is a member but does not answer — a Pi frozen (SIGSTOP here; swap-thrashing
or a hung SD card on a real one), which stays in the site until ``member_timeout_s`` — does
not stall the members pulling an object it holds. Real agent processes on loopback.

Before: each chunk whose first holder was the frozen Pi waited the whole-chunk bound (30 s)
on it, chunk after chunk (a 4-agent pull took 31-80 s). Now the first requests that meet its
silence skip it for a back-off and the rest never dial it.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, site_status, wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
# 1 MiB chunks, two in flight: 25 chunks, about half of them spread to the frozen Pi first.
# The frozen Pi stays a member through the pull.
SETTINGS: dict[str, dict[str, Any]] = {
    "store": {"chunk_size": MiB},
    "swarm": {"parallel_chunks": 2, "answer_timeout_s": 2.0},
    "site": {"member_timeout_s": 300.0, "member_forget_s": 600.0},
}


async def test_a_frozen_holder_does_not_stall_a_pull(tmp_path: Path, nursery: trio.Nursery) -> None:
    origin = OriginServer()
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(24 * MiB + 12345)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/o.bin", data)
    url = origin.url("/o.bin")
    site = LoopbackSite(tmp_path / "site", 4, settings=SETTINGS)
    try:
        await site.start()
        seeder = await wait_for_seeder(site)
        name = {a: a.settings["node"]["name"] for a in site.agents}
        first, frozen, last = [a for a in site.agents if name[a] != seeder]
        for agent in (first, frozen):
            with trio.fail_after(60):
                got = await pull(agent, url, digest, tmp_path / name[agent])
            assert got.returncode == 0, got.stderr
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            # The old code needs about 12 chunks x 30 s / 2 in flight here.
            with trio.fail_after(60):
                got = await pull(last, url, digest, tmp_path / "last")
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert got.returncode == 0, (got.stderr, last.log())
        assert (tmp_path / "last").read_bytes() == data
        status = await site_status(last)
        # It met the frozen Pi's silence (it was asked), and skipped it after that.
        assert 1 <= int(status["peer_http_silent"]) <= 4, status
        assert frozen.address in {m["address"] for m in status["members"]}, status
        assert origin.stats.bytes_sent["/o.bin"] == len(data)
    finally:
        await site.stop()
