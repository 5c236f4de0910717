"""One real agent whose registry mirror stands in front of a test origin named ``lab.example``:
the set-up the registry door's HTTP tests share (the origin's request log is the uplink's
ground truth; a test may put a proxy of its own between them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer


def host_of(origin: OriginServer) -> str:
    return urlsplit(origin.url("/")).netloc


def registry_settings(host: str, **oci: Any) -> dict[str, Any]:
    """An ``[oci]`` section mirroring ``host`` as ``lab.example``, with ``oci`` on top."""
    return {"registries": [f"lab.example=http://{host}"], "allowed_hosts": [host], **oci}


class Mirror:
    def __init__(self, agent: AgentProcess, client: httpx.AsyncClient, url: str) -> None:
        self.agent = agent
        self.client = client
        self.url = url

    async def get(self, path: str) -> httpx.Response:
        """``GET path`` from the mirror, for the registry ``lab.example``."""
        return await self.client.get(f"{self.url}{path}?ns=lab.example")


@asynccontextmanager
async def mirror(
    tmp_path: Path,
    host: str,
    *,
    oci: dict[str, Any] | None = None,
    origin_settings: dict[str, Any] | None = None,
    timeout_s: float = 20.0,
) -> AsyncIterator[Mirror]:
    """A started agent mirroring the registry at ``host`` and a client for it; the agent
    stopped after."""
    address = loopback_address()
    settings: dict[str, Any] = {"oci": registry_settings(host, **(oci or {}))}
    if origin_settings:
        settings["origin"] = origin_settings
    agent = AgentProcess(tmp_path / "a", address=address, settings=settings)
    await agent.start()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            yield Mirror(agent, client, f"http://{address}:3146")
    finally:
        await agent.stop()
