"""What the swarm needs from the store, as a Protocol.

The swarm is written against :class:`ChunkStore`, the chunk half of
:class:`frumitcache.store.Store` (which satisfies it), so the swarm's modules do not depend on
the store's internals and tests can stand in anything with these methods. A chunk is named
by its raw 32-byte SHA-256, as everywhere inside the package (hex only on the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class ChunkStore(Protocol):
    @property
    def tmp_dir(self) -> Path: ...

    def has_chunk(self, digest: bytes) -> bool: ...

    def chunk_path(self, digest: bytes) -> Path: ...

    async def put_chunk(self, data: bytes | bytearray, digest: bytes) -> None: ...

    async def adopt_chunk_file(
        self,
        path: Path,
        digest: bytes,
        *,
        verified_xxh3: bytes | None = None,
        verify: Callable[[Path], bytes] | None = None,
        root: bytes | None = None,
    ) -> None: ...

    async def read_chunk(self, digest: bytes) -> bytes: ...

    def set_chunk_root(self, digest: bytes, root: bytes) -> None: ...

    def chunk_root(self, digest: bytes) -> bytes | None: ...
