"""A loopback federation of real agent processes: a core site with the origin behind it and
edge sites whose seeders ask siblings, then the core, then the origin. Each site has its own
site key; all share one federation key (unless a test hands one a wrong one)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.site import LoopbackSite

#: Site timers for 2-agent sites on a loaded machine: a lone survivor stops counting its dead
#: partner in election majorities after member_forget_s.
SITE_TIMERS = {"member_forget_s": 6.0}


def fed_site(
    directory: Path,
    nodes: int,
    key: str,
    *,
    parents: Sequence[str] = (),
    siblings: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    apt: bool = False,
    name: str = "default",
    addresses: Sequence[str] | None = None,
) -> LoopbackSite:
    return LoopbackSite(
        directory,
        nodes,
        addresses=addresses,
        settings={
            "site": {**SITE_TIMERS, "name": name},
            "apt": {"enabled": apt},
            "federation": {
                "key": key,
                "parents": list(parents),
                "siblings": list(siblings),
                **(extra or {}),
            },
        },
    )


def new_key() -> str:
    return secrets.token_hex(32)


def members(site: LoopbackSite) -> list[str]:
    """The federation addresses of a site's agents (port 3147 on each agent's own address)."""
    return [f"{a}:3147" for a in site.addresses]


async def uplink(agent: AgentProcess) -> dict[str, int]:
    """The agent's uplink counters (``origin_bytes``, ``federation_bytes``, per link, ...)."""
    return dict((await AgentClient(agent.socket).status()).origin)


def shaped_unsupported() -> str | None:
    """Why shaped (network-namespace) federation tests cannot run here; None if they can."""
    if os.geteuid() != 0:
        return "need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "need iproute2 (ip, tc)"
    probe = f"fc{os.getpid()}-probe"  # bench._netns.cleanup_leftovers' pattern
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30, check=False)
    return None
