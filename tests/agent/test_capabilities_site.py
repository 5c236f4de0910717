"""README site capabilities through real agent processes: ``site.fallback`` (no seeder
reachable: go to the origin after the configured delay, logged and counted; or refuse with a
clear error) and multicast discovery (``site.discovery = true``, no static peers) over IPv4 and
IPv6.

Every agent is killed by pid at the end; every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

pytestmark = pytest.mark.slow

KiB = 1024


async def pull(agent: AgentProcess, url: str, out: Path) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "frumitcache", "pull", url, "-o", str(out),
         "--socket", str(agent.socket)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def site_view(agent: AgentProcess) -> dict[str, Any]:
    return (await AgentClient(agent.socket).status()).site


async def wait_for_one_seeder(agents: list[AgentProcess], members: int) -> str:
    """Until every agent sees ``members`` members and all name the same seeder."""
    while True:
        views = [await site_view(a) for a in agents]
        seeders = {v.get("seeder") for v in views}
        if (
            len(seeders) == 1
            and None not in seeders
            and all(len(v["members"]) == members for v in views)
        ):
            return str(seeders.pop())
        await trio.sleep(0.2)


# --- site.fallback ---------------------------------------------------------------------------


async def seeder_and_other(site: LoopbackSite) -> tuple[AgentProcess, AgentProcess]:
    name = await wait_for_one_seeder(site.agents, 2)
    seeder = next(a for a in site.agents if a.settings["node"]["name"] == name)
    return seeder, next(a for a in site.agents if a is not seeder)


def fallback_site(tmp_path: Path, fallback: str) -> LoopbackSite:
    """Two agents. After the seeder dies the survivor cannot elect itself for a long while
    (``member_forget_s``: a lone member of two is a minority), so for the rest of the test
    there is no seeder reachable."""
    return LoopbackSite(
        tmp_path / "site",
        2,
        settings={
            "site": {
                "fallback": fallback,
                "fallback_timeout_s": 1.0,  # short for the test (default 15 s)
                "member_forget_s": 600.0,
            }
        },
    )


async def test_fallback_goes_to_the_origin_after_the_delay(
    tmp_path: Path, origin: OriginServer
) -> None:
    data = hashlib.sha256(b"fallback").digest() * (64 * KiB // 32)
    origin.add("/direct.bin", data)
    site = fallback_site(tmp_path, "after-timeout")
    try:
        with trio.fail_after(120):
            await site.start()
            seeder, survivor = await seeder_and_other(site)
            seeder.kill()  # SIGKILL: the only other member, and the seeder, is gone
            result = await pull(survivor, origin.url("/direct.bin"), tmp_path / "out.bin")
            view = await site_view(survivor)
    finally:
        site.kill()
    assert result.returncode == 0, result.stderr.decode() + survivor.log()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert origin.stats.requests["/direct.bin"] == 1
    assert view["seeder"] is None  # it really fetched with no seeder, not as a new seeder
    assert view["fallbacks"] == 1  # counted
    assert view["fetched_origin"] == 1
    lines = [line for line in survivor.log().splitlines() if "fetch.fallback-origin" in line]
    assert len(lines) == 1, survivor.log()  # logged, once
    assert "/direct.bin" in lines[0]
    waited = re.search(r"waited_s[=\": ]+([0-9.]+)", lines[0])
    assert waited is not None, lines[0]
    assert float(waited.group(1)) >= 1.0  # not before the configured delay


async def test_fallback_never_fails_with_a_clear_error(
    tmp_path: Path, origin: OriginServer
) -> None:
    origin.add("/never.bin", b"x" * 1000)
    site = fallback_site(tmp_path, "never")
    try:
        with trio.fail_after(120):
            await site.start()
            seeder, survivor = await seeder_and_other(site)
            seeder.kill()
            result = await pull(survivor, origin.url("/never.bin"), tmp_path / "out.bin")
            view = await site_view(survivor)
    finally:
        site.kill()
    stderr = result.stderr.decode()
    assert result.returncode == _exit.SITE, stderr
    assert "site.fallback = never" in stderr
    assert "Traceback" not in stderr
    assert origin.stats.requests["/never.bin"] == 0
    assert not (tmp_path / "out.bin").exists()
    assert view["fallbacks"] == 0
