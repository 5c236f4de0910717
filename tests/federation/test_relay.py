"""A sibling relays what its seeder is fetching right now (``federation.relay_depth``), through
real agent processes on loopback: in a release every site asks for at once, sites take the
object from a sibling that is still fetching it instead of all sharing the parent's egress,
within the depth, and never in a loop."""

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


async def test_a_sibling_relays_its_running_fetch_one_level_deep_and_never_back(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The origin sends 6 MiB at 1 MiB/s, so the core's fetch runs for seconds. Site a (whose
    sibling is b) asks first: b fetches nothing yet (504), so a takes it from the core. Site b
    (sibling a) asks while a's fetch runs: a relays it (relay_depth 2: one relay level). Site c
    (sibling b) asks while b relays: b's bytes come through a, one level already, so b answers
    504 and c takes it from the core. a re-asks b every second while the core streams to it
    and never moves there (only a holder takes over: no loop). The origin sends the object
    once; every copy is whole."""
    origin = OriginServer(rate=MiB)
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(6 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/r.bin", data)
    key = new_key()
    relay = {"relay_depth": 2, "sibling_recheck_s": 1.0}
    core = fed_site(tmp_path / "core", 1, key, name="core")
    parents = members(core)
    b_at = loopback_address()  # a and b are each other's siblings
    a = fed_site(
        tmp_path / "a", 1, key, name="a", parents=parents, siblings=[f"{b_at}:3147"], extra=relay
    )
    b = fed_site(
        tmp_path / "b", 1, key, name="b", parents=parents, siblings=members(a), extra=relay,
        addresses=[b_at],
    )  # fmt: skip
    c = fed_site(
        tmp_path / "c", 1, key, name="c", parents=parents, siblings=members(b), extra=relay
    )
    sites = [core, a, b, c]
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def one(name: str, site_: LoopbackSite) -> None:
        results[name] = await pull(
            site_.agents[0], origin.url("/r.bin"), digest, tmp_path / f"out-{name}"
        )

    async def until(agent_site: LoopbackSite, counter: str) -> None:
        while not any(  # noqa: ASYNC110
            k.startswith(counter) and n > 0 for k, n in (await uplink(agent_site.agents[0])).items()
        ):
            await trio.sleep(0.1)

    try:
        for site in sites:
            await site.start()
        with trio.fail_after(120):
            async with trio.open_nursery() as pulls:
                pulls.start_soon(one, "a", a)
                await until(a, "federation parent@")  # a's fetch runs, from the core
                pulls.start_soon(one, "b", b)
                await until(a, "federation_relayed")  # a relays to b
                pulls.start_soon(one, "c", c)
        for name in "abc":
            assert results[name].returncode == 0, (results[name].stderr, name)
            assert (tmp_path / f"out-{name}").read_bytes() == data
        at = {name: await uplink(s.agents[0]) for name, s in (("a", a), ("b", b), ("c", c))}
        # a from the core (b never relayed back); b from a, still fetching; c from the core.
        assert by_link(at["a"], "parent") == len(data), at
        assert by_link(at["a"], "sibling") == 0, at
        assert by_link(at["b"], "sibling") == len(data), at
        assert by_link(at["b"], "parent") == 0, at
        assert by_link(at["c"], "parent") == len(data), at
        assert by_link(at["c"], "sibling") == 0, at
        assert at["a"]["federation_relayed"] == 1, at
        assert at["b"]["federation_relayed"] == 0, at  # c's ask was past the depth
        assert all(at[name]["origin_bytes"] == 0 for name in "abc"), at
        assert origin.stats.bytes_sent["/r.bin"] == len(data)  # once for the federation
        for site in sites:
            proc = site.agents[0].proc
            assert proc is not None
            assert proc.poll() is None
    finally:
        for site in sites:
            site.kill()


async def test_a_site_with_serve_relays_false_asks_relays_but_serves_none(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """``federation.serve_relays = false`` (a site on a slow link): site a fetches from the
    core with relay_depth 2 but does not relay. Site b (sibling a) asks while a's fetch runs:
    a answers as if it had nothing, so b takes the object from the core. The agents keep
    serving, the origin sends the object once, every copy is whole."""
    origin = OriginServer(rate=MiB // 2)  # a's fetch runs 12 s: b asks well within it
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(6 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/s.bin", data)
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key, name="core")
    parents = members(core)
    quiet = {"relay_depth": 2, "serve_relays": False}
    a = fed_site(tmp_path / "a", 1, key, name="a", parents=parents, extra=quiet)
    # No recheck: b never moves to a once a holds the object complete.
    asks = {"relay_depth": 2, "sibling_recheck_s": 0.0}
    b = fed_site(tmp_path / "b", 1, key, name="b", parents=parents, siblings=members(a), extra=asks)
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def one(name: str, site_: LoopbackSite) -> None:
        results[name] = await pull(
            site_.agents[0], origin.url("/s.bin"), digest, tmp_path / f"out-{name}"
        )

    try:
        for site in (core, a, b):
            await site.start()
        with trio.fail_after(120):
            async with trio.open_nursery() as pulls:
                pulls.start_soon(one, "a", a)
                while not by_link(await uplink(a.agents[0]), "parent"):  # noqa: ASYNC110
                    await trio.sleep(0.1)  # a's fetch runs, bytes arriving from the core
                pulls.start_soon(one, "b", b)
        for name in "ab":
            assert results[name].returncode == 0, (results[name].stderr, name)
            assert (tmp_path / f"out-{name}").read_bytes() == data
        at = {name: await uplink(s.agents[0]) for name, s in (("a", a), ("b", b))}
        assert at["a"]["federation_relayed"] == 0, at
        assert by_link(at["b"], "parent") == len(data), at
        assert by_link(at["b"], "sibling") == 0, at
        assert origin.stats.bytes_sent["/s.bin"] == len(data)
        for site in (core, a, b):
            proc = site.agents[0].proc
            assert proc is not None
            assert proc.poll() is None
    finally:
        for site in (core, a, b):
            site.kill()
