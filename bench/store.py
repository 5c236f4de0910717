"""Store ingest benchmark: chunk + SHA-256 + xxh3 + write + fsync, against sha256sum + cp.

    python -m bench.store --size 256MiB --json

Writes a file of random bytes into a scratch directory (``--dir``, default the current
directory, so the figure is for the disk you run it on), then times, on the same disk:

* ``store``: :class:`frumitcache.store.Store` ingesting the file through an ObjectWriter
  (per chunk: SHA-256, xxh3, temp file, fsync, rename, directory fsync, index commit; plus
  the whole-object SHA-256), then reading it back through an ObjectReader (xxh3-checked);
* ``baseline``: ``sha256sum FILE && cp FILE DEST && sync DEST`` (the copy made durable, as
  the store's is), and the same without the ``sync``.

Prints one JSON object: MB/s of each (MB = 10^6 bytes), store/baseline ratios, and the
process's RSS after the run and at its peak. Each figure is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from frumitcache.config import MiB, parse_quantity
from frumitcache.store import Store

_BLOCK = 1 * MiB


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(_BLOCK, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def run_baseline(src: Path, dest: Path, *, sync: bool) -> float:
    dest.unlink(missing_ok=True)
    cmd = f'sha256sum "{src}" > /dev/null && cp "{src}" "{dest}"'
    if sync:
        cmd += f' && sync "{dest}"'
    start = time.perf_counter()
    subprocess.run(["sh", "-c", cmd], check=True)
    return time.perf_counter() - start


async def ingest(store: Store, src: Path, key: str) -> float:
    start = time.perf_counter()
    async with store.open_writer(key) as writer:
        with src.open("rb", buffering=0) as f:
            while block := await trio.to_thread.run_sync(f.read, _BLOCK):
                await writer.write(block)
        await writer.finish()
    return time.perf_counter() - start


async def read_back(store: Store, key: str) -> float:
    start = time.perf_counter()
    async with store.open_reader(key) as reader:
        async for _chunk in reader:
            pass
    return time.perf_counter() - start


def rss_now_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mb_s(size: int, seconds: float) -> float:
    return round(size / seconds / 1e6, 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--size", default="256MiB", help="file size, e.g. 256MiB")
    parser.add_argument("--chunk-size", default="4MiB", help="store chunk size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--dir", default=".", help="scratch directory on the disk to measure")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    size = parse_quantity(args.size, "bytes")
    chunk_size = parse_quantity(args.chunk_size, "bytes")

    scratch = Path(tempfile.mkdtemp(prefix="frumitcache-bench-", dir=args.dir))
    try:
        src = scratch / "source.bin"
        make_file(src, size)
        base_sync: list[float] = []
        base_nosync: list[float] = []
        store_times: list[float] = []
        read_times: list[float] = []
        # Interleaved, so that a busy neighbour slows both sides alike.
        for i in range(args.repeat):
            base_sync.append(run_baseline(src, scratch / "copy.bin", sync=True))
            base_nosync.append(run_baseline(src, scratch / "copy.bin", sync=False))
            (scratch / "copy.bin").unlink()
            root = scratch / f"store{i}"
            with Store.open(root, max_bytes=4 * size + 64 * MiB, chunk_size=chunk_size) as store:
                store_times.append(trio.run(ingest, store, src, "bench"))
                read_times.append(trio.run(read_back, store, "bench"))
            shutil.rmtree(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    store_s = statistics.median(store_times)
    sync_s = statistics.median(base_sync)
    nosync_s = statistics.median(base_nosync)
    result: dict[str, Any] = {
        "bench": "store-ingest",
        "size_bytes": size,
        "chunk_size": chunk_size,
        "repeat": args.repeat,
        "dir": str(Path(args.dir).resolve()),
        "store_ingest_mb_s": mb_s(size, store_s),
        "store_read_mb_s": mb_s(size, statistics.median(read_times)),
        "baseline_sha256sum_cp_sync_mb_s": mb_s(size, sync_s),
        "baseline_sha256sum_cp_mb_s": mb_s(size, nosync_s),
        "ratio_vs_sync_baseline": round(sync_s / store_s, 3),
        "ratio_vs_nosync_baseline": round(nosync_s / store_s, 3),
        "store_ingest_s": [round(t, 3) for t in store_times],
        "baseline_sync_s": [round(t, 3) for t in base_sync],
        "rss_kib": rss_now_kib(),
        "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }
    return result


if __name__ == "__main__":
    out = main()
    print(json.dumps(out, indent=None if "--json" in sys.argv else 2))
