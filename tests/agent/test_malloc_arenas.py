"""The agent caps glibc's malloc arenas and fixes its mmap threshold before its threads start
(Pi-sized RSS: freed chunk buffers go back to the kernel), and an operator's MALLOC_* wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

_PROBE = "from frumitcache._malloc import limit_malloc_arenas; print(limit_malloc_arenas())"


def _probe(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_arenas_capped_unless_the_environment_says() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _probe(env) == "True"
    assert _probe({**env, "MALLOC_ARENA_MAX": "4"}) == "False"


# Chunk-sized buffers made and freed one after another, as the seeder's store writer does;
# prints the RSS (KiB) they leave behind once all are freed.
_BUFFERS = """
import sys
from frumitcache._malloc import fix_mmap_threshold
if sys.argv[1] == "tuned":
    assert fix_mmap_threshold()
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
base = rss()
for _ in range(4):
    buf = bytearray(8 << 20)
    buf[::4096] = b"x" * len(buf[::4096])  # touch every page
    del buf
print(rss() - base)
"""


def _left_behind(mode: str, env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _BUFFERS, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_chunk_buffers_go_back_to_the_kernel() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    # glibc's default raises its mmap threshold at the first free: later buffers stay in the heap.
    assert _left_behind("default", env) >= 4 << 10
    assert _left_behind("tuned", env) < 1 << 10


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_mmap_threshold_set_unless_the_environment_says() -> None:
    probe = "from frumitcache._malloc import fix_mmap_threshold; print(fix_mmap_threshold())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    for extra, expected in (({}, "True"), ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, "False")):
        done = subprocess.run(
            [sys.executable, "-c", probe], env={**env, **extra}, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        assert done.stdout.strip() == expected
