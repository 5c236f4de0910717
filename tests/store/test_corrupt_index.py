"""An index.sqlite that cannot be opened (not a database, truncated) is set aside with a clear
log line and a fresh one made; the agent starts and serves, and the chunk files on disk are
re-adopted (issue 16 finding 12). Manifests live only in the index, so objects themselves come
back on their next fetch."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from tests.cli.test_commands import cli


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_agent_starts_over_a_corrupt_index(tmp_path: Path, damage: str) -> None:
    agent = AgentProcess(tmp_path / "node", address=loopback_address())
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "a.deb").write_bytes(os.urandom(3 * 1024 * 1024))
    with trio.fail_after(90):
        await agent.start()
        try:
            assert (await cli(agent, "cache", "import", str(debs))).returncode == 0
        finally:
            await agent.stop()
        index = agent.store / "index.sqlite"
        if damage == "garbage":
            index.write_bytes(b"this is not an sqlite database" * 100)
        else:
            index.write_bytes(index.read_bytes()[:50])
        for extra in ("index.sqlite-wal", "index.sqlite-shm"):
            (agent.store / extra).unlink(missing_ok=True)
        await agent.start()
        try:
            assert (await cli(agent, "status")).returncode == 0
            log = agent.log()
            assert "index.set-aside" in log
            assert list(agent.store.glob("index.sqlite.corrupt-*")), list(agent.store.iterdir())
            # The chunk files on disk were re-adopted.
            adopted = re.search(r"orphans_adopted=(\d+)", log)
            assert adopted is not None, log
            assert int(adopted.group(1)) > 0, log
        finally:
            agent.kill()
