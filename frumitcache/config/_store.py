"""``[store]``: where the content-addressed store lives, its size cap and chunk size."""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config._field import GiB, KiB, MiB, Section, opt
from frumitcache.errors import ConfigError


@dataclass(frozen=True, slots=True)
class StoreConfig(Section):
    path: str = opt(
        "", "Store directory; empty means ~/.cache/frumitcache (/var/cache/frumitcache as root)."
    )
    max_bytes: int = opt(
        8 * GiB,
        "Size cap of the store; least recently used unpinned objects are evicted past it.",
        "bytes",
    )
    chunk_size: int = opt(
        4 * MiB,
        "Size of the content-addressed chunks objects are cut into (a power of two, "
        "at least 16 KiB).",
        "bytes",
    )
    min_free_bytes: int = opt(
        256 * MiB, "Free disk space the store always leaves on its file system.", "bytes"
    )
    scrub_interval_s: float = opt(
        86400.0, "Interval between background scrubs that re-check every chunk; 0 disables.", "s"
    )

    def check(self) -> None:
        chunk = self.chunk_size
        if chunk < 16 * KiB or chunk & (chunk - 1):
            raise ConfigError(
                f"store.chunk_size: must be a power of two of at least 16 KiB, got {chunk}"
            )
