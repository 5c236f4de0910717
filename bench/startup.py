"""What one ``frumitcache pull`` costs the client: CPU seconds of the whole process.

    python -m bench.startup --runs 9 --out /tmp/startup.json

One real agent and a local origin on loopback; the object (``--size``, small: the figure is the
client's start-up and conversation, not its bytes) is pulled once to put it in the store, then
``frumitcache pull URL -o FILE`` runs ``--runs`` times, one after the other, and so does
``frumitcache pull --help``. Each run's CPU is the child's user + system time
(``getrusage(RUSAGE_CHILDREN)`` around it); the JSON gives every run and the medians. On a Pi
the client shares the Pi's budget with its agent, so this is wall time there.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer


def child_cpu(argv: list[str]) -> float:
    """CPU seconds (user + system) of one run of ``argv``, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


async def measure(runs: int, size: int, work: Path) -> dict[str, Any]:
    origin = OriginServer()
    agent = AgentProcess(work / "node", address=loopback_address())
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        origin.add("/obj.bin", bytes(range(256)) * (size // 256))
        await agent.start()
        try:
            url = origin.url("/obj.bin")
            pull = [sys.executable, "-m", "frumitcache", "pull", url, "--socket", str(agent.socket)]
            out = str(work / "obj.bin")
            await trio.to_thread.run_sync(child_cpu, [*pull, "-q", "-o", out])  # into the store
            pulls = [
                await trio.to_thread.run_sync(child_cpu, [*pull, "-q", "-o", out])
                for _ in range(runs)
            ]
            helps = [
                await trio.to_thread.run_sync(
                    child_cpu, [sys.executable, "-m", "frumitcache", "pull", "--help"]
                )
                for _ in range(runs)
            ]
        finally:
            agent.kill()
        nursery.cancel_scope.cancel()
    return {
        "size": size,
        "runs": runs,
        "pull_cpu_s": pulls,
        "pull_median_cpu_s": statistics.median(pulls),
        "help_cpu_s": helps,
        "help_median_cpu_s": statistics.median(helps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--size", type=int, default=64 * 1024, help="object size in bytes")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        result = trio.run(measure, args.runs, args.size, Path(tmp))
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
