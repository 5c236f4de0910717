"""Copying a passed chunk file into the client's file inside the kernel.

``copy_file_range`` first (the bytes never enter user space; on one file system the kernel
may even share the blocks), ``sendfile`` when the target is on another file system or a kind
of file ``copy_file_range`` refuses (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP), and plain reads and
writes as the last resort. Blocking: run it in a worker thread.
"""

from __future__ import annotations

import errno
import os

from frumitcache.errors import ProtocolError

# Errors that mean "this way of copying does not apply here", not "the copy failed".
_NOT_HERE = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM})
_BLOCK = 1 << 20


def copy_range(src: int, dst: int, offset: int, count: int) -> str:
    """Append ``count`` bytes of ``src`` from ``offset`` at ``dst``'s position; returns the
    way that did it (``copy_file_range``, ``sendfile`` or ``read``)."""
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
