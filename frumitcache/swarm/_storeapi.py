"""What the swarm needs from the store, as a Protocol.

The swarm is written against :class:`ChunkStore`, the chunk half of
:class:`frumitcache.store.Store` (which satisfies it), so the swarm's modules do not depend on
the store's internals and tests can stand in anything with these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class ChunkStore(Protocol):
    @property
    def tmp_dir(self) -> Path: ...

    def has_chunk(self, digest: str) -> bool: ...

    def chunk_path(self, digest: str) -> Path: ...

    async def put_chunk(self, data: bytes | bytearray, digest: str) -> None: ...

    async def adopt_chunk_file(
        self,
        path: Path,
        digest: str,
        *,
        verified_xxh3: bytes | None = None,
        verify: Callable[[Path], bytes] | None = None,
        root: bytes | None = None,
    ) -> None: ...

    async def read_chunk(self, digest: str) -> bytes: ...

    def set_chunk_root(self, digest: str, root: bytes) -> None: ...

    def chunk_root(self, digest: str) -> bytes | None: ...
