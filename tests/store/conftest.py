"""Fixtures of the store tests: a store on the real file system under tmp_path."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from frumitcache.store import Store

CHUNK = 4096


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    s = Store.open(store_dir, max_bytes=1 << 30, chunk_size=CHUNK)
    try:
        yield s
    finally:
        s.close()


def tmp_files(root: Path) -> list[str]:
    return os.listdir(root / "tmp")
