"""Agent memory at rest: RSS of real agent processes, idle, one-node and in a site.

    python -m bench.agent_rss --json

Starts, on loopback addresses, (1) the embedded one-node agent (apt proxy on) and (2) a
three-agent site (libtorrent session, peer port, control plane), lets each idle for
``--idle`` seconds, and reads VmRSS and VmHWM from /proc. A Pi model B has 512 MB for
everything: these are the figures to watch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from bench._systems import memory_mb
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.site import LoopbackSite


def proc_mem_mb(pid: int) -> dict[str, float]:
    return {key: round(memory_mb(pid, key) or 0.0, 1) for key in ("VmRSS", "VmHWM")}


async def measure(idle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fc-rss-") as tmp:
        root = Path(tmp)
        solo = AgentProcess(
            root / "solo", address=loopback_address(), settings={"apt": {"enabled": True}}
        )
        site = LoopbackSite(root / "site", 3)
        try:
            await solo.start()
            await site.start()
            await trio.sleep(idle_s)
            solo_mem = proc_mem_mb(solo.pid)
            site_mem = [proc_mem_mb(a.pid) for a in site.agents]
        finally:
            solo.kill()
            site.kill()
    return {
        "idle_s": idle_s,
        "solo_agent_rss_mb": solo_mem["VmRSS"],
        "solo_agent_peak_rss_mb": solo_mem["VmHWM"],
        "site_agent_rss_mb": max(m["VmRSS"] for m in site_mem),
        "site_agent_peak_rss_mb": max(m["VmHWM"] for m in site_mem),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_rss", description=__doc__)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to idle before reading")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    return trio.run(measure, args.idle)


if __name__ == "__main__":
    result = main()
    print(json.dumps(result, indent=None if "--json" in sys.argv else 2))
