"""The shaped federation benchmark (root): a core site and edge sites, each behind its own
shaped uplink to a backbone, the origin beyond it; every Pi of every site pulls the same object
at once.

    python -m bench.federation --core 2 --edges 3 --pis 3 --size 32MiB --uplink 20Mbit \\
        --core-uplink 100Mbit --mode both --json

``--mode federated``: the edges name the core's agents as parents (one edge by IPv6, the rest by
IPv4); ``islands``: no federation, every site fetches from the origin itself; ``both`` runs
each. One JSON object per mode: ``origin_bytes`` (the origin's own counter) and
``origin_ratio`` (÷ F), ``federation_bytes`` (what edges got from the core), ``t_last_s`` (the
last Pi's verified copy), ``t_bound_s`` = max(F/U, E·F/U_core) (every edge's uplink must carry
F; the core's must carry F in and E·F out), ``bound_ratio``, ``times_s`` per Pi. See
:mod:`bench._netfed` for the namespaces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench._netfed import ORIGIN_PORT, ShapedFederation, origin_stats, site_agents, start_origin
from bench._netns import cleanup_leftovers
from frumitcache.client import AgentClient
from frumitcache.config import parse_quantity
from frumitcache.testing.agents import AgentProcess


async def _pull(agent: AgentProcess, url: str, digest: str, out: Path) -> bool:
    result = await trio.run_process(
        [sys.executable, "-m", "frumitcache", "pull", url, "--sha256", digest, "-o", str(out),
         "--socket", str(agent.socket)],
        capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    return result.returncode == 0


async def run(args: argparse.Namespace, mode: str, work: Path) -> dict[str, Any]:
    size = parse_quantity(args.size, "bytes")
    uplink = parse_quantity(args.uplink, "bytes/s")
    core_uplink = parse_quantity(args.core_uplink, "bytes/s") if args.core_uplink else uplink
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    www = work / "www"
    www.mkdir(parents=True)
    (www / "release.bin").write_bytes(data)
    fed = ShapedFederation(
        [args.core] + [args.pis] * args.edges, uplink=uplink, core_uplink=core_uplink
    )
    agents: list[list[AgentProcess]] = []
    origin: subprocess.Popen[bytes] | None = None
    try:
        fed.build()
        origin = start_origin(fed, www)
        key = os.urandom(32).hex() if mode == "federated" else None
        by_v6 = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(args.core)]
        by_v4 = [f"{fed.pi_v4(0, i)}:3147" for i in range(args.core)]
        for s in range(1 + args.edges):
            parents = [] if s == 0 else by_v6 if s == 1 else by_v4
            agents.append(site_agents(fed, s, work / mode, key, parents))
        flat = [a for site in agents for a in site]
        async with trio.open_nursery() as nursery:
            for agent in flat:
                nursery.start_soon(agent.start)
        await trio.sleep(args.settle_s)  # seeders elected
        url = f"http://{fed.origin_v4}:{ORIGIN_PORT}/release.bin"
        times: dict[str, float | None] = {}
        start = time.monotonic()

        async def one(agent: AgentProcess) -> None:
            name = str(agent.settings["node"]["name"])
            ok = await _pull(agent, url, digest, work / f"{mode}-{name}.out")
            times[name] = time.monotonic() - start if ok else None

        async with trio.open_nursery() as nursery:
            for agent in flat:
                nursery.start_soon(one, agent)
        verified = all(
            t is not None and (work / f"{mode}-{n}.out").read_bytes() == data
            for n, t in times.items()
        )
        sent = int(origin_stats(fed)["bytes_sent"].get("/release.bin", 0))
        federated = 0
        for site in agents[1:]:
            for agent in site:
                federated += int(
                    (await AgentClient(agent.socket).status()).origin.get("federation_bytes", 0)
                )
        done = [t for t in times.values() if t is not None]
        bound = max(size / uplink, args.edges * size / core_uplink)
        t_last = max(done) if len(done) == len(times) else None
        return {
            "mode": mode,
            "sites": 1 + args.edges,
            "pis": len(flat),
            "bytes": size,
            "uplink_bytes_s": uplink,
            "core_uplink_bytes_s": core_uplink,
            "origin_bytes": sent,
            "origin_ratio": round(sent / size, 4),
            "federation_bytes": federated,
            "t_last_s": round(t_last, 2) if t_last is not None else None,
            "t_bound_s": round(bound, 2),
            "bound_ratio": round(t_last / bound, 3) if t_last is not None else None,
            "verified": verified,
            "times_s": {n: round(t, 2) if t is not None else None for n, t in times.items()},
        }
    finally:
        for site in agents:
            for agent in site:
                agent.kill()
        if origin is not None:
            origin.kill()
            origin.wait(timeout=10)
            if origin.stdout is not None:
                origin.stdout.close()
        fed.teardown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.federation", description=__doc__)
    parser.add_argument("--core", type=int, default=2, help="Pis of the core site")
    parser.add_argument("--edges", type=int, default=3, help="edge sites")
    parser.add_argument("--pis", type=int, default=3, help="Pis per edge site")
    parser.add_argument("--size", default="32MiB")
    parser.add_argument("--uplink", default="20Mbit", help="each edge site's uplink, each way")
    parser.add_argument("--core-uplink", default="100Mbit", help="the core's uplink, each way")
    parser.add_argument("--mode", choices=("federated", "islands", "both"), default="both")
    parser.add_argument("--settle-s", type=float, default=8.0, help="wait for seeders first")
    parser.add_argument("--json", action="store_true", help="one JSON object per mode")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.federation needs root (network namespaces and tc)")
    cleanup_leftovers()
    modes = ("federated", "islands") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="fc-fed-") as tmp:
        for mode in modes:
            result = trio.run(run, args, mode, Path(tmp) / mode)
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{mode}: origin {result['origin_ratio']}x F, last Pi {result['t_last_s']} s "
                    f"({result['bound_ratio']}x the bound {result['t_bound_s']} s), "
                    f"verified={result['verified']}"
                )


if __name__ == "__main__":
    main()
