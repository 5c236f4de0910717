"""``frumitcache doctor`` on a node of a federated edge site, with real agent processes: its
own endpoint and its parent (another site's agent) answer the signed probe, a parent that is
down is named with a hint, and nothing else fails (the probe fetches nothing)."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frumitcache.testing.net import free_port, loopback_address
from tests.federation.sites import fed_site, members, new_key

pytestmark = pytest.mark.slow


async def test_doctor_probes_the_endpoint_and_the_parents(tmp_path: Path) -> None:
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key)
    dead = loopback_address()
    down = f"{dead}:{free_port(dead)}"
    edge = fed_site(tmp_path / "edge", 1, key, parents=[*members(core), down])
    try:
        with trio.fail_after(120):
            await core.start()
            await edge.start()
            done = await trio.to_thread.run_sync(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "frumitcache",
                        "doctor",
                        "--json",
                        "--user",
                        getpass.getuser(),
                        "--config",
                        str(edge.agents[0].config_path),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
            )
    finally:
        core.kill()
        edge.kill()
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert checks["federation key"]["ok"]
    endpoint = checks["federation endpoint"]
    assert endpoint["ok"], endpoint
    parent = checks[f"federation parent@{members(core)[0]}"]
    assert parent["ok"], parent
    failed = {name: c["message"] for name, c in checks.items() if not c["ok"]}
    assert failed == {f"federation parent@{down}": "connection refused"}
    assert done.returncode == 1
    assert "federation.port" in checks["port tcp/3147"]["message"]
