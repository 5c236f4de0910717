"""The carrier's floor: what bare libtorrent costs Pis to move a warm object, beside the agents.

    python -m bench.carrier --nodes 8 --size 64MiB --cpu-quota 10 --json        # loopback (root)
    python -m bench.carrier --shaped --nodes 8 --size 64MiB --down 100Mbit --up 100Mbit \
        --cpu-quota 10 --json

A warm herd: one Pi (the holder) holds a complete object and the other N-1 take it at once.
Each round runs these systems in turn (``--systems``; the order flips every other round), each
in a fresh testbed with the same per-Pi budget:

* ``chunks``: a bare libtorrent session per Pi (``bench/_carrier_node.py``: the agent's settings
  pack, nothing else of the agent), one v2 torrent per chunk (the agent's chunk and piece
  sizes), every fetcher dialling every other Pi for every torrent.
* ``chunks-assigned``: the same, but a fetcher dials the holder only for the chunks assigned
  to it (round robin) and trades the rest with its fellows: the agent's rule for a complete
  object (one copy leaves the holder), with the assigned copy through libtorrent too, so the
  others take its pieces as they arrive. The agent's carrier without the agent.
* ``object``: one v2 torrent for the whole object (same piece size), everyone dials everyone.
* ``object-super``: ``object`` with the holder super-seeding.
* ``agents``: bench.herd's warm row (real agents and ``frumitcache pull`` clients) with the
  same options, run as a subprocess.

One JSON object per row: ``seconds`` (the last fetcher holding every byte; for ``agents`` the
last verified pull), ``bound_ratio`` (shaped: ÷ bench.herd's warm bound), ``cpu_s`` and
``cpu_s_per_gb`` (the carrier processes of all Pis over the timed window, per GB of N·F, as
bench.herd counts its agents' CPU), the holder's and the fetchers' CPU seconds,
``holder_sent_ratio`` (the holder's payload sent ÷ F), ``throttled_s``, ``max_rss_mb`` and
``verified``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from bench import _cgroup
from bench._blob import write_random
from bench._cgroup import PROFILES
from bench._herdcli import budget_of
from bench._report import lower_bound
from bench._testbed import LoopbackTestbed, Rates, ShapedTestbed, Testbed
from frumitcache.config import parse_quantity
from frumitcache.swarm._merkle import file_tree, merkle_tree, piece_size_for
from frumitcache.swarm._torrent import bencode, torrent_of_tree

SYSTEMS = ("chunks", "chunks-assigned", "object", "object-super", "agents")
PORT = 3145


def _object_torrent(path: Path, piece: int) -> bytes:
    """The whole object's v2 torrent with its piece layer (what a seeder adds), at the chunks'
    piece size: the agent's ``chunk_torrent`` derives its piece size from the file's own."""
    _, t, _ = file_tree(path, piece, sha=False)
    info = {
        b"file tree": {b"object": {b"": {b"length": t.size, b"pieces root": t.root}}},
        b"meta version": 2,
        b"name": b"object",
        b"piece length": piece,
    }
    out: dict[bytes, object] = {b"info": info}
    if t.piece_layer:  # BEP 52 leaves it out for a file of one piece
        out[b"piece layers"] = {t.root: t.piece_layer}
    return bencode(out)


def prepare(work: Path, size: int, chunk: int) -> str:
    """The object split as an agent stores it and each layout's torrents, the holder's files
    in ``<layout>/held``; returns the object's SHA-256 (hex)."""
    whole = work / "object.bin"
    sha = write_random(whole, size)
    piece = piece_size_for(chunk)
    for layout in ("chunks", "object"):
        (work / layout / "held").mkdir(parents=True)
        (work / layout / "torrents").mkdir(parents=True)
    with whole.open("rb") as f:
        i = 0
        while data := f.read(chunk):
            # The agent's own chunk torrent, byte for byte (no site key).
            tree = merkle_tree(data)
            ct = torrent_of_tree(hashlib.sha256(data).digest(), tree)
            (work / "chunks" / "held" / ct.name).write_bytes(data)
            (work / "chunks" / "torrents" / f"{i:05d}.torrent").write_bytes(
                ct.seeder_bytes(tree.piece_layer)
            )
            i += 1
    os.link(whole, work / "object" / "held" / "object")
    (work / "object" / "torrents" / "00000.torrent").write_bytes(_object_torrent(whole, piece))
    return sha


def _lines(procs: list[subprocess.Popen[bytes]], key: str, deadline: float) -> list[Any]:
    """The next JSON line holding ``key`` from each process (``None``: none by the deadline)."""
    found: list[Any] = [None] * len(procs)
    pending = {p.stdout.fileno(): i for i, p in enumerate(procs) if p.stdout is not None}
    buffers: dict[int, bytes] = dict.fromkeys(pending, b"")
    while pending and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(pending), [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                del pending[fd]
                continue
            buffers[fd] += data
            while b"\n" in buffers[fd]:
                line, buffers[fd] = buffers[fd].split(b"\n", 1)
                with contextlib.suppress(ValueError):
                    value = json.loads(line)
                    if key in value and fd in pending:
                        found[pending.pop(fd)] = value
    return found


def run_bare(
    args: argparse.Namespace,
    bed: Testbed,
    layout: Path,
    sha: str,
    *,
    super_seed: bool = False,
    assigned: bool = False,
) -> dict[str, Any]:
    """One herd of bare libtorrent sessions: Pi 0 holds, the others fetch."""
    control = layout / "control"
    shutil.rmtree(control, ignore_errors=True)
    control.mkdir()
    python = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    for i, pi in enumerate(bed.pis):
        save = layout / "held" if i == 0 else layout / f"pi{i}"
        if i:
            shutil.rmtree(save, ignore_errors=True)
        save.mkdir(exist_ok=True)
        # The holder first: a fetcher with ``--assigned`` dials it only for its own chunks.
        peers = ",".join(f"{p.address}:{PORT}" for j, p in enumerate(bed.pis) if j != i)
        argv = [python, "-m", "bench._carrier_node", "--address", pi.address, "--port", str(PORT)]
        argv += ["--save", str(save), "--torrents", str(layout / "torrents")]
        argv += ["--control", str(control), "--peers", peers]
        if i == 0:
            argv += ["--seed", *(["--super-seed"] if super_seed else [])]
        elif assigned:
            argv += ["--assigned", f"{i - 1}/{len(bed.pis) - 1}"]
        err: IO[bytes] = (layout / f"pi{i}.err").open("wb")
        procs.append(bed.spawn(pi, argv, stdout=subprocess.PIPE, stderr=err))
        err.close()
    ready = _lines(procs, "ready", time.monotonic() + 60)
    if None in ready:
        raise RuntimeError(f"a node did not start: see {layout}/pi*.err")
    before = bed.cgroups.snapshot() if bed.cgroups else {}
    (control / "go").touch()
    started = time.monotonic()
    done = _lines(procs[1:], "finished_at", started + args.timeout)
    (control / "stop").touch()
    figures = bed.cgroups.figures(before, args.size * args.nodes) if bed.cgroups else {}
    ends = _lines(procs, "cpu_s", time.monotonic() + 120)
    times = [None if d is None else round(d["finished_at"] - started, 3) for d in done]
    complete = None not in times and None not in ends
    seconds = max(t for t in times if t is not None) if complete else None
    cpu = [e["cpu_s"] for e in ends if e is not None]
    gb = args.size * args.nodes / 1e9
    bound = lower_bound(args.size, args.nodes, bed.rates, warm=True)
    row: dict[str, Any] = {
        "seconds": seconds,
        "first_s": min((t for t in times if t is not None), default=None),
        "bound_s": bound,
        "bound_ratio": seconds / bound if seconds and bound else None,
        "cpu_s": round(sum(cpu), 3),
        "cpu_s_per_gb": round(sum(cpu) / gb, 3) if complete else None,
        "holder_cpu_s": ends[0]["cpu_s"] if ends[0] else None,
        "fetcher_cpu_s": [e["cpu_s"] if e else None for e in ends[1:]],
        "holder_sent_ratio": round(ends[0]["sent"] / args.size, 3) if ends[0] else None,
        "max_rss_mb": max((e["peak_rss_mb"] for e in ends if e), default=None),
        "verified": complete and all(e["sha256"] == sha for e in ends[1:]),
        "times_s": times,
    }
    for key in ("throttled_s", "agent_cpu_s_by_pi", "throttled_s_by_pi"):
        if key in figures:
            row[key] = figures[key]
    return row


def run_agents(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """bench.herd's warm row for the agents, same options, in its own process."""
    argv = [sys.executable, "-m", "bench.herd", "--nodes", str(args.nodes), "--size"]
    argv += [str(args.size), "--chunk-size", str(args.chunk_size), "--out", str(work / "herd")]
    argv += ["--systems", "frumitcache", "--scenario", "warm", "--json", "--quiet"]
    if args.shaped:
        argv += ["--shaped", "--down", str(args.down), "--up", str(args.up)]
    if args.budget is not None:
        argv += ["--cpu-quota", str(args.budget.cpu_quota_pct or 0)]
        if args.budget.memory_mb:
            argv += ["--memory", str(args.budget.memory_mb)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout + 600)
    rows = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    warm = [r for r in rows if r.get("system") == "frumitcache"]
    if done.returncode != 0 or not warm:
        raise RuntimeError(f"bench.herd failed ({done.returncode}): {done.stderr[-600:]}")
    r = warm[-1]
    return {
        "seconds": r.get("t_last_s"),
        "bound_s": r.get("t_bound_s"),
        "bound_ratio": r.get("bound_ratio"),
        "cpu_s": r.get("agent_cpu_s", r.get("cpu_s")),
        "cpu_s_per_gb": r.get("agent_cpu_s_per_gb", r.get("cpu_s_per_gb")),
        "client_cpu_s_per_gb": r.get("client_cpu_s_per_gb"),
        "max_rss_mb": r.get("max_rss_mb"),
        "verified": r.get("verified"),
        "throttled_s": r.get("throttled_s"),
        "times_s": r.get("times_s"),
    }


def one_row(args: argparse.Namespace, system: str, work: Path, sha: str) -> dict[str, Any]:
    if system == "agents":
        return run_agents(args, work)
    rates = Rates(None, args.down, args.up) if args.shaped else Rates(None, None, None)
    bed = (ShapedTestbed if args.shaped else LoopbackTestbed)(args.nodes, rates, work)
    cgroups: _cgroup.CgroupSet | None = None
    try:
        if args.budget is not None:
            cgroups = _cgroup.CgroupSet([pi.name for pi in bed.pis], args.budget)
            cgroups.setup()
            bed.cgroups = cgroups
        layout = work / system.split("-")[0]
        return run_bare(
            args,
            bed,
            layout,
            sha,
            super_seed=system.endswith("-super"),
            assigned=system.endswith("-assigned"),
        )
    finally:
        bed.close()
        if cgroups is not None:
            cgroups.teardown()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def bytes_(text: str) -> int:
        return parse_quantity(text, "bytes")

    def rate(text: str) -> int:
        return parse_quantity(text, "bytes/s")

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", type=int, default=8, help="Pis, the holder one of them (8)")
    parser.add_argument("--size", type=bytes_, default=bytes_("64MiB"), help="the object (64MiB)")
    parser.add_argument(
        "--chunk-size", type=bytes_, default=bytes_("4MiB"), help="4MiB, the agent's default"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"of {', '.join(SYSTEMS)}")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (order flips each)")
    parser.add_argument("--shaped", action="store_true", help="network namespaces + htb (root)")
    parser.add_argument("--down", type=rate, default=rate("100Mbit"), help="d (shaped mode)")
    parser.add_argument("--up", type=rate, default=rate("100Mbit"), help="u (shaped mode)")
    parser.add_argument(
        "--cpu-quota", type=float, default=None, metavar="PCT",
        help="each Pi's processes held to PCT %% of one core (0: cgroups for accounting only)",
    )  # fmt: skip
    parser.add_argument("--memory", type=int, default=None, metavar="MB", help="per-Pi memory")
    parser.add_argument(
        "--pi", choices=sorted(PROFILES), default=None,
        help="a named budget (pi3: 10 %%, 1024 MB; pi1: 3 %%, 512 MB)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300, help="per herd, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    args.system_list = [s for s in args.systems.split(",") if s]
    if bad := [s for s in args.system_list if s not in SYSTEMS]:
        parser.error(f"--systems: unknown {', '.join(bad)} (of {', '.join(SYSTEMS)})")
    if args.nodes < 2:
        parser.error("--nodes: at least 2 (a holder and a fetcher)")
    args.budget = budget_of(args)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if (args.budget is not None or args.shaped) and os.geteuid() != 0:
        raise SystemExit("--cpu-quota / --memory / --pi / --shaped need root (cgroups, netns)")
    if args.budget is not None:
        _cgroup.cleanup_leftovers()
    work = Path(tempfile.mkdtemp(prefix="carrier-"))
    rows: list[dict[str, Any]] = []
    try:
        sha = prepare(work, args.size, args.chunk_size)
        for round_ in range(args.repeat):
            order = args.system_list if round_ % 2 == 0 else args.system_list[::-1]
            for system in order:
                load = os.getloadavg()[0]
                row = {"system": system, "round": round_ + 1, "nodes": args.nodes}
                row |= {"bytes": args.size, "chunk_size": args.chunk_size}
                row |= {"mode": "shaped" if args.shaped else "loopback", "loadavg_1m": load}
                row |= _cgroup.describe(args.budget)
                row |= one_row(args, system, work, sha)
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    ratio = row.get("bound_ratio")
                    print(
                        f"{system:7s} round {round_ + 1}: {row['seconds']} s"
                        + (f" ({ratio:.2f} x bound)" if ratio else "")
                        + f", {row['cpu_s_per_gb']} CPU-s/GB, verified {row['verified']}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
