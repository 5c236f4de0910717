"""README capabilities of one node, each through a real agent process and the real CLI:
``agent --set``, ``apt.listen = "0.0.0.0"``, pin/gc/verify and ``doctor`` on a broken set-up.

Every agent runs on its own loopback address and is killed by pid when the test ends; every
wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import free_port, loopback_address
from frumitcache.testing.origin import OriginServer

KiB = 1024
ANY = "0.0.0.0"  # noqa: S104 - the setting under test; only loopback addresses are dialled


def blob(size: int, seed: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


async def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "frumitcache", *args],
        cwd=cwd,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def cli_json(agent: AgentProcess, *args: str, code: int = _exit.OK) -> Any:
    result = await cli(*args, "--json", "--socket", str(agent.socket))
    assert result.returncode == code, result.stderr.decode()
    return json.loads(result.stdout)


async def http_get(host: str, port: int, url: str) -> bytes:
    """One absolute-form GET through a proxy at ``host:port``; the whole response."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        authority = url.split("/")[2]
        await stream.send_all(
            f"GET {url} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
        )
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
    return response


def banner_apt(agent: AgentProcess) -> tuple[str, int]:
    """The apt proxy's bound address as the agent's banner prints it."""
    for line in agent.banner().splitlines():
        if "apt proxy" in line:
            host, _, port = line.split("http://", 1)[1].rpartition(":")
            return host.strip("[]"), int(port)
    raise AssertionError(f"no apt proxy in the banner\n{agent.log()}")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[list[AgentProcess]]:
    """Agents a test starts; each is SIGKILLed by pid at the end whatever happened."""
    agents: list[AgentProcess] = []
    try:
        yield agents
    finally:
        for agent in agents:
            agent.kill()


# --- agent --set -------------------------------------------------------------------------------


async def test_agent_set_overrides_are_applied(
    tmp_path: Path, origin: OriginServer, running: list[AgentProcess]
) -> None:
    address = loopback_address()
    port = free_port(address)
    origin.add("/x.bin", b"hello through --set\n")
    authority = origin.url("/").split("/")[2]
    # The config file says port 0 and a disabled proxy; only --set turns it on, on ``port``.
    agent = AgentProcess(
        tmp_path / "node",
        address=address,
        settings={"apt": {"enabled": False, "port": 0, "allowed_hosts": ["nowhere.invalid"]}},
        args=[
            "--set",
            "apt.enabled=true",
            "--set",
            f"apt.port={port}",
            "--set",
            f"apt.allowed_hosts={authority}",
        ],
    )
    running.append(agent)
    with trio.fail_after(60):
        await agent.start()
        assert banner_apt(agent) == (address, port)
        response = await http_get(address, port, origin.url("/x.bin"))
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert response.endswith(b"hello through --set\n")
    assert origin.stats.requests["/x.bin"] == 1


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("apt.nosuchkey=1", "apt.nosuchkey: unknown key"),
        ("nosection.port=1", "nosection.port: unknown setting"),
        ("apt.port=notaport", "apt.port"),
        ("apt.port=70000", "apt.port: must be a port number"),
        ("apt.port", "write it as KEY=VALUE"),
    ],
)
async def test_agent_set_bad_key_is_a_config_error(
    tmp_path: Path, setting: str, named: str
) -> None:
    with trio.fail_after(60):
        result = await cli(
            "agent",
            "--set",
            f"store.path={tmp_path / 'store'}",
            "--set",
            f"control.socket={tmp_path / 'agent.sock'}",
            "--set",
            setting,
        )
    stderr = result.stderr.decode()
    assert result.returncode == _exit.CONFIG, stderr
    assert named in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "agent.sock").exists()  # it never started


# --- apt.listen = "0.0.0.0" ---------------------------------------------------------------------


async def test_apt_listen_on_every_address_serves_another_local_address(
    tmp_path: Path, origin: OriginServer, running: list[AgentProcess]
) -> None:
    node_address = loopback_address()
    other = loopback_address()  # an address of this host that is not the node's
    assert other != node_address
    origin.add("/any.bin", blob(50 * KiB, seed=1))
    authority = origin.url("/").split("/")[2]
    agent = AgentProcess(
        tmp_path / "node",
        address=node_address,
        settings={"apt": {"enabled": True, "listen": ANY, "port": 0, "allowed_hosts": [authority]}},
    )
    running.append(agent)
    with trio.fail_after(60):
        await agent.start()
        host, port = banner_apt(agent)
        from_other = await http_get(other, port, origin.url("/any.bin"))
        from_node = await http_get(node_address, port, origin.url("/any.bin"))
    assert host == ANY
    for response in (from_other, from_node):
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert response.endswith(blob(50 * KiB, seed=1))
    assert origin.stats.requests["/any.bin"] == 1  # the second one came from the store


async def test_apt_listen_on_the_node_address_only_refuses_another(
    tmp_path: Path, running: list[AgentProcess]
) -> None:
    """The default half of the same setting: bound to one address, others are refused (so the
    0.0.0.0 test above can fail)."""
    node_address = loopback_address()
    agent = AgentProcess(
        tmp_path / "node",
        address=node_address,
        settings={"apt": {"enabled": True, "listen": node_address, "port": 0}},
    )
    running.append(agent)
    with trio.fail_after(60):
        await agent.start()
        _, port = banner_apt(agent)
        with pytest.raises(OSError, match=r"[Cc]onnect"):
            await trio.open_tcp_stream(loopback_address(), port)


# --- pin / gc / verify through the agent ---------------------------------------------------------


async def test_pinned_survives_gc_unpinned_is_evicted_and_verify_finds_rot(
    tmp_path: Path, origin: OriginServer, running: list[AgentProcess]
) -> None:
    kept, dropped = blob(300 * KiB, seed=2), blob(200 * KiB, seed=3)
    origin.add("/kept.bin", kept)
    origin.add("/dropped.bin", dropped)
    kept_digest = hashlib.sha256(kept).hexdigest()
    dropped_digest = hashlib.sha256(dropped).hexdigest()
    # A 1 MiB cap: making room for 724 KiB leaves space for the 300 KiB object only.
    agent = AgentProcess(
        tmp_path / "node", address=loopback_address(), settings={"store": {"max_bytes": "1MiB"}}
    )
    running.append(agent)
    sock = ("--socket", str(agent.socket))
    with trio.fail_after(120):
        await agent.start()
        for name in ("kept", "dropped"):
            got = await cli(
                "pull", origin.url(f"/{name}.bin"), "-o", f"{name}.out", *sock, cwd=tmp_path
            )
            assert got.returncode == 0, got.stderr
        pinned = await cli_json(agent, "cache", "pin", origin.url("/kept.bin"))
        assert pinned == {"digest": kept_digest, "pinned": True, "present": True}

        gc = await cli_json(agent, "cache", "gc", "--free", "724KiB")
        assert gc["freed"] == len(dropped)
        assert gc["bytes_used"] == len(kept)
        listing = await cli_json(agent, "cache", "ls")
        assert [(o["digest"], o["pinned"]) for o in listing["objects"]] == [(kept_digest, True)]
        assert dropped_digest not in {o["digest"] for o in listing["objects"]}

        # The evicted object really is gone (the origin is asked again), the pinned one is not.
        again = await cli("pull", origin.url("/dropped.bin"), "-o", "d2.out", *sock, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert origin.stats.requests["/dropped.bin"] == 2
        still = await cli("pull", origin.url("/kept.bin"), "-o", "k2.out", *sock, cwd=tmp_path)
        assert still.returncode == 0, still.stderr
        assert origin.stats.requests["/kept.bin"] == 1

        clean = await cli_json(agent, "cache", "verify")
        assert clean["damage"] == 0
        assert clean["chunks_checked"] == 2

        # Bit rot in the pinned object's one chunk file (same size, one byte flipped).
        chunk = agent.store / "chunks" / kept_digest[:2] / kept_digest
        data = bytearray(chunk.read_bytes())
        data[1000] ^= 0x01
        chunk.write_bytes(bytes(data))
        rotten = await cli_json(agent, "cache", "verify", code=_exit.STORE)
        assert rotten["corrupt_chunks"] == 1
        assert rotten["objects_affected"] == 1
        text = await cli("cache", "verify", *sock)  # the rot is gone now: dropped and demoted
        assert text.returncode == _exit.OK, text.stderr

        # The damaged object is fetched again, whole and right.
        healed = await cli(
            "pull",
            origin.url("/kept.bin"),
            "--sha256",
            kept_digest,
            "-o",
            "k3.out",
            *sock,
            cwd=tmp_path,
        )
        assert healed.returncode == 0, healed.stderr
    assert (tmp_path / "k3.out").read_bytes() == kept
    assert origin.stats.requests["/kept.bin"] == 2


# --- doctor on a broken set-up -------------------------------------------------------------------


def _checks(result: subprocess.CompletedProcess[bytes]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(result.stdout)}


async def test_doctor_names_each_broken_part(tmp_path: Path, running: list[AgentProcess]) -> None:
    address = loopback_address()
    key = tmp_path / "site.key"
    key.write_text("c2l0ZSBrZXkgZm9yIGRvY3Rvcg==\n")
    key.chmod(0o600)
    peer_port = free_port(address)
    agent = AgentProcess(
        tmp_path / "node",
        address=address,
        settings={
            "store": {"min_free_bytes": 0},
            "site": {
                "key_file": str(key),
                # A static peer nobody runs: a real site config, so the key is required.
                "peers": [loopback_address()],
                "control_port": free_port(address),
                "peer_port": peer_port,
            },
            "swarm": {"port": free_port(address)},
        },
    )
    running.append(agent)
    doctor = ["doctor", "--json", "--config", str(agent.config_path)]
    if os.geteuid() == 0:
        doctor += ["--user", "root"]  # judge access as root, not a service user absent here

    with trio.fail_after(120):
        await agent.start()
        healthy = await cli(*doctor)
        assert healthy.returncode == _exit.OK, healthy.stdout.decode() + healthy.stderr.decode()

        # 1. The agent is not running.
        await agent.stop()
        stopped = await cli(*doctor)
        assert stopped.returncode == _exit.FAILURE
        control = _checks(stopped)["control socket"]
        assert not control["ok"]
        assert "not running" in control["message"]
        assert str(agent.socket) in control["message"]

        # 2. The key file is missing.
        key.unlink()
        no_key = await cli(*doctor)
        assert no_key.returncode == _exit.FAILURE
        failed = [c for c in _checks(no_key).values() if not c["ok"]]
        assert any(str(key) in c["message"] for c in failed), failed

        # 3. Another process holds the peer port.
        holder = subprocess.Popen(  # noqa: ASYNC220 - killed by pid below
            [
                sys.executable,
                "-c",
                "import socket,sys,time\n"
                f"s=socket.socket(); s.bind(({address!r},{peer_port})); s.listen()\n"
                "print('ready',flush=True); time.sleep(120)",
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert await trio.to_thread.run_sync(holder.stdout.readline) == b"ready\n"
            busy = await cli(*doctor)
            text = await cli(*doctor[:1], *doctor[2:])
        finally:
            holder.kill()
            holder.wait(timeout=10)
            if holder.stdout is not None:
                holder.stdout.close()
    assert busy.returncode == _exit.FAILURE
    port = _checks(busy)[f"port tcp/{peer_port}"]
    assert not port["ok"]
    assert "site.peer_port" in port["message"]
    assert f"pid {holder.pid}" in port["message"]
    # The plain text names the same problems, each with a hint.
    out = text.stdout.decode()
    assert text.returncode == _exit.FAILURE
    assert f"FAIL port tcp/{peer_port}" in out
    assert "FAIL control socket" in out
    assert "hint:" in out
