"""A store writer that runs until it is killed: the subject of the power-cut test.

Run as ``python _powercut_writer.py ROOT SEED``. It opens the store, prints ``ready``, then
loops forever writing large objects in uneven pieces and mixing in everything that changes
the index: finishes (with and without an expected digest), aborts and resumes, discards,
digest mismatches, second keys, pins, chunks added from outside, evictions under a small cap.
The test SIGKILLs it at a random moment and checks the store it leaves behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sys
from pathlib import Path

import trio

from frumitcache.errors import DigestMismatchError, StoreError
from frumitcache.store import ObjectWriter, Store

CHUNK = 64 * 1024
MAX_BYTES = 12 * 1024 * 1024


async def write_pieces(w: ObjectWriter, data: bytes, rng: random.Random) -> None:
    pos = w.offset
    while pos < len(data):
        n = rng.randrange(1, 3 * CHUNK)
        await w.write(data[pos : pos + n])
        pos += n


async def main(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Store.open(root, max_bytes=MAX_BYTES, chunk_size=CHUNK)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        key = f"http://origin/{rng.randrange(12)}"
        size = rng.randrange(0, 3 * 1024 * 1024)
        data = rng.randbytes(size)
        digest = hashlib.sha256(data).digest()
        action = rng.random()
        w: ObjectWriter | None = None
        try:
            if action < 0.1:
                # The expected digest is a lie: nothing may be stored.
                w = store.open_writer(key, expected_digest=hashlib.sha256(b"lie").digest())
                await write_pieces(w, data, rng)
                with contextlib.suppress(DigestMismatchError):
                    await w.finish()
            elif action < 0.25:
                w = store.open_writer(f"partial/{n % 5}")
                await write_pieces(w, data[: size // 2], rng)
                await (w.abort() if rng.random() < 0.7 else w.discard())
            elif action < 0.35:
                # Chunks arriving from "the swarm", then stitched into an object.
                w = store.open_writer("sha256:" + digest.hex(), expected_digest=digest)
                for i in range(0, size, CHUNK):
                    part = data[i : i + CHUNK]
                    await store.put_chunk(part, hashlib.sha256(part).digest())
                    await w.add_chunk(hashlib.sha256(part).digest())
                await w.finish()
            else:
                expected = digest if rng.random() < 0.5 else None
                w = store.open_writer(key, expected_digest=expected, expected_size=size)
                if w.offset > size:
                    await w.discard()
                    w = store.open_writer(key, expected_digest=expected, expected_size=size)
                await write_pieces(w, data, rng)
                m = await w.finish()
                if rng.random() < 0.3:
                    store.map_key(f"http://mirror/{rng.randrange(12)}", m.digest)
                if rng.random() < 0.1:
                    store.pin(m.digest)
                elif rng.random() < 0.2:
                    store.unpin(m.digest)
                store.set_key_meta(key, {"etag": str(n)})
        except StoreError:
            if w is not None:
                await w.abort()
            # The cap is full of pinned objects: unpin everything and carry on.
            with store._core.index.write("test unpin") as tx:
                tx.execute("DELETE FROM pins")


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
