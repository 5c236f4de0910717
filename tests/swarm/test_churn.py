"""Memory follows the store, not the history (issue 16, finding 11, swarm part).

10,000 small objects churn through a 2 MiB store on one node, each seeded as it lands (what a
node does with every chunk it holds). Evicted chunks' torrents are removed: the session's
torrent count stays near the store's chunk count, and the process's RSS (from /proc) stays
flat after warm-up.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import trio

from frumitcache.store import Store
from frumitcache.swarm import Swarm
from frumitcache.swarm._session import _SWEEP_EVERY
from frumitcache.testing.net import loopback_address

OBJECTS = 10_000
SIZE = 16 * 1024
STORE = 2 * 1024 * 1024  # 128 such chunks


# On tmpfs when there is one: 10,000 fsyncs on a disk would be the test's whole runtime.
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_churn_keeps_torrents_bounded_and_rss_flat(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(dir=_SHM or tmp_path) as root:
        await _churn(Path(root))


async def _churn(root: Path) -> None:
    store = Store.open(root / "store", max_bytes=STORE, chunk_size=1 << 20)
    swarm = Swarm(store, address=loopback_address(), key=b"k" * 32)
    most = 0
    rss_warm = 0.0
    with store, trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(swarm.run)
            for i in range(OBJECTS):
                data = i.to_bytes(4, "big") * (SIZE // 4)
                digest = hashlib.sha256(data).digest()
                async with store.open_writer(f"obj/{i}") as w:
                    await w.write(data)
                    await w.finish()
                await swarm.seed(digest)
                most = max(most, swarm.torrent_count)
                if i == 1000:
                    rss_warm = _rss_mb()
            rss_end = _rss_mb()
            await swarm.sweep()
            held = STORE // SIZE
            # Bounded: what the store holds plus the stale torrents of about one sweep (the
            # sweep runs as its own task, so a few more land while it works).
            assert most <= held + 2 * _SWEEP_EVERY, most
            assert swarm.torrent_count <= held
            assert len(swarm.statistics().chunks) <= held
            assert rss_end - rss_warm < 30, (rss_warm, rss_end)
            nursery.cancel_scope.cancel()
