"""Failover uplink cost: every member of a loopback site pulls one object from a throttled origin
while the seeder is SIGKILLed or SIGSTOPped past its lease; the origin's byte counter ÷ F.

    python -m bench.failover --mode kill,pause --nodes 3 --size 64MiB --runs 2 --json

``kill``: the seeder is SIGKILLed when the origin has sent half of F (as
tests/agent/test_failover.py); ``pause``: it is SIGSTOPped for ``--pause-s`` (about a lease)
at 1/5, 2/5 and 3/5 of F, and resumed each time. One JSON object per run: ``mode``,
``uplink_bytes``, ``uplink_ratio`` (÷ F), ``uplink_delivered_ratio`` (the bytes the seeders' TCP
acknowledged ÷ F), ``origin_requests``, ``gets`` (each origin GET's Range, status, body bytes
sent and acknowledged), ``completed`` (pulls that ended
with the right bytes), ``fenced`` (agents whose log shows the fence), ``seconds``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from frumitcache.client import AgentClient
from frumitcache.config import parse_quantity
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

PATH = "/big.bin"


async def _seeder(site: LoopbackSite) -> str:
    with trio.fail_after(60):
        while True:
            views = [(await AgentClient(a.socket).status()).site for a in site.agents]
            seeders = {v.get("seeder") for v in views}
            settled = all(len(v["members"]) == len(views) for v in views)
            if len(seeders) == 1 and None not in seeders and settled:
                return str(seeders.pop())
            await trio.sleep(0.2)


async def _pull(agent: AgentProcess, url: str, digest: str, out: Path) -> int:
    argv = [sys.executable, "-m", "frumitcache", "pull", url, "--sha256", digest]
    argv += ["-o", str(out), "--socket", str(agent.socket)]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode


async def one_run(args: argparse.Namespace, mode: str, work: Path) -> dict[str, Any]:
    data = os.urandom(args.size)
    digest = hashlib.sha256(data).hexdigest()
    async with trio.open_nursery() as nursery:
        origin = OriginServer(rate=args.rate)
        await nursery.start(origin.serve, loopback_address())
        origin.add(PATH, data)
        site = LoopbackSite(work / "site", args.nodes)
        try:
            await site.start()
            first = await _seeder(site)
            victim = next(a for a in site.agents if a.settings["node"]["name"] == first)
            # A paused seeder pulls too (it comes back); a killed one is gone.
            pullers = [a for a in site.agents if mode == "pause" or a is not victim]
            codes: dict[int, int] = {}

            async def pull(i: int, agent: AgentProcess) -> None:
                codes[i] = await _pull(agent, origin.url(PATH), digest, work / f"out{i}")

            async def sent_reaches(share: float) -> None:
                while origin.stats.bytes_sent[PATH] < share * len(data):  # noqa: ASYNC110
                    await trio.sleep(0.02)

            async def disturb() -> None:
                if mode == "kill":
                    await sent_reaches(0.5)
                    victim.kill()
                    return
                for k in range(1, 4):
                    await sent_reaches(k / 5)
                    os.kill(victim.pid, signal.SIGSTOP)
                    try:
                        await trio.sleep(args.pause_s)
                    finally:
                        os.kill(victim.pid, signal.SIGCONT)

            t0 = trio.current_time()
            with trio.move_on_after(args.timeout):
                async with trio.open_nursery() as inner:
                    inner.start_soon(disturb)
                    for i, agent in enumerate(pullers):
                        inner.start_soon(pull, i, agent)
            seconds = trio.current_time() - t0
            completed = sum(
                1
                for i, code in codes.items()
                if code == 0 and (work / f"out{i}").read_bytes() == data
            )
            sent = origin.stats.bytes_sent[PATH]
            gets = [r for r in origin.stats.log if r.path == PATH]
            acked = [r.bytes_delivered for r in gets]
            return {
                "mode": mode,
                "nodes": args.nodes,
                "bytes": len(data),
                "uplink_bytes": sent,
                "uplink_ratio": round(sent / len(data), 3),
                "uplink_delivered_ratio": (
                    None if None in acked else round(sum(filter(None, acked)) / len(data), 3)
                ),
                "origin_requests": origin.stats.requests[PATH],
                # Each GET: its Range (where it resumed), status, body bytes sent and delivered.
                "gets": [
                    [r.headers.get("range", ""), r.status, r.bytes_sent, a]
                    for r, a in zip(gets, acked, strict=True)
                ],
                "completed": completed,
                "pullers": len(pullers),
                "fenced": sum("seeder.fenced" in a.log() for a in site.agents),
                # Takeovers that took the fenced seeder's unfinished chunk (agent/_tail.py).
                "tails_taken": sum(
                    line.count("takeover.tail ") for a in site.agents for line in [a.log()]
                ),
                "seconds": round(seconds, 1),
            }
        finally:
            site.kill()
            nursery.cancel_scope.cancel()


async def main_async(args: argparse.Namespace) -> None:
    for _ in range(args.runs):
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix="fc-failover-") as tmp:
                row = await one_run(args, mode, Path(tmp))
            print(json.dumps(row) if args.json else row, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--mode", default="kill,pause", help="comma-separated: kill, pause")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--size", type=lambda s: parse_quantity(s, "bytes"), default=64 << 20)
    parser.add_argument(
        "--rate", type=lambda s: parse_quantity(s, "bytes/s"), default=6 << 20,
        help="the origin's rate limit (default 6MiB/s)",
    )  # fmt: skip
    parser.add_argument("--pause-s", type=float, default=2.8, help="each SIGSTOP (about a lease)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="per run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.modes = args.mode.split(",")
    if not set(args.modes) <= {"kill", "pause"}:
        parser.error("--mode: kill, pause")
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
