"""Objects of any size (issue 14): one object of many chunks fetched through a real site.

    python -m bench.big --case a --json --out /tmp/big-a.json   # 12,800 chunks of 256 KiB
    python -m bench.big --case b --json --out /tmp/big-b.json   # 16 GiB in 4 MiB chunks
    python -m bench.big --size 64MiB --chunk-size 16KiB         # any size / chunk size
    python -m bench.big --size 50GiB --chunk-size 4MiB --sparse 1GiB --sink file   # a disk image

A site of ``--agents`` real agent processes on loopback (:class:`bench._systems.Frumitcache`,
static peers, Pi 0 preferred as seeder) beside a real HTTP origin that makes the object's bytes
on the fly (``frumitcache.testing.origin --generate``: no copy of it in memory or on disk; its
SHA-256 is computed from the same generator). Case ``a`` has the chunk *count* of a 50 GiB
object at the default 4 MiB chunks (12,800) with 256 KiB chunks (3.1 GiB); case ``b`` is the
largest default-chunk object this disk holds twice (every store that fetches keeps it all).
``--sparse EVERY``: zeros but for 4 MiB drawn at the start of each EVERY (a disk image), whose
chunk list repeats the zero chunk: the stores keep each distinct chunk once (the zeros as a hole)
and the client's file keeps the zeros as holes, so 50 GiB fits.

Two pulls, one after the other, with ``frumitcache pull`` (not ``-q``: its summary line says
where the bytes came from): the seeder's (from the origin), then a member's (from the site:
the object's description and holder set travel over the peer port when they don't fit a
frame, counted in the agents' ``bulk_in`` / ``bulk_out``). The client writes into a file
(``--sink file``, hashed afterwards, then deleted) or to stdout, hashed by this process as it
arrives (``--sink stdout``: no third copy on disk); ``auto`` takes a file when it fits.

Per pull: ``seconds``, ``MBps`` (10^6 B/s), ``verified`` (the client's bytes hash to the
origin's digest), ``source``, ``origin_bytes``, each agent's CPU-s/GB and the bulk bodies it
sent/took; per run: each agent's peak RSS (VmHWM), ``uplink_ratio`` (origin bytes ÷ size, 1.00
when the site fetched it once), ``description_over_bulk``, the load and free disk.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import trio

from bench._blob import sha256_of
from bench._report import machine
from bench._systems import Frumitcache, cpu_seconds, memory_mb
from bench._testbed import LoopbackTestbed, Rates
from bench.herd import wait_exit
from frumitcache.config import parse_quantity
from frumitcache.testing.generated import Generated

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PATH = "/big/object.bin"
CASES: dict[str, tuple[int, int]] = {
    "a": (12_800 * 256 * KiB, 256 * KiB),  # 50 GiB's chunk count at 4 MiB, in 3.1 GiB
    "b": (16 * GiB, 4 * MiB),
}
SPARSE_RUN = 4 * MiB  # drawn bytes per period of a --sparse body (Generated's default run)
MARGIN = 4 * GiB  # left free on the disk: other jobs share it, the stores keep min_free_bytes
_STATUS_KEYS = ("bulk_in", "bulk_out", "dropped_frames", "swarm_uploaded", "swarm_downloaded",
                "peer_http_served", "peer_http_fetched")  # fmt: skip


def held_bytes(size: int, sparse: int, chunk_size: int) -> int:
    """At most the bytes a store keeps of the object: all of it, or for a ``--sparse`` body
    each period's drawn run (in whole chunks) and one chunk of zeros (a hole, in fact)."""
    if not sparse:
        return size
    return min(size, -(-size // sparse) * (-(-SPARSE_RUN // chunk_size) + 1) * chunk_size)


def disk_need(size: int, sink: str, held: int | None = None) -> int:
    """Bytes the run writes at most: the seeder's and the member's stores hold the object
    (``held`` of it), a file sink a third copy while it is hashed (as sparse as the stores:
    a chunk of zeros lands as a hole)."""
    held = size if held is None else held
    return held * (3 if sink == "file" else 2) + MARGIN


def choose_sink(sink: str, size: int, free: int, held: int | None = None) -> str:
    if sink != "auto":
        return sink
    return "file" if disk_need(size, "file", held) <= free else "stdout"


def allocated_bytes(path: Path) -> int:
    """Bytes a file, or the files under a directory, take on disk (holes take none)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def _hash_pipe(pipe: IO[bytes]) -> tuple[str, int]:
    digest, n = hashlib.sha256(), 0
    while block := pipe.read(1 << 20):
        digest.update(block)
        n += len(block)
    return digest.hexdigest(), n


async def _agent_view(system: Frumitcache) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for i in range(len(system.daemons)):
        site = (await system.status(i)).site
        out.append({k: int(site.get(k) or 0) for k in _STATUS_KEYS})
    return out


async def pull(
    system: Frumitcache, i: int, url: str, sha: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One ``frumitcache pull`` on Pi ``i``, measured."""
    bed = system.bed
    pids = [d.pid for d in system.daemons]
    view0 = await _agent_view(system)
    origin0 = int((await trio.to_thread.run_sync(bed.origin_stats))["total_bytes_sent"])
    cpu0 = [cpu_seconds(p) for p in pids]
    client0 = _children_cpu_s()
    out = work / f"pull-{i}.bin"
    argv = [sys.executable, "-m", "frumitcache", "pull", url, "--sha256", sha, "--socket",
            str(system.sockets[i]), "-o", "-" if args.sink == "stdout" else str(out)]  # fmt: skip
    err_path = work / f"pull-{i}.err"
    got: tuple[str, int] | None = None
    with err_path.open("wb") as err:
        stdout = subprocess.PIPE if args.sink == "stdout" else subprocess.DEVNULL
        proc = bed.spawn_argv(argv, stdout=stdout, stderr=err, pi=i)
    started = time.monotonic()
    with trio.fail_after(args.timeout):
        if proc.stdout is not None:
            async with trio.open_nursery() as nursery:

                async def reader(pipe: IO[bytes]) -> None:
                    nonlocal got
                    got = await trio.to_thread.run_sync(_hash_pipe, pipe)

                nursery.start_soon(reader, proc.stdout)
                code = await wait_exit(proc)
        else:
            code = await wait_exit(proc)
    seconds = time.monotonic() - started
    cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
    client = _children_cpu_s() - client0
    file_disk: int | None = None
    if got is None:
        digest = await trio.to_thread.run_sync(sha256_of, out)
        got = (digest or "", out.stat().st_size if out.exists() else 0)
        file_disk = allocated_bytes(out) if out.exists() else 0
        out.unlink(missing_ok=True)
    origin1 = int((await trio.to_thread.run_sync(bed.origin_stats))["total_bytes_sent"])
    view1 = await _agent_view(system)
    said = err_path.read_text(errors="replace")
    source = re.search(r" from (\S+?),", said)
    gb = args.size / 1e9
    names = [h.name for h in bed.pis]
    row: dict[str, Any] = {
        "pi": names[i],
        "seconds": round(seconds, 2),
        "MBps": round(args.size / seconds / 1e6, 1),
        "verified": code == 0 and got == (sha, args.size),
        "source": source.group(1) if source else None,
        "origin_bytes": origin1 - origin0,
        "cpu_s_per_gb": {n: round(c / gb, 2) for n, c in zip(names, cpu, strict=True)},
        "client_cpu_s_per_gb": round(client / gb, 2),
        "agents": {
            n: {k: b[k] - a[k] for k in _STATUS_KEYS}
            for n, a, b in zip(names, view0, view1, strict=True)
        },
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if file_disk is not None:
        row["file_disk_bytes"] = file_disk  # the client's file on disk (holes take none)
    if code != 0 or not row["verified"]:
        row["error"] = f"exit {code}, got {got}: {said[-400:]}"
    return row


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def measure(args: argparse.Namespace, bed: LoopbackTestbed, work: Path) -> dict[str, Any]:
    body = Generated(args.size, args.seed, **({"every": args.sparse} if args.sparse else {}))
    spec = f"{PATH}={args.size}:{args.seed}" + (f":{args.sparse}" if args.sparse else "")
    base = await trio.to_thread.run_sync(lambda: bed.start_origin(work / "origin", (spec,)))
    url = base + PATH
    store = {"chunk_size": args.chunk_size, "max_bytes": args.store_max or args.size + GiB}
    system = Frumitcache(bed, work / "site", extra={"store": store, "log": {"level": "warning"}})
    row: dict[str, Any] = {
        "bench": "big",
        "case": args.case,
        "bytes": args.size,
        "chunk_size": args.chunk_size,
        "chunks": -(-args.size // args.chunk_size),
        "sparse_every": args.sparse,
        "agents": args.agents,
        "sink": args.sink,
        "store_max_bytes": store["max_bytes"],
        "machine": machine(),
        "loadavg_start": list(os.getloadavg()),
        "disk_free_gb_start": round(shutil.disk_usage(work).free / 1e9, 1),
    }
    try:
        sha: str | None = None

        async def digest() -> None:
            nonlocal sha
            sha = await trio.to_thread.run_sync(body.sha256)

        t0 = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(digest)
            await system.start()
        row["setup_s"] = round(time.monotonic() - t0, 1)
        row["notes"] = system.notes()
        assert sha is not None
        row["sha256"] = sha
        await trio.to_thread.run_sync(bed.reset_origin)
        seeder = await system.seeder()
        member = next(i for i in range(args.agents) if i != seeder)
        row["seeder"] = await pull(system, seeder, url, sha, args, work)
        row["member"] = await pull(system, member, url, sha, args, work)
        stats = await trio.to_thread.run_sync(bed.origin_stats)
        row["origin_requests"] = int(stats["total_requests"])
        row["uplink_ratio"] = round(int(stats["total_bytes_sent"]) / args.size, 4)
        row["verified"] = row["seeder"]["verified"] and row["member"]["verified"]
        row["description_over_bulk"] = any(
            a["bulk_in"] > 0 for a in row["member"]["agents"].values()
        )
        row["peak_rss_mb"] = {d.host.name: memory_mb(d.pid) for d in system.daemons}
        stores: dict[str, dict[str, int]] = {}
        for i, d in enumerate(system.daemons):
            status = await system.status(i)
            stores[d.host.name] = {
                "chunks": status.store["chunks"],
                "bytes_used": status.store["bytes_used"],
                "disk_bytes": allocated_bytes(Path(status.store_path)),
            }
        row["stores"] = stores
        row["disk_free_gb_full"] = round(shutil.disk_usage(work).free / 1e9, 1)
    finally:
        with trio.CancelScope(shield=True):
            await system.stop()
    row["loadavg_end"] = list(os.getloadavg())
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.big",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--case", choices=sorted(CASES), help="a preset size and chunk size")
    quantity = lambda s: parse_quantity(s, "bytes")  # noqa: E731
    parser.add_argument("--size", type=quantity, help="object size (default: the case's)")
    parser.add_argument("--chunk-size", type=quantity, help="store.chunk_size (the case's)")
    parser.add_argument("--agents", type=int, default=2, help="agents in the site (2 or more)")
    parser.add_argument("--sink", choices=("auto", "file", "stdout"), default="auto")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--sparse", type=quantity, default=0, metavar="EVERY",
        help="zeros but for 4 MiB drawn at the start of each EVERY (a disk image)",
    )  # fmt: skip
    parser.add_argument("--store-max", type=quantity, help="store.max_bytes (size + 1 GiB)")
    parser.add_argument("--timeout", type=float, help="per pull, s (default: 20 MB/s's worth)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    size, chunk = CASES[args.case] if args.case else (64 * MiB, 16 * KiB)
    args.size = args.size or size
    args.chunk_size = args.chunk_size or chunk
    if args.agents < 2:
        parser.error("--agents: a site of at least 2 (a seeder and a member)")
    args.timeout = args.timeout or max(600.0, args.size / 20e6)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    free = shutil.disk_usage(args.work).free
    held = held_bytes(args.size, args.sparse, args.chunk_size)
    args.sink = choose_sink(args.sink, args.size, free, held)
    need = disk_need(args.size, args.sink, held)
    if need > free:
        raise SystemExit(
            f"{args.work}: {free / 1e9:.1f} GB free, a {args.size / 1e9:.1f} GB object needs "
            f"{need / 1e9:.1f} GB (two stores that each hold all of "
            f"it{', a file sink' if args.sink == 'file' else ''}, {MARGIN >> 30} GiB margin)"
        )
    work = Path(tempfile.mkdtemp(prefix="big-", dir=args.work))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    bed = LoopbackTestbed(args.agents, Rates(None, None, None), work)
    try:
        row = trio.run(measure, args, bed, work)
    finally:
        bed.close()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(row, indent=None if args.json else 2)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return row


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main(sys.argv[1:])
