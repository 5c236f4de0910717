"""A standalone swarm node: one process with a store, a libtorrent session and a peer HTTP port.

Multi-process tests and ``bench/swarm.py`` start several of these on distinct loopback
addresses and steer them over stdin/stdout, one JSON object per line::

    python -m frumitcache.swarm.node --address 127.0.1.5 --store DIR --key-hex KEY

The node prints ``{"event": "ready", "address", "swarm_port", "peer_port", "pid"}`` and then
answers commands (every reply carries the command's ``id``):

- ``{"cmd": "put", "path": FILE, "chunk_size": N}``: cut FILE into chunks, store and seed them;
  replies ``chunks`` (``[{digest, size, root}]``, digest and root in hex: every digest on this
  JSON interface is 64 lower-case hex digits, converted here and nowhere else).
- ``{"cmd": "seed", "digest": D}``.
- ``{"cmd": "fetch", "chunks": [...], "holders": [[addr, peer_port, swarm_port], ...],
  "out": FILE, "open": true}``: fetch the object, writing it to FILE in order; emits a
  ``{"event": "chunk", "index"}`` line per chunk delivered, then the reply. With ``"open"``
  the chunk list may grow: later ``offer`` commands with the same id add chunks or holders and
  ``{"cmd": "close", "id"}`` ends it. ``"small_chunk_bytes"`` overrides the transport threshold
  for this fetch, ``"parallel"`` the number of chunks in flight.
- ``{"cmd": "members", "ips": [...]}``, ``{"cmd": "has", "digest": D}``, ``{"cmd": "stats"}``,
  ``{"cmd": "quit"}``.

The site control plane is not here: whoever drives the node says who holds what.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import trio

from frumitcache._digest import parse_digest
from frumitcache.config import GiB, MiB, SwarmConfig
from frumitcache.errors import FrumitcacheError
from frumitcache.store import ObjectWriter, Store
from frumitcache.swarm._fetch import ChunkFetcher, ChunkRef, Holder
from frumitcache.swarm._merkle import MerkleHasher, piece_size_for
from frumitcache.swarm._object import ChunkOffer, fetch_object
from frumitcache.swarm._peer_client import HttpChunkClient
from frumitcache.swarm._peer_http import PeerHttpServer
from frumitcache.swarm._session import Swarm, cleanup_partials


def max_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.store = Store.open(
            Path(args.store), max_bytes=args.max_bytes, chunk_size=args.chunk_size
        )
        cleanup_partials(self.store)
        key = bytes.fromhex(args.key_hex)
        self.config = SwarmConfig(
            small_chunk_bytes=args.small_chunk_bytes,
            super_seeding=args.super_seeding,
            upload_rate=args.upload_rate,
            download_rate=args.download_rate,
        )
        self.address = args.address
        self.swarm = Swarm(
            self.store, address=args.address, port=args.swarm_port, config=self.config, key=key
        )
        self.http_server = PeerHttpServer(
            self.store,
            key,
            upload_rate=args.upload_rate,
            trees=self.swarm.tree,
            on_member=self.swarm.admit,
        )
        # A harness without a control plane: every address is admitted until the driver
        # names the members (an agent starts default-deny; the key still names the torrents).
        self.swarm.set_members(None)
        self.http = HttpChunkClient(self.store, key, local_address=args.address)
        self.fetcher: ChunkFetcher | None = None
        self.peer_port_arg = args.peer_port
        self.fetches: dict[Any, trio.MemorySendChannel[ChunkOffer]] = {}

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.store.close()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            swarm_port = await nursery.start(self.swarm.run)
            peer_port = await nursery.start(
                self.http_server.serve, self.address, self.peer_port_arg
            )
            self.fetcher = ChunkFetcher.from_config(
                self.store,
                self.http,
                self.swarm,
                self.config,
                me=Holder(self.address, peer_port, swarm_port),
            )
            _emit(
                {
                    "event": "ready",
                    "address": self.address,
                    "swarm_port": swarm_port,
                    "peer_port": peer_port,
                    "pid": _pid(),
                }
            )
            stdin = trio.lowlevel.FdStream(0)
            buf = b""
            while True:
                data = await stdin.receive_some(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    cmd = json.loads(line)
                    if cmd.get("cmd") == "quit":
                        _emit({"id": cmd.get("id"), "ok": True})
                        nursery.cancel_scope.cancel()
                        return
                    nursery.start_soon(self.command, cmd, nursery)
            nursery.cancel_scope.cancel()

    async def command(self, cmd: dict[str, Any], nursery: trio.Nursery) -> None:
        cid = cmd.get("id")
        try:
            reply = await self._dispatch(cmd, nursery)
        except FrumitcacheError as exc:
            _emit({"id": cid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return
        if reply is not None:
            _emit({"id": cid, "ok": True, **reply})

    async def _dispatch(self, cmd: dict[str, Any], nursery: trio.Nursery) -> dict[str, Any] | None:
        name = cmd["cmd"]
        if name == "put":
            return {
                "chunks": await self.put(
                    Path(cmd["path"]),
                    int(cmd["chunk_size"]),
                    key=cmd.get("key"),
                    seed=cmd.get("seed", True),
                )
            }
        if name == "seed":
            digest = parse_digest(cmd["digest"])
            await self.swarm.seed(digest, super_seed=bool(cmd.get("super_seed")))
            return {}
        if name == "has":
            return {"has": self.store.has_chunk(parse_digest(cmd["digest"]))}
        if name == "members":
            self.swarm.set_members(cmd["ips"])
            return {}
        if name == "stats":
            return self.stats()
        if name == "fetch":
            return await self.fetch(cmd)
        if name in ("offer", "close"):
            send = self.fetches.get(cmd["id"])
            if send is not None:
                if name == "close":
                    await send.aclose()
                else:
                    for offer in _offers(cmd):
                        await send.send(offer)
            return None
        raise FrumitcacheError(f"unknown command {name!r}")

    async def put(
        self, path: Path, chunk_size: int, *, key: str | None, seed: bool
    ) -> list[dict[str, Any]]:
        """Store a file as chunks (as the object ``key`` when given) and seed them."""
        out: list[dict[str, Any]] = []
        async with contextlib.AsyncExitStack() as stack:
            writer = await stack.enter_async_context(self.store.open_writer(key)) if key else None
            await self._put_chunks(path, chunk_size, writer, out)
        if seed:
            for c in out:
                await self.swarm.seed(parse_digest(c["digest"]))
        return out

    async def _put_chunks(
        self, path: Path, chunk_size: int, writer: ObjectWriter | None, out: list[dict[str, Any]]
    ) -> None:
        f = await trio.open_file(path, "rb")
        async with f:
            while data := await f.read(chunk_size):
                digest = hashlib.sha256(data).digest()
                tree = MerkleHasher(piece_size_for(len(data)))
                tree.update(data)
                t = tree.finish()
                await self.store.put_chunk(data, digest)
                self.store.set_chunk_root(digest, t.root)
                self.swarm.remember_tree(digest, t)
                if writer is not None:
                    await writer.add_chunk(digest)
                out.append({"digest": digest.hex(), "size": len(data), "root": t.root.hex()})
        if writer is not None:
            await writer.finish()

    async def fetch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        send, receive = trio.open_memory_channel[ChunkOffer](1000)
        out = Path(cmd["out"])
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            writer = None
            if cmd.get("key"):
                writer = await stack.enter_async_context(self.store.open_writer(cmd["key"]))
            count = await self._fetch_into(cmd, out, started, writer, send, receive)
        self.fetches.pop(cmd["id"], None)
        return {"chunks": count, "seconds": time.monotonic() - started}

    async def _fetch_into(
        self,
        cmd: dict[str, Any],
        out: Path,
        started: float,
        writer: ObjectWriter | None,
        send: trio.MemorySendChannel[ChunkOffer],
        receive: trio.MemoryReceiveChannel[ChunkOffer],
    ) -> int:
        async with await trio.open_file(out, "wb") as f:

            async def sink(index: int, chunk: ChunkRef) -> None:
                if writer is not None:
                    await writer.add_chunk(chunk.digest)
                await f.write(await self.store.read_chunk(chunk.digest))
                await f.flush()
                _emit(
                    {
                        "id": cmd["id"],
                        "event": "chunk",
                        "index": index,
                        "t": time.monotonic() - started,
                    }
                )

            async with trio.open_nursery() as nursery:
                if cmd.get("open"):
                    self.fetches[cmd["id"]] = send.clone()
                for offer in _offers(cmd):
                    await send.send(offer)
                await send.aclose()
                fetcher = self.fetcher
                assert fetcher is not None
                if "small_chunk_bytes" in cmd:  # a per-fetch transport choice (bench)
                    config = dataclasses.replace(
                        self.config, small_chunk_bytes=int(cmd["small_chunk_bytes"])
                    )
                    fetcher = ChunkFetcher.from_config(
                        self.store, self.http, self.swarm, config, me=fetcher.me
                    )
                count = await fetch_object(
                    fetcher,
                    receive,
                    sink,
                    parallel=int(cmd.get("parallel", self.config.parallel_chunks)),
                )
                if writer is not None:
                    await writer.finish()
                nursery.cancel_scope.cancel()
        return count

    def stats(self) -> dict[str, Any]:
        s = self.swarm.statistics()
        h = self.http_server.statistics()
        return {
            "uploaded": s.uploaded + h.bytes_served,
            "downloaded": s.downloaded + self.http.bytes_fetched,
            "swarm_uploaded": s.uploaded,
            "swarm_downloaded": s.downloaded,
            "http_served": h.bytes_served,
            "http_rejected": h.rejected,
            "http_fetched": self.http.bytes_fetched,
            "hash_failures": s.hash_failures,
            "banned_peers": list(s.banned_peers),
            "corrupt_chunks": [d.hex() for d in s.corrupt_chunks],
            "bad_holders": sorted(self.http.bad_holders),
            "max_rss_mb": max_rss_mb(),
        }


def _pid() -> int:
    import os

    return os.getpid()


def _root(chunk: dict[str, Any]) -> bytes | None:
    return parse_digest(chunk["root"], "pieces root") if chunk.get("root") else None


def _offers(cmd: dict[str, Any]) -> list[ChunkOffer]:
    holders = tuple(
        Holder(h[0], int(h[1]), int(h[2]), bool(h[3]) if len(h) > 3 else False)
        for h in cmd.get("holders", [])
    )
    first = int(cmd.get("first", 0))
    return [
        ChunkOffer(
            first + i, ChunkRef(parse_digest(c["digest"]), int(c["size"]), _root(c)), holders
        )
        for i, c in enumerate(cmd.get("chunks", []))
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m frumitcache.swarm.node", description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--key-hex", required=True)
    p.add_argument("--swarm-port", type=int, default=0)
    p.add_argument("--peer-port", type=int, default=0)
    p.add_argument("--small-chunk-bytes", type=int, default=SwarmConfig().small_chunk_bytes)
    p.add_argument(
        "--super-seeding",
        action=argparse.BooleanOptionalAction,
        default=SwarmConfig().super_seeding,
    )
    p.add_argument("--upload-rate", type=int, default=0)
    p.add_argument("--max-bytes", type=int, default=8 * GiB)
    p.add_argument("--chunk-size", type=int, default=4 * MiB, help="the store's chunk size")
    p.add_argument("--download-rate", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    trio.run(Node(parse_args(argv)).run)


if __name__ == "__main__":
    main()
