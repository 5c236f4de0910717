"""The container-pull herd on loopback: N Pis pull one image (>= 3 layers) at once, for three
systems side by side, with a real ``docker-registry`` as the upstream and real ``skopeo``.

    python -m bench.oci --nodes 8 --size 64MiB --json

* ``frumitcache``: an agent per Pi (one site), each Pi pulls through its own registry mirror;
* ``central``: one ``docker-registry`` in proxy mode (a pull-through cache) that every Pi uses;
* ``direct``: every Pi pulls from the upstream registry itself.

Per system one JSON object: ``uplink_bytes`` (body bytes the upstream registry sent, from its
access log), ``uplink_ratio`` (÷ the image's bytes), ``manifest_gets`` / ``manifest_heads``
(upstream requests for manifests), ``t_last_s`` (the last Pi's pull, wall clock), ``verified``
(every Pi's copy holds exactly the image's blobs). Loopback has no uplink limit: times are CPU
and disk bound here, not a Pi's; only the byte and request counts carry over.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from frumitcache.client import AgentClient
from frumitcache.config import parse_quantity
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import (
    Layout,
    RegistryProcess,
    build_layout,
    skopeo_push,
    tools_missing,
)
from frumitcache.testing.site import LoopbackSite

NAME = "bench/app"
PREFIX = "lab.example"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def build_image(work: Path, size: int, layers: int) -> Layout:
    """An OCI layout of one image for this machine's architecture: ``layers`` layers of
    ``size / layers`` incompressible bytes plus a small shared base, tagged ``v1``."""
    arch = _ARCH.get(platform.machine(), "amd64")
    return build_layout(
        work / "layout", "v1", shared=b"base" * 1024, per_platform=layers,
        layer_size=size // layers, platforms=((arch, ""),), fast_random=True,
    )  # fmt: skip


def image_bytes(layout: Layout) -> int:
    """What one pull must bring: every blob (manifest, config, layers), the index aside."""
    return sum(len(b) for d, b in layout.blobs.items() if d != layout.index_digest)


def pull_argv(source: str, out: Path) -> list[str]:
    """The client: ``skopeo copy`` of ``docker://source`` (plain http) into an OCI layout."""
    return [
        "skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{source}",
        f"oci:{out}:pulled",
    ]  # fmt: skip


def upstream_figures(upstream: RegistryProcess, start: int, image: int) -> dict[str, Any]:
    """What crossed the uplink since entry ``start`` of the upstream registry's access log."""
    seen = upstream.requests()[start:]
    sent = upstream.bytes_sent_since(start)
    return {
        "uplink_bytes": sent,
        "uplink_ratio": round(sent / image, 4),
        "manifest_gets": sum(1 for m, p, _ in seen if m == "GET" and "/manifests/" in p),
        "manifest_heads": sum(1 for m, p, _ in seen if m == "HEAD" and "/manifests/" in p),
        # Of the GETs, those by tag (the rest name a digest: immutable, one each for the site).
        "tag_manifest_gets": sum(
            1 for m, p, _ in seen if m == "GET" and "/manifests/" in p and "/sha256:" not in p
        ),
        # Upstream paths asked more than once (GET), with their GET counts.
        "repeated_gets": {
            path: n for path, n in Counter(p for m, p, _ in seen if m == "GET").items() if n > 1
        },
    }


async def _pull(source: str, out: Path) -> float:
    began = time.monotonic()
    done = await trio.run_process(
        pull_argv(source, out), capture_stdout=True, capture_stderr=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-1000:])
    return time.monotonic() - began


def verified(out: Path, layout: Layout) -> bool:
    """Does the layout pulled into ``out`` hold exactly the image's blobs?"""
    blobs = out / "blobs" / "sha256"
    got = {"sha256:" + p.name: p.read_bytes() for p in blobs.iterdir()} if blobs.exists() else {}
    want = {d: b for d, b in layout.blobs.items() if d != layout.index_digest}
    return all(got.get(d) == b for d, b in want.items())


async def _herd(sources: list[str], work: Path, layout: Layout) -> dict[str, Any]:
    times: list[float] = [0.0] * len(sources)
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any task starts

    async def one(i: int) -> None:
        times[i] = await _pull(sources[i], work / f"pi{i}")

    async with trio.open_nursery() as nursery:
        for i in range(len(sources)):
            nursery.start_soon(one, i)
    return {
        "t_last_s": round(max(times), 2),
        "times_s": [round(t, 2) for t in times],
        "verified": all(verified(work / f"pi{i}", layout) for i in range(len(sources))),
    }


async def _frumitcache(nodes: int, upstream: RegistryProcess, work: Path) -> list[str]:
    site = LoopbackSite(
        work / "site",
        nodes,
        settings={
            "oci": {
                "registries": [f"{PREFIX}=http://{upstream.host}"],
                "allowed_hosts": [f"{upstream.address}:*"],
            }
        },
        priorities=[100 - i for i in range(nodes)],
    )
    await site.start()
    _SITES.append(site)
    with trio.fail_after(60):
        while True:
            views = [(await AgentClient(a.socket).status()).site for a in site.agents]
            if len({v.get("seeder") for v in views} - {None}) == 1 and all(
                len(v.get("members", [])) == nodes for v in views
            ):
                break
            await trio.sleep(0.2)
    return [f"{a.address}:3146/{PREFIX}/{NAME}:v1" for a in site.agents]


_SITES: list[LoopbackSite] = []


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="bench-oci-"))
    upstream = RegistryProcess(work / "upstream", loopback_address(), 5000)
    central: RegistryProcess | None = None
    rows: list[dict[str, Any]] = []
    try:
        upstream.start()
        layout = build_image(work, args.size, args.layers)
        skopeo_push(layout.path, "v1", f"{upstream.host}/{NAME}:v1")
        image = image_bytes(layout)
        for system in args.systems:
            start = len(upstream.requests())
            if system == "frumitcache":
                sources = await _frumitcache(args.nodes, upstream, work / system)
            elif system == "central":
                central = RegistryProcess(
                    work / "central", loopback_address(), 5000,
                    proxy_remote=f"http://{upstream.host}",
                )  # fmt: skip
                central.start()
                sources = [f"{central.host}/{NAME}:v1"] * args.nodes
            else:
                sources = [f"{upstream.host}/{NAME}:v1"] * args.nodes
            herd = await _herd(sources, work / system / "out", layout)
            rows.append(
                {
                    "scenario": "oci",
                    "system": system,
                    "nodes": args.nodes,
                    "bytes": image,
                    "layers": args.layers + 1,  # and the small shared base layer
                    **upstream_figures(upstream, start, image),
                    **herd,
                }
            )
            for site in _SITES:
                site.kill()
            _SITES.clear()
    finally:
        for site in _SITES:
            site.kill()
        if central is not None:
            central.stop()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oci", description=__doc__)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--size", type=lambda s: parse_quantity(s, "bytes"), default=64 << 20)
    parser.add_argument(
        "--layers", type=int, default=3, help="layers of SIZE/LAYERS bytes (plus a small base)"
    )
    parser.add_argument("--systems", default="frumitcache,central,direct")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.systems = args.systems.split(",")
    missing = tools_missing("docker-registry", "skopeo")
    if missing:
        sys.exit(f"bench.oci needs {', '.join(missing)}")
    rows = trio.run(run, args)
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['system']}: uplink {row['uplink_ratio']}x of {row['bytes']} B, "
                f"manifest GETs {row['manifest_gets']}, last Pi {row['t_last_s']} s, "
                f"verified {row['verified']}"
            )


if __name__ == "__main__":
    main()
