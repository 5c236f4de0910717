"""A replaced seeder that is *quiet* in its successor's view, through real agent processes
(issue 14's 1.61 run: pi4, a lapsed seeder that was not the best candidate, beaconed to that
one and not to pi2, which took over at once and fetched again what pi4 held).

Three agents: the seeder pulls an object whole and is paused; the other two elect another
and it pulls at once. ``member_timeout_s`` (1.5 s) is shorter than the failover (the lease,
2 s), so the old seeder is quiet (not alive) in the new one's view when it takes over: it is
resumed 0.5 s later, hears the new seeder's lease (sent to the quiet previous seeder), reports
the object, and the new seeder takes it whole. On the old code the new seeder did not wait
(the old one was not alive) and the origin sent the object twice.

Resumed 3 s later, past the quiet bound (a lease from the new term's start), it is waited for
all the same: its peer port accepts the heir's probe (a stopped process's kernel completes the
handshake), so it is waited for as an alive one, up to 3 leases (issue 14's keep8 run, 1.40
x F: the heir gave up on a seeder paused 8 s and fetched again what that one then reported).
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
import trio

from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, wait_for_seeder
from tests.agent.test_takeover import CHUNK, _heir, _origin

pytestmark = pytest.mark.slow

SETTINGS = {"site": {"lease_s": 2.0, "member_timeout_s": 1.5, "member_forget_s": 30.0}}


@pytest.mark.parametrize("paused_s", [0.5, 3.0])
async def test_a_quiet_replaced_seeder_is_waited_for_and_is_the_source(
    tmp_path: Path, nursery: trio.Nursery, paused_s: float
) -> None:
    origin = await _origin(nursery)
    data = os.urandom(4 * CHUNK + 12345)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/whole.bin", data)
    url = origin.url("/whole.bin")
    site = LoopbackSite(tmp_path / "site", 3, settings=SETTINGS)
    try:
        await site.start()
        first = await wait_for_seeder(site)
        name = {a.settings["node"]["name"]: a for a in site.agents}
        old = name[first]
        survivors = [a for a in site.agents if a is not old]
        with trio.fail_after(60):
            got = await pull(old, url, digest, tmp_path / "old")
        assert got.returncode == 0, got.stderr
        assert origin.stats.bytes_sent["/whole.bin"] == len(data)
        os.kill(old.pid, signal.SIGSTOP)
        try:
            with trio.fail_after(30):
                heir = name[await _heir(survivors, first)]

            async def resume() -> None:
                await trio.sleep(paused_s)
                os.kill(old.pid, signal.SIGCONT)

            with trio.fail_after(60):
                async with trio.open_nursery() as inner:
                    inner.start_soon(resume)
                    got = await pull(heir, url, digest, tmp_path / "heir")
        finally:
            os.kill(old.pid, signal.SIGCONT)
        log = heir.log()
        assert got.returncode == 0, (got.stderr, log)
        assert (tmp_path / "heir").read_bytes() == data
        assert origin.stats.requests["/whole.bin"] == 1, log  # the old seeder's fetch only
        assert "takeover.whole" in log, log
        assert "quiet=True" in log, log  # the case this test is about
        if paused_s > SETTINGS["site"]["lease_s"]:
            assert "listening=True" in log, log  # past the quiet bound: the probe kept it
    finally:
        site.kill()
