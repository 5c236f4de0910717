"""The registry door in a real agent process: on by default beside the other doors, counted in
``frumitcache status`` and ``/metrics``, and a port that cannot be bound turns only this door
off (logged), never the agent."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address


async def test_on_by_default_and_counted(tmp_path: Path) -> None:
    address = loopback_address()
    agent = AgentProcess(tmp_path / "a", address=address)
    assert "enabled" not in agent.settings["oci"]  # the default is what is tested
    await agent.start()
    try:
        assert f"registry mirror http://{address}:3146" in agent.banner()
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"http://{address}:3146/v2/")).status_code == 200
            unknown = await client.get(f"http://{address}:3146/v2/x/y/manifests/v1?ns=no.such")
            assert unknown.status_code == 404
            metrics = (await client.get(f"http://{address}:3146/metrics")).text
        assert "frumitcache_oci_manifest_gets_spared_total 0" in metrics
        assert 'frumitcache_oci_manifests_total{source="uplink"} 0' in metrics
        status = await AgentClient(agent.socket).status()
        assert status.oci == f"{address}:3146"
        assert status.oci_counters is not None
        assert status.oci_counters["requests"] == 3  # /v2/, the 404 and /metrics
        assert status.oci_counters["errors"] == 1
        assert status.oci_counters["bytes_uplink"] == 0
        result = await trio.run_process(
            [sys.executable, "-m", "frumitcache", "status", "--socket", str(agent.socket)],
            capture_stdout=True,
        )
        text = result.stdout.decode()
        assert f"registry mirror: {address}:3146" in text
        assert "oci manifest_gets_spared: 0" in text
    finally:
        await agent.stop()


async def test_a_port_in_use_turns_only_this_door_off(tmp_path: Path) -> None:
    address = loopback_address()
    holder = socket.socket()
    holder.bind((address, 0))
    holder.listen()
    port = holder.getsockname()[1]
    agent = AgentProcess(
        tmp_path / "a",
        address=address,
        settings={"oci": {"port": port}, "apt": {"enabled": True, "port": 0}},
    )
    try:
        await agent.start()
        assert "oci.unavailable" in agent.log()
        assert f"{address}:{port}" in agent.log()
        assert "registry mirror" not in agent.banner()
        assert "apt proxy" in agent.banner()  # the other doors serve
        status = await AgentClient(agent.socket).status()
        assert status.oci == ""
        assert status.oci_counters is None
        assert status.apt
        assert agent.proc is not None
        assert agent.proc.poll() is None
    finally:
        holder.close()
        await agent.stop()
