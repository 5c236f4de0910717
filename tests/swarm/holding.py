"""A keyed holder for tests: a real :class:`Swarm` on its own loopback address, seeding one chunk
from its store, for a test's own libtorrent session to dial."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio

from frumitcache.store import Store
from frumitcache.swarm import Swarm
from frumitcache.testing.net import loopback_address

MiB = 1024 * 1024


@contextlib.asynccontextmanager
async def seeding_holder(
    root: Path, data: bytes, digest: bytes, key: bytes, members: Sequence[str] | None
) -> AsyncIterator[Swarm]:
    """The holder runs (seeding ``digest``) while the block runs; ``members`` are the addresses
    its filter admits (None: it names none, as before the site has spoken)."""
    store = Store.open(root, max_bytes=1 << 30, chunk_size=4 * MiB)
    await store.put_chunk(data, digest)
    holder = Swarm(store, address=loopback_address(), key=key)
    with store:
        async with trio.open_nursery() as nursery:
            await nursery.start(holder.run)
            if members is not None:
                holder.set_members(list(members))
            await holder.seed(digest)
            yield holder
            nursery.cancel_scope.cancel()
