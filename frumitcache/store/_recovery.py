"""Bringing chunk files and index rows back in line after a crash or a power cut.

The write order (``_ingest.py``) guarantees that a crash leaves at worst a chunk file without a
row; recovery adopts such an orphan when it hashes to its name, deletes it otherwise, drops
rows whose file is gone or has the wrong length (demoting their objects), and empties
``tmp/``. It also repairs what an index set aside as corrupt lost: every chunk file is an
orphan then and is re-adopted.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from frumitcache._digest import is_hex_digest
from frumitcache.store._files import hash_file, remove_quietly
from frumitcache.store._manifest import RecoveryReport
from frumitcache.store._refs import ChunkRefs


class Recovery(ChunkRefs):
    def recover(self) -> RecoveryReport:
        """Bring files and index back in line after a crash or power cut."""
        temps = 0
        for entry in os.scandir(self.tmp_dir):
            # Everything under tmp/ is garbage after a restart, including the
            # subdirectories other parts (the swarm) download into.
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                remove_quietly(Path(entry.path))
            temps += 1
        with self.index.read() as tx:
            rows = tx.chunk_sizes()
        bad: list[bytes] = []
        on_disk: set[bytes] = set()
        orphans: list[Path] = []
        for sub in os.scandir(self.chunks_dir):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                if not is_hex_digest(entry.name) or entry.name[:2] != sub.name:
                    continue  # not ours (never delete what we did not write)
                digest = bytes.fromhex(entry.name)
                if digest in rows:
                    on_disk.add(digest)
                    if entry.stat().st_size != rows[digest]:
                        bad.append(digest)
                else:
                    orphans.append(Path(entry.path))
        bad.extend(d for d in rows if d not in on_disk)
        if bad:
            self.remove_chunks(bad)
        adopted = sum(self._adopt_orphan(path) for path in orphans)
        with self.index.write("repair the index") as tx:
            # Rows that lost their chunks some other way (an interrupted older version).
            lost = tx.lost_chunks()
            if lost:
                self._forget_chunks(tx, lost)
        with self.index.read() as tx:
            self.used = tx.used_bytes()
        return RecoveryReport(temps, adopted, len(orphans) - adopted, len(bad) + len(lost))

    def _adopt_orphan(self, path: Path) -> bool:
        # A chunk renamed into place whose row never committed: keep it if it is what its
        # name says (a resumed fetch will find it), else delete it.
        try:
            sha, xx, size = hash_file(path)
        except OSError:
            remove_quietly(path)
            return False
        if sha.hex() != path.name or size == 0:
            remove_quietly(path)
            return False
        with self.index.write("adopt an orphan chunk") as tx:
            tx.add_chunk(sha, size, xx, time.time())
        return True
