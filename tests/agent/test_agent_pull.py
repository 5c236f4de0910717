"""The one-node agent as a user meets it: a real agent process, the real CLI, a real origin."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import Fault, OriginServer

MiB = 1024 * 1024


def blob(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


async def test_banner_says_where_it_listens_and_stores(agent: AgentProcess) -> None:
    banner = agent.banner()
    assert str(agent.socket) in banner
    assert str(agent.store) in banner
    assert agent.socket.exists()


async def test_sigterm_and_sigint_stop_cleanly(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        node = AgentProcess(tmp_path / sig.name, address=loopback_address())
        await node.start()
        code = await node.stop(sig)
        assert code == 0, node.log()
        assert "agent stopped" in node.banner()
        assert not node.socket.exists()


async def test_pull_verifies_and_writes_the_file(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(9 * MiB + 123)
    origin.add("/big.bin", data)
    digest = hashlib.sha256(data).hexdigest()
    with trio.fail_after(60):
        result = await agent.pull(
            origin.url("/big.bin"), "--sha256", digest, "-o", "out.bin", cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.bin").read_bytes() == data
    assert digest in result.stderr.decode()  # the plain summary when not on a terminal
    assert origin.stats.bytes_sent["/big.bin"] == len(data)

    # A second pull is served by the store: the origin sees nothing more.
    with trio.fail_after(60):
        again = await agent.pull(origin.url("/big.bin"), "-o", "again.bin", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.bin").read_bytes() == data
    assert origin.stats.requests["/big.bin"] == 1
    assert b"from store" in again.stderr


async def test_wrong_digest_fails_and_leaves_no_file(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(5 * MiB, seed=1)
    origin.add("/a.bin", data)
    with trio.fail_after(60):
        result = await agent.pull(
            origin.url("/a.bin"), "--sha256", "00" * 32, "-o", "a.bin", cwd=tmp_path
        )
    assert result.returncode == _exit.DIGEST_MISMATCH, result.stderr
    assert b"sha256" in result.stderr.lower() or b"SHA-256" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]  # noqa: ASYNC240
    # Nothing was stored: the right digest later makes the agent fetch again.
    with trio.fail_after(60):
        ok = await agent.pull(
            origin.url("/a.bin"),
            "--sha256",
            hashlib.sha256(data).hexdigest(),
            "-o",
            "a.bin",
            cwd=tmp_path,
        )
    assert ok.returncode == 0, ok.stderr
    assert origin.stats.requests["/a.bin"] == 2


async def test_origin_errors_are_reported_and_not_stored(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        missing = await agent.pull(origin.url("/missing.bin"), "-o", "m.bin", cwd=tmp_path)
    assert missing.returncode == _exit.ORIGIN
    assert b"404" in missing.stderr
    origin.add("/flaky.bin", blob(MiB, seed=2))
    origin.misbehave("/flaky.bin", Fault(status=500, times=1))
    with trio.fail_after(60):
        failed = await agent.pull(origin.url("/flaky.bin"), "-o", "f.bin", cwd=tmp_path)
    assert failed.returncode == _exit.ORIGIN
    assert b"500" in failed.stderr
    assert not (tmp_path / "f.bin").exists()
    with trio.fail_after(60):
        ok = await agent.pull(origin.url("/flaky.bin"), "-o", "f.bin", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "f.bin").read_bytes() == blob(MiB, seed=2)


async def test_concurrent_pulls_fetch_the_origin_once(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(6 * MiB, seed=3)
    origin.add("/herd.bin", data)
    results: list[subprocess.CompletedProcess[bytes]] = []

    async def one(i: int) -> None:
        results.append(await agent.pull(origin.url("/herd.bin"), "-o", f"h{i}.bin", cwd=tmp_path))

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(one, i)
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    for i in range(6):
        assert (tmp_path / f"h{i}.bin").read_bytes() == data
    assert origin.stats.requests["/herd.bin"] == 1
    assert origin.stats.bytes_sent["/herd.bin"] == len(data)


async def test_progress_bar_on_a_terminal(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    origin.add("/tty.bin", blob(3 * MiB, seed=4))
    leader, follower = os.openpty()
    try:
        proc = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "frumitcache",
                "pull",
                origin.url("/tty.bin"),
                "-o",
                "t.bin",
                "--socket",
                str(agent.socket),
            ],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )
        os.close(follower)
        follower = -1
        output = b""
        with trio.fail_after(60):
            while True:
                try:
                    chunk = await trio.to_thread.run_sync(os.read, leader, 65536)
                except OSError:
                    break  # EIO: the child closed the terminal
                if not chunk:
                    break
                output += chunk
            assert await proc.wait() == 0, output
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    text = output.decode(errors="replace")
    assert "t.bin" in text
    assert "3.1/3.1 MB" in text  # rich's download column at the end


async def test_a_second_agent_on_the_same_socket_is_refused(
    agent: AgentProcess, tmp_path: Path
) -> None:
    twin = AgentProcess(tmp_path / "twin", address=loopback_address())
    twin.socket = agent.socket
    twin.settings["control"]["socket"] = str(agent.socket)
    try:
        with pytest.raises(RuntimeError, match="another agent already listens"):
            await twin.start(patience_s=15)
    finally:
        twin.kill()
    assert agent.proc is not None
    assert agent.proc.poll() is None


async def test_sigterm_during_a_transfer_leaves_a_clean_store(tmp_path: Path) -> None:
    """SIGTERM mid-fetch: the agent drains for its grace period, then stops; the half-fetched
    object is kept only as a resumable partial, never as complete, and the store is clean."""
    from frumitcache.cli._agent_cmd import GRACE_S
    from frumitcache.store import Store

    data = blob(24 * MiB, seed=9)
    async with trio.open_nursery() as nursery:
        slow = OriginServer(rate=MiB)  # 24 s of body: longer than the grace period
        await nursery.start(slow.serve, loopback_address())
        slow.add("/slow.bin", data)
        node = AgentProcess(tmp_path / "node", address=loopback_address())
        await node.start()
        try:
            puller = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "frumitcache",
                    "pull",
                    slow.url("/slow.bin"),
                    "-o",
                    str(tmp_path / "slow.bin"),
                    "--socket",
                    str(node.socket),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            with trio.fail_after(30):
                while slow.stats.bytes_sent["/slow.bin"] < 6 * MiB:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            with trio.fail_after(GRACE_S + 20):
                assert await node.stop(signal.SIGTERM) == 0, node.log()
                assert await puller.wait() != 0  # its agent went away mid-object
        finally:
            node.kill()
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "slow.bin").exists()
    with Store.open(node.store, max_bytes=1 << 34, chunk_size=4 * MiB) as store:
        assert store.lookup(slow.url("/slow.bin")) is None
        assert len(store.partial_chunks(slow.url("/slow.bin"))) >= 1  # kept to resume
        report = await store.scrub()
        assert report.corrupt_chunks == 0
        assert report.missing_chunks == 0


async def test_disk_full_is_a_clear_error_and_the_agent_keeps_serving(
    origin: OriginServer, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the store")
    small = tmp_path / "small"
    small.mkdir()
    await trio.run_process(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(small)])
    node = AgentProcess(
        tmp_path / "node",
        address=loopback_address(),
        settings={"store": {"path": str(small / "store"), "min_free_bytes": 0}},
    )
    try:
        await node.start()
        fits = blob(3 * MiB, seed=21)
        origin.add("/fits.bin", fits)
        origin.add("/huge.bin", blob(20 * MiB, seed=22))
        with trio.fail_after(60):
            first = await node.pull(origin.url("/fits.bin"), "-o", "fits.bin", cwd=tmp_path)
            assert first.returncode == 0, first.stderr
            huge = await node.pull(origin.url("/huge.bin"), "-o", "huge.bin", cwd=tmp_path)
        assert huge.returncode == _exit.STORE, huge.stderr
        assert b"full" in huge.stderr.lower()
        assert not (tmp_path / "huge.bin").exists()
        # Still serving what it had, from the store, with nothing partial left complete.
        with trio.fail_after(60):
            again = await node.pull(origin.url("/fits.bin"), "-o", "again.bin", cwd=tmp_path)
        assert again.returncode == 0, (again.stderr, node.log())
        assert (tmp_path / "again.bin").read_bytes() == fits
        assert node.proc is not None
        assert node.proc.poll() is None
    finally:
        node.kill()
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", "-l", str(small)], check=False)


async def test_a_newer_version_at_the_same_url_is_fetched_by_its_digest(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    old, new = blob(MiB, seed=31), blob(MiB, seed=32)
    origin.add("/artifact.tar", old)
    with trio.fail_after(60):
        first = await agent.pull(origin.url("/artifact.tar"), "-o", "a1", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        origin.add("/artifact.tar", new)  # republished
        digest = hashlib.sha256(new).hexdigest()
        second = await agent.pull(
            origin.url("/artifact.tar"), "--sha256", digest, "-o", "a2", cwd=tmp_path
        )
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "a1").read_bytes() == old
    assert (tmp_path / "a2").read_bytes() == new
