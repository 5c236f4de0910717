"""The registry mirror through real agents: a 3-agent loopback site in front of a real
``docker-registry``, pulled by real ``skopeo`` (registry-prefixed paths) and containerd's ``ctr``
(``--hosts-dir``, ``?ns=``). The registry's access log is the ground truth of the uplink: every
blob and every manifest by digest is fetched from it once for the whole site."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.oci import parse_registries, render
from frumitcache.testing.registry import OCI_INDEX, tools_missing
from frumitcache.testing.site import LoopbackSite

from .conftest import REGISTRY_NAME, Pushed, wait_for_seeder

pytestmark = pytest.mark.slow


async def skopeo_pull(mirror: str, ref: str, out: Path, *extra: str) -> None:
    result = await trio.run_process(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", *extra,
         f"docker://{mirror}/{REGISTRY_NAME}/{ref}", f"oci:{out}:pulled"],
        capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def podman_pull(conf_text: str, root: Path) -> None:
    """podman, its registries.conf as ``frumitcache oci config podman`` prints it (vfs storage
    of its own, arm/v6 so a 32-bit Pi's choice is exercised)."""
    if tools_missing("podman"):
        return  # the rest of the test stands; the report says podman was not tried
    conf = write_file(root / "registries.conf", conf_text)
    run = Path(tempfile.mkdtemp(prefix="oci-pm-"))  # podman wants a runroot under 50 chars
    result = await trio.run_process(
        ["podman", "--root", str(root / "store"), "--runroot", str(run),
         "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
         "pull", "--arch", "arm", "--variant", "v6", f"{REGISTRY_NAME}/team/app:v1"],
        capture_stdout=True, capture_stderr=True, check=False,
        env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)},
    )  # fmt: skip
    shutil.rmtree(run, ignore_errors=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def blobs_of(layout: Path) -> dict[str, bytes]:
    return {"sha256:" + p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


async def tag_digest(mirror: str, ref: str) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.head(
            f"http://{mirror}/v2/{ref.replace(':', '/manifests/')}?ns={REGISTRY_NAME}",
            headers={"Accept": OCI_INDEX},
        )
    assert r.status_code == 200, r.text
    return r.headers["docker-content-digest"]


async def test_three_agent_site_pulls_each_blob_once(
    pushed: Pushed, tmp_path: Path, containerd: Path
) -> None:
    site = LoopbackSite(tmp_path / "site", 3, settings={"oci": pushed.oci_settings()})
    await site.start()
    try:
        await wait_for_seeder(site)
        before = len(pushed.registry.requests())
        mirrors = [f"{a.address}:3146" for a in site.agents]
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i, mirror in enumerate(mirrors):
                    nursery.start_soon(
                        skopeo_pull, mirror, "team/app:v1", tmp_path / f"out{i}", "--all"
                    )
        # Byte-identical: every pull holds exactly the pushed blobs (index, manifests, configs,
        # layers of all four platforms).
        for i in range(3):
            assert blobs_of(tmp_path / f"out{i}") == pushed.layout.blobs
        # containerd through this node's hosts.toml (as `frumitcache oci config containerd`
        # prints it), arm/v6 only: served from what the site already holds.
        hosts = tmp_path / "hosts"
        registries = parse_registries(pushed.oci_settings()["registries"])
        text = render("containerd", mirrors[2], registries, hosts_dir=str(hosts))
        write_file(hosts / REGISTRY_NAME / "hosts.toml", text.split("\n", 1)[1])
        ctr = await trio.run_process(
            ["ctr", "--address", str(containerd), "-n", "frumitcache-oci", "content", "fetch",
             "--hosts-dir", str(hosts), "--platform", "linux/arm/v6",
             f"{REGISTRY_NAME}/team/app:v1"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert ctr.returncode == 0, (ctr.stderr.decode()[-2000:], site.agents[2].log()[-3000:])
        await podman_pull(render("podman", mirrors[1], registries), tmp_path / "podman")
        uplink = pushed.registry.requests()[before:]
        gets = Counter(path.split("?")[0] for method, path, status in uplink if method == "GET")
        for digest in pushed.layout.blobs:
            if digest == pushed.layout.index_digest:
                continue
            kind = "manifests" if digest in pushed.layout.manifests.values() else "blobs"
            assert gets[f"/v2/team/app/{kind}/{digest}"] <= 1, (digest, uplink)
        assert all(n == 1 for n in gets.values()), gets
        # ctr's ?ns= requests came through this site (the mirror), not around it.
        log = site.agents[2].log()
        assert "Traceback" not in log
    finally:
        site.kill()
