"""Copying a passed chunk file into the client's file inside the kernel.

``copy_file_range`` first (the bytes never enter user space; on one file system the kernel
may even share the blocks), ``sendfile`` when the target is on another file system or a kind
of file ``copy_file_range`` refuses (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP), and plain reads and
writes as the last resort. Blocking: run it in a worker thread.

A range that is all hole in the passed file (the store keeps a chunk of zeros as a hole) stays
a hole in a regular target written at its end: the target is extended, not written, so a
50 GiB disk image of zeros and a few MiB of data lands in seconds and takes a few MiB of disk.
Holes read as zeros, so the target's bytes are the same either way.
"""

from __future__ import annotations

import errno
import os
import stat

from frumitcache.errors import ProtocolError

# Errors that mean "this way of copying does not apply here", not "the copy failed".
_NOT_HERE = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM})
_BLOCK = 1 << 20


def copy_range(src: int, dst: int, offset: int, count: int) -> str:
    """Append ``count`` bytes of ``src`` from ``offset`` at ``dst``'s position; returns the
    way that did it (``hole``, ``copy_file_range``, ``sendfile`` or ``read``)."""
    if _skip_hole(src, dst, offset, count):
        return "hole"
    done = 0
    for way, step in _WAYS:
        try:
            while done < count:
                n = step(src, dst, offset + done, count - done)
                if n == 0:
                    raise ProtocolError(f"a passed chunk file ended {count - done} bytes early")
                done += n
            return way
        except OSError as exc:
            # Only a refusal before the first byte moves on to the next way; a partial copy
            # followed by an error is a real failure (disk full, I/O error).
            if exc.errno not in _NOT_HERE or done or way == "read":
                raise
    raise AssertionError("unreachable: the last way raises")  # pragma: no cover


def _skip_hole(src: int, dst: int, offset: int, count: int) -> bool:
    """Extend ``dst`` by ``count`` bytes of hole when that range of ``src`` holds no data and
    ``dst`` is a regular file positioned at (or past) its end, where a hole reads as the
    zeros it stands for. False (nothing changed): copy the bytes."""
    if count <= 0:
        return False
    try:
        data_at = os.lseek(src, offset, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            return False  # no SEEK_DATA here (EINVAL): copy
        data_at = None  # no data from ``offset`` to the end of the file
    try:
        if data_at is not None and data_at < offset + count:
            return False
        if os.fstat(src).st_size < offset + count:
            return False  # a short file: the copy reports it
        target = os.fstat(dst)
        if not stat.S_ISREG(target.st_mode):
            return False
        at = os.lseek(dst, 0, os.SEEK_CUR)
        if at < target.st_size:
            return False  # old bytes there would not read as zeros
        os.ftruncate(dst, at + count)
    except OSError:
        return False
    os.lseek(dst, at + count, os.SEEK_SET)
    return True


def _copy_file_range(src: int, dst: int, offset: int, left: int) -> int:
    if not hasattr(os, "copy_file_range"):
        raise OSError(errno.ENOSYS, "copy_file_range is not available")
    return os.copy_file_range(src, dst, left, offset)


def _sendfile(src: int, dst: int, offset: int, left: int) -> int:
    return os.sendfile(dst, src, offset, min(left, 1 << 30))


def _read_write(src: int, dst: int, offset: int, left: int) -> int:
    data = os.pread(src, min(left, _BLOCK), offset)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view) :]
    return len(data)


_WAYS = (
    ("copy_file_range", _copy_file_range),
    ("sendfile", _sendfile),
    ("read", _read_write),
)
