"""The agent's C heap sized for a Pi: few glibc malloc arenas.

glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in
an arena mostly stays in it. The agent's threads — libtorrent's, and trio's worker threads
that hash and copy chunk files through 1 MiB buffers — each kept a few MB that way: measured
in bench.herd (8 agents, 64 MiB, 10 % of a core each) the warm herd's peak agent RSS was
88-92 MB with glibc's default and 70 MB with two arenas, at the same CPU per GB.

Called once before any thread starts (arenas made earlier stay). ``MALLOC_ARENA_MAX`` in the
environment wins, as glibc itself reads it; on a C library without ``mallopt`` (musl) this does
nothing.
"""

from __future__ import annotations

import ctypes
import os

from frumitcache._log import get_logger

log = get_logger("agent")

#: glibc's ``M_ARENA_MAX`` parameter number (malloc.h).
_M_ARENA_MAX = -8
#: The main arena and one shared by every other thread.
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; True when the cap was set here."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    if not done:
        log.debug("agent.malloc_arenas_unchanged", arenas=arenas)
    return done
