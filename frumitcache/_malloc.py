"""The agent's C heap sized for a Pi: few glibc malloc arenas, large blocks given back.

glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in
an arena mostly stays in it. The agent's threads — libtorrent's, and trio's worker threads
that hash and copy chunk files through 1 MiB buffers — each kept a few MB that way: measured
in bench.herd (8 agents, 64 MiB, 10 % of a core each) the warm herd's peak agent RSS was
88-92 MB with glibc's default and 70 MB with two arenas, at the same CPU per GB.

glibc also raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so after
the first chunk buffer (the seeder cuts origin bytes into chunk-sized buffers) every later one
comes from the heap, and the heap keeps what was freed: a seeder kept about twice its chunk size
that way (bench/README.md, "Where an agent's RSS goes"). A fixed threshold keeps blocks from
256 KiB up in their own mappings, returned to the kernel when freed (and fixes the heap's trim
threshold at glibc's 128 KiB default).

Called once before any thread starts (arenas made earlier stay). ``MALLOC_ARENA_MAX`` and
``MALLOC_MMAP_THRESHOLD_`` in the environment win, as glibc itself reads them; on a C library
without ``mallopt`` (musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import os

from frumitcache._log import get_logger

log = get_logger("agent")

#: glibc's ``M_ARENA_MAX`` and ``M_MMAP_THRESHOLD`` parameter numbers (malloc.h).
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
#: The main arena and one shared by every other thread.
ARENAS = 2
#: Blocks from this size up are mapped on their own (glibc's starting value is 128 KiB).
MMAP_THRESHOLD = 256 * 1024


def _mallopt(param: int, value: int, env: str) -> bool:
    if os.environ.get(env):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(param, value))
    if not done:
        log.debug("agent.mallopt_unchanged", param=param, value=value)
    return done


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; True when the cap was set here."""
    return _mallopt(_M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX")


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Map blocks of ``size`` bytes and more on their own, always; True when set here."""
    return _mallopt(_M_MMAP_THRESHOLD, size, "MALLOC_MMAP_THRESHOLD_")


def tune_malloc() -> None:
    """The agent's heap settings, before its threads start."""
    limit_malloc_arenas()
    fix_mmap_threshold()
