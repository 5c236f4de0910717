"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer


@pytest.fixture
def address() -> str:
    """A loopback address of its own for the node under test."""
    return loopback_address()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    server = OriginServer()
    await nursery.start(server.serve, loopback_address())
    return server


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[AgentProcess]:
    proc = AgentProcess(tmp_path / "node", address=loopback_address())
    await proc.start()
    try:
        yield proc
    finally:
        proc.kill()
