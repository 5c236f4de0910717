"""Chunk files on disk: the layout, atomic writes and the checks that read them back.

Layout under the store root::

    chunks/<2 hex>/<64 hex>   one file per chunk, named by its SHA-256 and holding exactly
                              the chunk's bytes (the swarm seeds straight from these files);
                              a full-size chunk of zeros is a hole (a sparse file), which a
                              client's copy keeps a hole (client/_copy.py)
    tmp/                      temp files; everything here is garbage after a restart
    index.sqlite              the index (see _index.py)

Everything here is blocking and runs in worker threads. Disk-full errors become
:class:`~frumitcache.errors.StoreFullError` with the path and the errno text.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import secrets
from pathlib import Path
from typing import Protocol

import xxhash

from frumitcache.errors import StoreError, StoreFullError

BytesLike = bytes | bytearray | memoryview

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_READ_BLOCK = 1 << 20


def chunk_rel(digest: bytes) -> str:
    h = digest.hex()
    return f"{h[:2]}/{h}"


def xxh3(data: BytesLike) -> bytes:
    return xxhash.xxh3_64_digest(data)


def is_full_error(exc: OSError) -> bool:
    return exc.errno in _FULL_ERRNOS


def full_error(exc: OSError, what: str, path: Path) -> StoreFullError:
    return StoreFullError(f"no room to {what} {path}: {os.strerror(exc.errno or 0)}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(tmp_dir: Path, data: BytesLike, *, zeros: bool = False) -> Path:
    """Write ``data`` to a new temp file and fsync it; the file is removed on any error.
    ``zeros``: ``data`` is all zeros, so the file is made one hole of its length instead."""
    path = tmp_dir / f"{secrets.token_hex(8)}.chunk"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        if is_full_error(exc):
            raise full_error(exc, "create", path) from None
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    try:
        try:
            view = memoryview(data).cast("B")
            if zeros:
                os.ftruncate(fd, len(view))
                view = view[:0]
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        remove_quietly(path)
        if is_full_error(exc):
            raise full_error(exc, "write", path) from None
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        remove_quietly(path)
        raise
    return path


@functools.lru_cache(maxsize=4)
def zeros_digest(size: int) -> bytes:
    """SHA-256 of ``size`` zero bytes (the store asks only for its chunk size)."""
    return hashlib.sha256(bytes(size)).digest()


def all_hole(fd: int, size: int) -> bool:
    """Whether the open file is ``size`` bytes long and holds no data (one hole: zeros)."""
    try:
        if os.fstat(fd).st_size != size:
            return False
        os.lseek(fd, 0, os.SEEK_DATA)
    except OSError as exc:
        return exc.errno == errno.ENXIO  # no data anywhere; EINVAL: no SEEK_DATA here
    return False


def hash_file(path: Path) -> tuple[bytes, bytes, int]:
    """SHA-256, xxh3 and length of a file, read in blocks (never the whole file in RAM)."""
    sha = hashlib.sha256()
    xx = xxhash.xxh3_64()
    size = 0
    with path.open("rb", buffering=0) as f:
        while block := f.read(_READ_BLOCK):
            sha.update(block)
            xx.update(block)
            size += len(block)
    return sha.digest(), xx.digest(), size


class _Hasher(Protocol):
    def update(self, data: BytesLike, /) -> None: ...


def _feed(fd: int, hasher: _Hasher) -> int:
    """Feed an open file from its start to ``hasher`` through one reused buffer (no bytes
    object per block); returns its length."""
    buf = bytearray(_READ_BLOCK)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        hasher.update(view[:n])
        offset += n
    return offset


def xxh3_fd(fd: int) -> tuple[bytes, int]:
    """xxh3 and length of an open file."""
    xx = xxhash.xxh3_64()
    length = _feed(fd, xx)
    return xx.digest(), length


def sha256_fd(fd: int) -> hashlib._Hash:
    """SHA-256 of an open file (the hashlib object, so ``.digest()`` to finish)."""
    sha = hashlib.sha256()
    _feed(fd, sha)
    return sha


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # best effort: open() sweeps tmp/ and orphans anyway
