"""Real swarm nodes: one process each, each on its own loopback address.

The site control plane is not part of these tests: the test tells every node who holds what.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
import trio

from frumitcache.swarm._nodeproc import NodeProcess, start_nodes
from frumitcache.testing.net import loopback_address

MiB = 1024 * 1024
KEY = os.urandom(32)


def _object(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _holders(
    nodes: list[NodeProcess], me: NodeProcess, seeder: NodeProcess | None = None
) -> list[Any]:
    return [[*n.holder, n is seeder] for n in nodes if n is not me]


async def test_six_nodes_swarm_a_32mib_object(tmp_path: Path) -> None:
    want = _object(tmp_path / "obj", 32 * MiB)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            addresses = [loopback_address() for _ in range(6)]
            async with start_nodes(nursery, addresses, tmp_path, KEY) as nodes:
                seeder, fetchers = nodes[0], nodes[1:]
                put = await seeder.call(
                    {
                        "cmd": "put",
                        "path": str(tmp_path / "obj"),
                        "chunk_size": 4 * MiB,
                        "key": "obj",
                    }
                )
                # What a manifest holds: digests and sizes (roots come from holders).
                chunks = [{"digest": c["digest"], "size": c["size"]} for c in put["chunks"]]
                assert len(chunks) == 8
                for n in nodes:
                    await n.call({"cmd": "members", "ips": addresses})
                async with trio.open_nursery() as fetches:
                    for i, n in enumerate(fetchers):
                        fetches.start_soon(
                            n.call,
                            {
                                "cmd": "fetch",
                                "chunks": chunks,
                                "out": str(tmp_path / f"out{i}"),
                                "holders": _holders(nodes, n, seeder),
                                "key": "obj",
                            },
                        )
                for i in range(len(fetchers)):
                    assert _sha(tmp_path / f"out{i}") == want
                stats = [await n.call({"cmd": "stats"}) for n in nodes]
                sent = [s["uploaded"] for s in stats]
                # The fetchers really trade: not a star around the seeder.
                assert sum(sent[1:]) > 0.2 * sum(sent), sent
                assert all(s["uploaded"] > 0 for s in stats[1:]) or sum(sent[1:]) > 0.5 * sum(sent)
                assert all(s["downloaded"] >= 32 * MiB for s in stats[1:])
            nursery.cancel_scope.cancel()


async def test_corrupt_holder_is_detected_and_dropped(tmp_path: Path) -> None:
    # Chunk 0 is small (peer HTTP), chunk 1 large (libtorrent); the bad holder has both rotten.
    small = os.urandom(64 * 1024)
    large = os.urandom(4 * MiB)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            addresses = [loopback_address() for _ in range(3)]
            extra = ["--small-chunk-bytes", str(256 * 1024)]
            async with start_nodes(nursery, addresses, tmp_path, KEY, extra) as nodes:
                bad, good, fetcher = nodes
                chunks = []
                for i, data in enumerate((small, large)):
                    part = tmp_path / f"part{i}"
                    part.write_bytes(data)
                    for n in (bad, good):
                        put = await n.call({"cmd": "put", "path": str(part), "chunk_size": 8 * MiB})
                    chunks += put["chunks"]
                for c in chunks:
                    path = tmp_path / "node0" / "chunks" / c["digest"][:2] / c["digest"]
                    rotten = bytearray(path.read_bytes())
                    for i in range(0, len(rotten), 16 * 1024):  # every block: whatever it
                        rotten[i] ^= 0xFF  # serves is bad
                    path.write_bytes(bytes(rotten))
                reply = await fetcher.call(
                    {
                        "cmd": "fetch",
                        "chunks": chunks,
                        "out": str(tmp_path / "out"),
                        "holders": [bad.holder, good.holder],  # the bad one is asked first
                    }
                )
                assert reply["chunks"] == 2
                assert (tmp_path / "out").read_bytes() == small + large
                fs = await fetcher.call({"cmd": "stats"})
                bs = await bad.call({"cmd": "stats"})
                # Small chunk: the fetcher saw bad bytes over HTTP, skips the holder for a
                # back-off, and told it: the holder re-checked and dropped its rotten file
                # (any libtorrent version: this is the peer HTTP path).
                assert fs["bad_holders"] == [bad.address]
                assert not (await bad.call({"cmd": "has", "digest": chunks[0]["digest"]}))["has"]
                assert (await good.call({"cmd": "has", "digest": chunks[0]["digest"]}))["has"]
                # Large chunk: the bad holder's seed-mode check caught its own rotten piece
                # before serving it, or the fetcher's v2 check caught it and banned the sender.
                detected = chunks[1]["digest"] in bs["corrupt_chunks"] or fs["hash_failures"] > 0
                if lt.__version__.startswith("2.1"):
                    assert detected
                # (libtorrent 2.0.8, Debian's, measured: neither counter moves; the fetcher got
                # the chunk from the good holder and no bad byte was stored, as checked above.)
                assert bs["swarm_uploaded"] < 4 * MiB
                if chunks[1]["digest"] in bs["corrupt_chunks"]:
                    # ... and handed the chunk back to its store, whose check dropped it.
                    has = {"cmd": "has", "digest": chunks[1]["digest"]}
                    for _ in range(100):
                        gone = not (await bad.call(dict(has)))["has"]
                        if gone:
                            break
                        await trio.sleep(0.05)
                    assert gone
            nursery.cancel_scope.cancel()


async def test_holder_killed_mid_transfer(tmp_path: Path) -> None:
    want = _object(tmp_path / "obj", 16 * MiB)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            addresses = [loopback_address() for _ in range(4)]
            # Slow holders so that the kill lands mid-transfer.
            extra = ["--upload-rate", str(4 * MiB)]
            async with start_nodes(nursery, addresses, tmp_path, KEY, extra) as nodes:
                victim, survivor, f1, f2 = nodes
                for n in (victim, survivor):
                    put = await n.call(
                        {"cmd": "put", "path": str(tmp_path / "obj"), "chunk_size": 2 * MiB}
                    )
                chunks = put["chunks"]
                async with trio.open_nursery() as fetches:
                    for i, f in enumerate((f1, f2)):
                        fetches.start_soon(
                            f.call,
                            {
                                "cmd": "fetch",
                                "chunks": chunks,
                                "out": str(tmp_path / f"out{i}"),
                                "holders": _holders(nodes, f),
                            },
                        )
                    await f1.first_chunk.wait()
                    victim.kill()
                    await victim.exited.wait()
                    delivered = len([e for e in f1.events + f2.events if e.get("event") == "chunk"])
                    assert delivered < 2 * len(chunks)  # really mid-transfer
                assert _sha(tmp_path / "out0") == want
                assert _sha(tmp_path / "out1") == want
            nursery.cancel_scope.cancel()


_FLOOR_PACKAGES = [
    "python3-libtorrent",
    "python3-trio",
    "python3-h11",
    "python3-xxhash",
    "python3-msgpack",
    "python3-httpx",
]
_REPO = Path(__file__).resolve().parents[2]


def _lt_version(python: str) -> str | None:
    """The libtorrent version of ``python`` when it has the node's stack, else None."""
    if not python or not Path(python).exists():
        return None
    probe = subprocess.run(
        [
            python,
            "-c",
            "import libtorrent, trio, h11, xxhash, msgpack; print(libtorrent.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _floor_python() -> tuple[str | None, str]:
    """Debian's /usr/bin/python3 with libtorrent 2.0 (installed with apt-get when root)."""
    python = "/usr/bin/python3"
    if not Path(python).exists():
        return None, f"no {python}"
    if _lt_version(python) is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *_FLOOR_PACKAGES]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=900)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
    version = _lt_version(python)
    if version is None or not version.startswith("2.0"):
        return None, (
            f"{python} lacks libtorrent 2.0 and its stack ({version}); as root this "
            f"test installs {' '.join(_FLOOR_PACKAGES)} with apt-get"
        )
    return python, version


def _newest_python() -> tuple[str | None, str]:
    """A Python with libtorrent 2.1: this one, $FRUMITCACHE_LT21_PYTHON or the repo's .venv
    (under the Debian pass this interpreter has 2.0, so the 2.1 side must come from elsewhere)."""
    for python in (
        sys.executable,
        os.environ.get("FRUMITCACHE_LT21_PYTHON", ""),
        str(_REPO / ".venv" / "bin" / "python"),
    ):
        version = _lt_version(python)
        if version and version.startswith("2.1"):
            return python, version
    return None, (
        "no Python with libtorrent 2.1 (this one, $FRUMITCACHE_LT21_PYTHON or "
        f"{_REPO / '.venv'}): pip install libtorrent"
    )


async def test_libtorrent_20_and_21_nodes_share_one_swarm(tmp_path: Path) -> None:
    floor, why_floor = _floor_python()
    if floor is None:
        pytest.skip(why_floor)
    newest, why_newest = _newest_python()
    if newest is None:
        pytest.skip(why_newest)
    # Really mixed: one side on 2.0.x, the other on 2.1.x (whichever interpreter runs pytest).
    assert why_floor.startswith("2.0")
    assert why_newest.startswith("2.1")
    want = _object(tmp_path / "obj", 12 * MiB)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            addresses = [loopback_address() for _ in range(3)]
            # Seeder and one fetcher on libtorrent 2.0.8 (Debian), one fetcher on 2.1 (venv).
            async with start_nodes(
                nursery, addresses, tmp_path, KEY, pythons=[floor, floor, newest]
            ) as nodes:
                put = await nodes[0].call(
                    {"cmd": "put", "path": str(tmp_path / "obj"), "chunk_size": 4 * MiB}
                )
                chunks = [{"digest": c["digest"], "size": c["size"]} for c in put["chunks"]]
                async with trio.open_nursery() as fetches:
                    for i, n in enumerate(nodes[1:]):
                        fetches.start_soon(
                            n.call,
                            {
                                "cmd": "fetch",
                                "chunks": chunks,
                                "out": str(tmp_path / f"out{i}"),
                                "holders": _holders(nodes, n),
                            },
                        )
                for i, n in enumerate(nodes[1:]):
                    assert _sha(tmp_path / f"out{i}") == want
                    stats = await n.call({"cmd": "stats"})
                    # Every byte came over libtorrent: the info-hashes agreed across versions.
                    assert stats["http_fetched"] == 0
                    assert stats["swarm_downloaded"] >= 12 * MiB
            nursery.cancel_scope.cancel()
