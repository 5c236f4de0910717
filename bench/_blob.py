"""The benchmarks' objects: seeded incompressible bytes, and the hash a copy is checked by."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path


def write_random(path: Path, size: int, seed: int | None = None) -> str:
    """Incompressible bytes, SHA-256 hex. Seeded by ``size`` unless ``seed`` is given, so runs of
    one size serve the same object; a caller that needs distinct objects passes its own seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(size if seed is None else seed)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(left, 1 << 20))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str | None:
    """SHA-256 hex of a file (``None``: no such file)."""
    if not path.exists():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
