"""A sibling that was busy when a site's fetch began takes over from the parent once it is
free (``federation.sibling_recheck_s``), through real agent processes on loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull
from tests.federation.sites import fed_site, members, new_key, uplink
from tests.federation.test_busy_sibling import by_link

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


async def test_a_sibling_freed_mid_fetch_takes_the_rest_from_the_parent(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Site h holds the object and serves one sibling at a time, at 1 MiB/s a link; the core
    serves its children at 256 KiB/s. Site a takes the object from h; site b, asking while h
    streams to a, is answered busy and streams from the core. Once a is done, b's next walk
    over its siblings (every second) finds h free: h sends the rest from the byte b reached,
    the core's stream ends, and b has every byte once (core + h = the object, nothing from the
    origin) long before the core alone would have sent it (32 s)."""
    origin = OriginServer()
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(8 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/r.bin", data)
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key, name="core", extra={"max_rate": 256 * 1024})
    holder = fed_site(
        tmp_path / "h", 1, key, name="h", extra={"max_sibling_streams": 1, "max_rate": MiB}
    )
    near = members(holder)
    a = fed_site(tmp_path / "a", 1, key, name="a", parents=members(core), siblings=near)
    b = fed_site(
        tmp_path / "b",
        1,
        key,
        name="b",
        parents=members(core),
        siblings=near,
        extra={"sibling_recheck_s": 1.0},
    )
    sites = [core, holder, a, b]
    h = holder.agents[0]
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}
    took: dict[str, float] = {}

    async def one(name: str, site_: LoopbackSite) -> None:
        began = trio.current_time()
        results[name] = await pull(
            site_.agents[0], origin.url("/r.bin"), digest, tmp_path / f"out-{name}"
        )
        took[name] = trio.current_time() - began

    try:
        for site in sites:
            await site.start()
        with trio.fail_after(120):
            held = await pull(h, origin.url("/r.bin"), digest, tmp_path / "held")
            assert held.returncode == 0, (held.stderr, h.log())
            async with trio.open_nursery() as pulls:
                pulls.start_soon(one, "a", a)
                while not any(k.startswith("federation served a@") for k in await uplink(h)):  # noqa: ASYNC110
                    await trio.sleep(0.1)
                pulls.start_soon(one, "b", b)
        for name in "ab":
            assert results[name].returncode == 0, (results[name].stderr, name)
            assert (tmp_path / f"out-{name}").read_bytes() == data
        at_a, at_b = await uplink(a.agents[0]), await uplink(b.agents[0])
        assert by_link(at_a, "sibling") == len(data), at_a
        from_core, from_h = by_link(at_b, "parent"), by_link(at_b, "sibling")
        assert from_core > 0, at_b
        assert from_h > 0, (at_b, b.agents[0].log())
        assert from_core + from_h == len(data), at_b
        assert at_b["origin_bytes"] == 0, at_b
        assert "federation.moved-to-sibling" in b.agents[0].log()
        assert took["b"] < 24.0, took  # the core alone: 32 s
        assert (await uplink(core.agents[0]))["origin_bytes"] == len(data)
        for site in sites:
            for agent in site.agents:
                assert agent.proc is not None
                assert agent.proc.poll() is None
    finally:
        for site in sites:
            site.kill()
