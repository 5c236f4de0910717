"""Real apt-get through a loopback site of real agents: each client at its own agent.

The repository is built and signed in the test (dpkg-deb, apt-ftparchive with by-hash, a
throw-away gpg key) and served by the real test origin. Every agent runs its apt proxy on its
own address; the site's one seeder fetches each file from the origin once.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import trio

from frumitcache.testing.aptrepo import PACKAGES, AptClient, RepoBuilder, make_client
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder

pytestmark = pytest.mark.slow

ALL = tuple(sorted(PACKAGES))


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "hash sum mismatch" not in out.lower(), out
    return out


async def test_apt_clients_at_three_agents_fetch_each_file_once(
    repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "origin"
    repo_builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin = OriginServer(root)
    origin_address = loopback_address()
    port = await nursery.start(origin.serve, origin_address)
    authority = f"{origin_address}:{port}"
    site = LoopbackSite(
        tmp_path / "site",
        3,
        settings={"apt": {"enabled": True, "allowed_hosts": [authority], "port": 3142}},
    )
    try:
        await site.start()
        await wait_for_seeder(site)
        assert all("apt proxy" in agent.banner() for agent in site.agents)
        clients = [
            make_client(
                tmp_path / f"client{i}",
                repo_builder.keyring,
                f"http://{authority}/debian",
                f"http://{agent.address}:3142",
            )
            for i, agent in enumerate(site.agents)
        ]
        with trio.fail_after(180):
            # One after another: the seeder is elected by now, and apt's own retries are off.
            for client in clients:
                ok(await client.run("update"))
                ok(await client.run("download", *ALL))
        want = {p.name: p.read_bytes() for p in (root / "debian/pool/main").glob("*.deb")}
        for client in clients:
            assert client.downloaded() == want
        served = {path: n for path, n in origin.stats.requests.items() if n}
        assert served
        for name in want:
            assert origin.stats.requests[f"/debian/pool/main/{name}"] == 1, served
        # Index files: revalidated by the seeder at most once per window for the whole site.
        assert origin.stats.requests["/debian/dists/stable/InRelease"] == 1, served
    finally:
        site.kill()


async def test_republished_repository_site_wide_window(
    repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Within the index window every client, at any agent, sees the old repository whole (no
    hash-sum mismatch); after it, the new version; the seeder asked the origin about InRelease
    once per window for the whole site."""
    window_s = 10.0
    root = tmp_path / "origin"
    repo_builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin = OriginServer(root)
    origin_address = loopback_address()
    port = await nursery.start(origin.serve, origin_address)
    authority = f"{origin_address}:{port}"
    site = LoopbackSite(
        tmp_path / "site",
        2,
        settings={
            "apt": {"enabled": True, "allowed_hosts": [authority], "index_window_s": window_s}
        },
    )

    def inrelease() -> int:
        """Requests for InRelease the origin answered (fetches and revalidations)."""
        return origin.stats.requests["/debian/dists/stable/InRelease"]

    def client(name: str, agent: int, **options: str) -> AptClient:
        return make_client(
            tmp_path / name,
            repo_builder.keyring,
            f"http://{authority}/debian",
            f"http://{site.agents[agent].address}:3142",
            options,
        )

    try:
        await site.start()
        await wait_for_seeder(site)
        with trio.fail_after(120):
            first = client("first", 0)
            started = trio.current_time()  # no window can have begun before this
            ok(await first.run("update"))
            ok(await first.run("download", *ALL))
            assert first.candidate("pkga") == "1.0"
            assert inrelease() == 1  # the first update: fetched once
            # apt compares Last-Modified in whole seconds: date the republished files a
            # second after the first publication (no sleep waiting for the clock to tick).
            first_mtime = max(p.stat().st_mtime for p in root.rglob("*") if p.is_file())
            repo_builder.publish(root, {**dict.fromkeys(ALL, "1.0"), "pkga": "2.0"})
            later = max(float(int(first_mtime)) + 1.0, time.time())
            for path in root.rglob("*"):
                if path.is_file():
                    os.utime(path, (later, later))
            within = client("within", 1)
            plain = client("plain", 1, **{"Acquire::By-Hash": "no"})
            ok(await within.run("update"))
            ok(await plain.run("update"))
            assert trio.current_time() - started < window_s, "too slow to test the window"
            assert within.candidate("pkga") == "1.0"
            assert plain.candidate("pkga") == "1.0"
            ok(await plain.run("download", "pkga"))
            # Two more clients at the other agent within the window: the origin saw nothing.
            assert inrelease() == 1
            # The window runs on the agents' real clocks: wait for it to end, no longer.
            await trio.sleep(window_s + 0.5 - (trio.current_time() - started))
            after = client("after", 1)
            ok(await after.run("update"))
            assert after.candidate("pkga") == "2.0"
            ok(await after.run("download", "pkga"))
            ok(await first.run("update"))
            assert first.candidate("pkga") == "2.0"
            # One revalidation for the new window, however many clients at however many agents.
            assert inrelease() == 2
        assert after.downloaded() == {
            "pkga_2.0_all.deb": (root / "debian/pool/main/pkga_2.0_all.deb").read_bytes()
        }
    finally:
        site.kill()
