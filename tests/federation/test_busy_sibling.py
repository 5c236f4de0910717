"""A sibling already serving ``federation.max_sibling_streams`` sibling sites answers the next
one busy, through real agent processes on loopback: the later sites of a late release go to
their parent (or, with none alive, the origin) instead of piling onto one holder's link."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.federation import object_target
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull
from tests.federation.sites import fed_site, members, new_key, uplink
from tests.federation.test_endpoint import signed

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def by_link(counters: dict[str, int], role: str) -> int:
    """Uplink bytes this agent fetched from ``role`` members (``federation sibling@...``)."""
    return sum(n for k, n in counters.items() if k.startswith(f"federation {role}@"))


async def test_a_busy_sibling_sends_later_sites_to_the_parent_or_the_origin(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Site h holds the object and serves one sibling at a time (max_sibling_streams 1), paced
    at 512 KiB/s a link. While it streams the object to site a, site b (parent: the core) and
    site c (its parent dead) ask it too: both are answered busy; b takes the object from the
    core, c from the origin, and neither stalls. Busy is not remembered as absence or failure:
    c, which skips a failed member for an hour, asks h again for the next object and gets it
    from h."""
    origin = OriginServer(rate=6 * MiB)
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(8 * MiB)  # about 16 s from h at 512 KiB/s: b and c ask meanwhile
    small = os.urandom(MiB)
    digest, small_digest = hashlib.sha256(data).hexdigest(), hashlib.sha256(small).hexdigest()
    origin.add("/r.bin", data)
    origin.add("/s.bin", small)
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key, name="core")
    # h fetches from the origin (no parent), so its max_rate paces only what it serves.
    holder = fed_site(
        tmp_path / "h",
        1,
        key,
        name="h",
        extra={"max_sibling_streams": 1, "max_rate": 512 * 1024},
    )
    near = members(holder)
    a = fed_site(tmp_path / "a", 1, key, name="a", parents=members(core), siblings=near)
    b = fed_site(tmp_path / "b", 1, key, name="b", parents=members(core), siblings=near)
    dead = f"{loopback_address()}:3147"  # nothing listens there
    c = fed_site(
        tmp_path / "c",
        1,
        key,
        name="c",
        parents=[dead],
        siblings=near,
        extra={"retry_after_s": 3600.0},  # a member counted failed stays skipped
    )
    sites = [core, holder, a, b, c]
    h = holder.agents[0]
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def one(name: str, site_: LoopbackSite, url: str, dig: str) -> None:
        results[name] = await pull(site_.agents[0], url, dig, tmp_path / f"out-{name}")

    try:
        for site in sites:
            await site.start()
        with trio.fail_after(120):
            for path, dig in (("/r.bin", digest), ("/s.bin", small_digest)):
                held = await pull(h, origin.url(path), dig, tmp_path / "held")
                assert held.returncode == 0, (held.stderr, h.log())
            async with trio.open_nursery() as pulls:
                pulls.start_soon(one, "a", a, origin.url("/r.bin"), digest)
                # h is streaming to a: its one sibling slot is taken.
                while not any(k.startswith("federation served a@") for k in await uplink(h)):  # noqa: ASYNC110
                    await trio.sleep(0.1)
                pulls.start_soon(one, "b", b, origin.url("/r.bin"), digest)
                pulls.start_soon(one, "c", c, origin.url("/r.bin"), digest)
            for name in "abc":
                assert results[name].returncode == 0, (results[name].stderr, name)
                assert (tmp_path / f"out-{name}").read_bytes() == data
            at = {name: await uplink(s.agents[0]) for name, s in (("a", a), ("b", b), ("c", c))}
            served = await uplink(h)
            # a from the sibling; b from its parent; c (parent dead) from the origin.
            assert by_link(at["a"], "sibling") == len(data), (at, h.log())
            assert at["a"]["origin_bytes"] == 0, at
            assert by_link(at["b"], "sibling") == 0, (at, h.log())
            assert by_link(at["b"], "parent") == len(data), at
            assert at["b"]["origin_bytes"] == 0, at
            assert by_link(at["c"], "sibling") == 0, (at, h.log())
            assert at["c"]["origin_bytes"] == len(data), at
            assert served["federation_busy"] >= 2, served
            assert "federation.sibling-busy" in b.agents[0].log()
            # h is free again, and c did not mark it down (retry_after_s is an hour).
            await one("c2", c, origin.url("/s.bin"), small_digest)
        assert results["c2"].returncode == 0, (results["c2"].stderr, c.agents[0].log())
        assert (tmp_path / "out-c2").read_bytes() == small
        after = await uplink(c.agents[0])
        assert by_link(after, "sibling") == len(small), after
        assert after["origin_bytes"] == len(data), after  # nothing more from the origin
    finally:
        for site in sites:
            site.kill()


async def test_busy_is_per_stream_and_a_cut_stream_frees_its_slot(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Hostile, at a real agent's endpoint (max_sibling_streams 1, paced at 256 KiB/s): while
    one sibling's stream runs, another sibling's ask is 503 busy (x-frumit-busy, Retry-After)
    and a parent-style ask (no only-if-cached) is still served; when the first sibling cuts
    its stream mid-body, the slot comes back and the next sibling ask is served."""
    origin = OriginServer()
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(4 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/p.bin", data)
    key = new_key()
    holder = fed_site(
        tmp_path / "h", 1, key, extra={"max_sibling_streams": 1, "max_rate": 256 * 1024}
    )
    h = holder.agents[0]
    target = object_target(origin.url("/p.bin"))
    base = f"http://{holder.addresses[0]}:3147"

    def ask(sibling: bool) -> dict[str, str]:
        headers = signed(key, target)
        if sibling:
            headers["cache-control"] = "only-if-cached"
        return headers

    try:
        await holder.start()
        with trio.fail_after(90):
            held = await pull(h, origin.url("/p.bin"), digest, tmp_path / "held")
            assert held.returncode == 0, (held.stderr, h.log())
            # The first sibling's stream, on a socket of its own so the test can cut it.
            first = await trio.open_tcp_stream(holder.addresses[0], 3147)
            head = "".join(f"{k}: {v}\r\n" for k, v in ask(True).items())
            await first.send_all(f"GET {target} HTTP/1.1\r\nHost: h\r\n{head}\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got or len(got) < 64 * 1024:
                got += await first.receive_some(65536)
            assert got.startswith(b"HTTP/1.1 200"), got[:200]  # flowing: the one slot is taken
            async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as other:
                busy = await other.get(target, headers=ask(True))
                assert busy.status_code == 503, busy.text
                assert busy.headers["x-frumit-busy"] == "siblings"
                assert busy.headers["retry-after"] == "1"
                # A parent's child is never refused (ranged: paced, keep it short).
                child = await other.get(target, headers={**ask(False), "range": "bytes=0-1023"})
                assert child.status_code == 206
                assert child.content == data[:1024]
            await first.aclose()
            # The first sibling cut its stream mid-body (closed its connection).
            async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as again:
                while True:
                    part = await again.get(target, headers={**ask(True), "range": "bytes=-1024"})
                    if part.status_code != 503:
                        break
                    await trio.sleep(0.2)  # the holder notices the cut at its next send
                assert part.status_code == 206, part.text
                assert part.content == data[-1024:]
        served = await uplink(h)
        assert served["federation_busy"] >= 1, served
        assert h.proc is not None
        assert h.proc.poll() is None
    finally:
        holder.kill()
