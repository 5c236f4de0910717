"""Swarm benchmark: one seeder holds an object, N-1 nodes fetch it at once, each its own process.

    python -m bench.swarm --nodes 6 --size 64MiB --json
    python -m bench.swarm --threshold --json        # peer HTTP vs libtorrent per chunk size

The swarm run prints one JSON object: ``nodes``, ``bytes``, ``seconds`` (until the last copy is
complete), ``seeder_upload_ratio`` (the seeder's bytes sent ÷ object size), ``peer_upload_share``
(share of all bytes sent that non-seeders sent), ``verified`` (every copy's SHA-256 checked),
``max_rss_mb`` (largest node peak RSS) and per-node times. ``--rate`` caps every node's swarm
upload and download (a LAN port); ``--no-seeder-once`` turns off the chunk-level assignment
that keeps the seeder's port near one copy.

The threshold run has every other node fetch one chunk from one holder at once, for several
chunk sizes, over peer HTTP and over libtorrent, and prints the median seconds until all have it
and the holder's bytes sent ÷ chunk size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench._blob import sha256_of, write_random
from frumitcache.config import SwarmConfig, parse_quantity
from frumitcache.swarm._nodeproc import NodeProcess, start_nodes
from frumitcache.testing.net import loopback_address


async def swarm_run(args: argparse.Namespace) -> dict[str, Any]:
    size = parse_quantity(args.size, "bytes")
    chunk = parse_quantity(args.chunk_size, "bytes")
    rate = parse_quantity(args.rate, "bytes/s") if args.rate else 0
    extra = ["--upload-rate", str(rate), "--download-rate", str(rate)]
    extra.append("--super-seeding" if args.seeder_once else "--no-super-seeding")
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        root = Path(tmp)
        want = write_random(root / "object", size, seed=random.getrandbits(64))
        addresses = [loopback_address() for _ in range(args.nodes)]
        times: list[float] = []
        async with trio.open_nursery() as nursery:
            async with start_nodes(nursery, addresses, root, os.urandom(32), extra) as nodes:
                seeder, fetchers = nodes[0], nodes[1:]
                put = await seeder.call(
                    {"cmd": "put", "path": str(root / "object"), "chunk_size": chunk}
                )
                for n in nodes:
                    await n.call({"cmd": "members", "ips": addresses})
                started = time.monotonic()

                async def fetch(i: int, node: NodeProcess) -> None:
                    holders = [[*n.holder, n is seeder] for n in nodes if n is not node]
                    await node.call(
                        {
                            "cmd": "fetch",
                            "chunks": put["chunks"],
                            "holders": holders,
                            "out": str(root / f"copy{i}"),
                            "parallel": args.parallel,
                        }
                    )
                    times.append(time.monotonic() - started)

                async with trio.open_nursery() as fetches:
                    for i, node in enumerate(fetchers):
                        fetches.start_soon(fetch, i, node)
                seconds = time.monotonic() - started
                stats = [await n.call({"cmd": "stats"}) for n in nodes]
            nursery.cancel_scope.cancel()
        verified = all(sha256_of(root / f"copy{i}") == want for i in range(len(fetchers)))
    sent = [int(s["uploaded"]) for s in stats]
    return {
        "nodes": args.nodes,
        "bytes": size,
        "chunk_size": chunk,
        "chunks": len(put["chunks"]),
        "rate": rate,
        "seeder_once": args.seeder_once,
        "seconds": round(seconds, 3),
        "node_seconds": sorted(round(t, 3) for t in times),
        "seeder_upload_ratio": round(sent[0] / size, 4),
        "peer_upload_share": round(sum(sent[1:]) / max(1, sum(sent)), 4),
        "uploaded": sent,
        "verified": verified,
        "max_rss_mb": round(max(float(s["max_rss_mb"]) for s in stats), 1),
    }


async def threshold_run(args: argparse.Namespace) -> dict[str, Any]:
    """Per size: one holder, every other node fetches the same single chunk at once."""
    sizes = [parse_quantity(s, "bytes") for s in args.sizes.split(",")]
    rate = parse_quantity(args.rate, "bytes/s") if args.rate else 0
    extra = ["--upload-rate", str(rate), "--download-rate", str(rate)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-threshold-") as tmp:
        root = Path(tmp)
        addresses = [loopback_address() for _ in range(args.nodes)]
        async with trio.open_nursery() as nursery:
            async with start_nodes(nursery, addresses, root, os.urandom(32), extra) as nodes:
                holder, fetchers = nodes[0], nodes[1:]
                for size in sizes:
                    row: dict[str, Any] = {"bytes": size}
                    for transport, small in (("http", 1 << 40), ("libtorrent", 0)):
                        samples, ratios = [], []
                        for rep in range(args.repeat):
                            part = root / f"part-{size}-{transport}-{rep}"
                            write_random(part, size, seed=random.getrandbits(64))
                            put = await holder.call(
                                {"cmd": "put", "path": str(part), "chunk_size": size}
                            )
                            before = (await holder.call({"cmd": "stats"}))["uploaded"]
                            started = time.monotonic()
                            async with trio.open_nursery() as fetches:
                                for i, f in enumerate(fetchers):
                                    holders = [
                                        [*n.holder, n is holder] for n in nodes if n is not f
                                    ]
                                    fetches.start_soon(
                                        f.call,
                                        {
                                            "cmd": "fetch",
                                            "chunks": put["chunks"],
                                            "holders": holders,
                                            "small_chunk_bytes": small,
                                            "out": str(root / f"out{i}"),
                                        },
                                    )
                            samples.append(time.monotonic() - started)
                            after = (await holder.call({"cmd": "stats"}))["uploaded"]
                            ratios.append((after - before) / size)
                        row[f"{transport}_seconds"] = round(statistics.median(samples), 4)
                        row[f"{transport}_seeder_ratio"] = round(statistics.median(ratios), 2)
                    rows.append(row)
            nursery.cancel_scope.cancel()
    faster = [r["bytes"] for r in rows if r["http_seconds"] <= r["libtorrent_seconds"]]
    return {
        "nodes": args.nodes,
        "rate": rate,
        "repeat": args.repeat,
        "rows": rows,
        "http_faster_up_to": max(faster, default=0),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.swarm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", type=int, default=6)
    p.add_argument("--size", default="64MiB")
    p.add_argument("--chunk-size", default="4MiB")
    p.add_argument("--rate", default="", help="per-node swarm rate cap, e.g. 12MiB (0: none)")
    p.add_argument(
        "--parallel",
        type=int,
        default=SwarmConfig().parallel_chunks,
        help="chunks in flight per fetcher",
    )
    p.add_argument("--seeder-once", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threshold", action="store_true", help="peer HTTP vs libtorrent per size")
    p.add_argument("--sizes", default="16KiB,64KiB,256KiB,1MiB,2MiB,4MiB,8MiB")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    args = p.parse_args(argv)
    result = trio.run(threshold_run if args.threshold else swarm_run, args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
