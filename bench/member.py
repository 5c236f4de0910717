"""One holder → one member: how fast a member pulls a complete object from the site.

    python -m bench.member --size 256MiB --json
    python -m bench.member --size 256MiB --cpu-quota 10 --json      # per-Pi cgroups (root)

Real agents (``python -m frumitcache agent``; two, or ``--agents K``) on loopback addresses
form one site, as in :mod:`bench.herd`'s ``frumitcache`` system; with more than two, the others
stay idle, as when one Pi pulls what the seeder already holds. The object is put on the seeder
first (its own ``frumitcache pull`` from a local origin, not measured); then ``frumitcache
pull`` on one other Pi (the member) fetches it while the origin counts what it is asked for.
The origin has no rate limit: the figure is the member's data path (carrier, hashing, store,
client hand-off), not a link.

One JSON object per ``--repeat``: ``seconds``, ``MBps`` (10^6 bytes/s), each agent's CPU
seconds per GB (``holder_cpu_s_per_gb``, ``member_cpu_s_per_gb``, from ``/proc``), the pull
client's (``client_cpu_s_per_gb``), each agent's peak RSS, ``origin_bytes`` during the pull
(0 when the member got everything from the holder), ``verified``, and with a budget the
fields of :mod:`bench._cgroup` (``cpu_quota_pct``, ``throttled_s``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench import _cgroup
from bench._blob import sha256_of, write_random
from bench._cgroup import PROFILES
from bench._herdcli import agent_settings, budget_of
from bench._report import machine
from bench._systems import Frumitcache, cpu_seconds, memory_mb
from bench._testbed import LoopbackTestbed, Rates
from bench.herd import OBJECT_PATH, wait_exit
from frumitcache.config import parse_quantity


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace, bed: LoopbackTestbed, work: Path) -> list[dict[str, Any]]:
    root = work / "origin"
    sha = write_random(root / OBJECT_PATH.lstrip("/"), args.size)
    base = await trio.to_thread.run_sync(bed.start_origin, root)
    url = base + OBJECT_PATH
    rows: list[dict[str, Any]] = []
    for attempt in range(args.repeat):
        system = Frumitcache(bed, work / f"site{attempt}", args.agent_settings)
        try:
            await system.start()
            await system.warm(url, sha)
            holder = await system.seeder()
            member = 1 if holder == 0 else 0
            await trio.to_thread.run_sync(bed.reset_origin)
            out = work / "member.bin"
            pids = [d.pid for d in system.daemons]
            cpu0 = [cpu_seconds(p) for p in pids]
            client0 = _children_cpu_s()
            before = bed.cgroups.snapshot() if bed.cgroups else {}
            err = (work / "pull.err").open("wb")
            proc = bed.spawn_argv(system.client_argv(member, url, sha, out), stderr=err, pi=member)
            err.close()
            started = time.monotonic()
            with trio.fail_after(args.timeout):
                code = await wait_exit(proc)
            seconds = time.monotonic() - started
            cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
            client = _children_cpu_s() - client0
            stats = await trio.to_thread.run_sync(bed.origin_stats)
            peak = [memory_mb(p) for p in pids]
            verified = code == 0 and await trio.to_thread.run_sync(sha256_of, out) == sha
            gb = args.size / 1e9
            row: dict[str, Any] = {
                "bench": "member",
                "bytes": args.size,
                "agents": args.agents,
                "agent_set": list(args.agent_set),
                "seconds": seconds,
                "MBps": args.size / seconds / 1e6,
                "verified": verified,
                "origin_bytes": int(stats["total_bytes_sent"]),
                "holder_cpu_s_per_gb": cpu[holder] / gb,
                "member_cpu_s_per_gb": cpu[member] / gb,
                "client_cpu_s_per_gb": client / gb,
                "holder_peak_rss_mb": peak[holder],
                "member_peak_rss_mb": peak[member],
                **_cgroup.describe(args.budget),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            if bed.cgroups is not None:
                row.update(bed.cgroups.figures(before, args.size))
            if code != 0:
                row["error"] = (work / "pull.err").read_text(errors="replace")[-300:]
            out.unlink(missing_ok=True)
            rows.append(row)
            print(json.dumps(row) if args.json else _line(row), flush=True)
        finally:
            with trio.CancelScope(shield=True):
                await system.stop()
            shutil.rmtree(system.work, ignore_errors=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['bytes'] >> 20} MiB in {row['seconds']:.2f} s = {row['MBps']:.1f} MB/s, "
        f"CPU-s/GB holder {row['holder_cpu_s_per_gb']:.1f} member {row['member_cpu_s_per_gb']:.1f} "
        f"client {row['client_cpu_s_per_gb']:.1f}, peak RSS {row['holder_peak_rss_mb']} / "
        f"{row['member_peak_rss_mb']} MB, verified={row['verified']}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--size", type=lambda s: parse_quantity(s, "bytes"), default=256 << 20,
        help="object size (default 256MiB)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--agents", type=int, default=2,
        help="agents in the site (default 2); one holds the object, one pulls, the rest idle",
    )  # fmt: skip
    parser.add_argument(
        "--agent-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="an agent setting for every agent, e.g. swarm.seeder_grace_s=20.0 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600, help="per pull, seconds")
    parser.add_argument("--cpu-quota", type=float, default=None, metavar="PCT")
    parser.add_argument("--memory", type=int, default=None, metavar="MB")
    parser.add_argument("--pi", choices=sorted(PROFILES), default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.agents < 2:
        parser.error("--agents: at least 2 (a holder and a member)")
    try:
        args.agent_settings = agent_settings(args.agent_set)
    except ValueError as exc:
        parser.error(f"--agent-set: {exc}")
    args.budget = budget_of(args)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.budget is not None and os.geteuid() != 0:
        raise SystemExit("--cpu-quota / --memory / --pi need root (per-Pi cgroups)")
    work = Path(tempfile.mkdtemp(prefix="member-"))
    bed = LoopbackTestbed(args.agents, Rates(None, None, None), work)
    cgroups: _cgroup.CgroupSet | None = None
    try:
        if args.budget is not None:
            cgroups = _cgroup.CgroupSet([pi.name for pi in bed.pis], args.budget)
            try:
                cgroups.setup()
            except _cgroup.CgroupError as exc:
                raise SystemExit(str(exc)) from exc
            bed.cgroups = cgroups
        rows = trio.run(run, args, bed, work)
    finally:
        bed.close()
        if cgroups is not None:
            cgroups.teardown()
        shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        m = machine()
        sys.stderr.write(f"on {m['nproc']} x {m['cpu']}\n")
    return rows


if __name__ == "__main__":
    main()
