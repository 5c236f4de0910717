"""Real parts for the registry door's tests: one ``docker-registry`` per module with a
multi-arch image pushed by real ``skopeo``, and a containerd daemon for ``ctr`` where it runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import (
    Layout,
    RegistryProcess,
    build_layout,
    skopeo_push,
    tools_missing,
)
from frumitcache.testing.site import LoopbackSite

REGISTRY_NAME = "lab.example"


async def wait_for_seeder(site: LoopbackSite) -> str:
    """The seeder every agent of ``site`` agrees on (bounded wait)."""
    with trio.fail_after(30):
        while True:
            views = [(await AgentClient(a.socket).status()).site for a in site.agents]
            seeders = {v.get("seeder") for v in views}
            if len(seeders) == 1 and None not in seeders:
                return str(seeders.pop())
            await trio.sleep(0.2)


def need(*tools: str) -> None:
    missing = tools_missing(*tools)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: docker-registry, skopeo, containerd)")


class Pushed:
    def __init__(self, registry: RegistryProcess, layout: Layout, root: Path) -> None:
        self.registry = registry
        self.layout = layout
        self.root = root

    def push(self, name: str, tag: str, layout: Layout | None = None) -> None:
        source = layout or self.layout
        skopeo_push(source.path, source.tag, f"{self.registry.host}/{name}:{tag}")

    def oci_settings(self, **extra: Any) -> dict[str, Any]:
        """The [oci] section of an agent mirroring this registry as ``lab.example``."""
        return {
            "enabled": True,
            "port": 3146,
            "registries": [f"{REGISTRY_NAME}=http://{self.registry.host}"],
            "allowed_hosts": [f"{self.registry.address}:*"],
            **extra,
        }


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    need("docker-registry", "skopeo")
    root = tmp_path_factory.mktemp("registry")
    registry = RegistryProcess(root / "reg", loopback_address(), 5000)
    registry.start()
    try:
        layout = build_layout(root / "layout", "v1", shared=b"base" * 50_000, per_platform=2)
        p = Pushed(registry, layout, root)
        p.push("team/app", "v1")
        yield p
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A containerd daemon of the test's own (root and socket in a temp dir); its socket."""
    need("containerd", "ctr")
    root = tmp_path_factory.mktemp("containerd")
    sock = root / "ctd.sock"
    (root / "config.toml").write_text(
        f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
    )
    with (root / "containerd.log").open("wb") as log:
        proc = subprocess.Popen(
            ["containerd", "--config", str(root / "config.toml")], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(
                    f"containerd cannot run here: {(root / 'containerd.log').read_text()[-500:]}"
                )
            time.sleep(0.05)
        yield sock
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        shutil.rmtree(root / "root", ignore_errors=True)
