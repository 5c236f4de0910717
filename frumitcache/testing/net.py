"""Distinct loopback addresses for test nodes.

Every node of a loopback site binds its own address in 127.0.0.0/8, so nodes have distinct
IPs without root (libtorrent bans a bad peer by IP, which only works when IPs differ). The
third octet is drawn per process so that two test runs on one machine rarely meet; within a
process an address is never handed out twice.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

_lock = threading.Lock()
_rng = random.Random(os.getpid())
_block = _rng.randrange(1, 250)
_counter = itertools.count(_rng.randrange(2, 40))
# Below Linux's default ephemeral range (32768-60999) and above the well-known ports.
_PORTS = (20000, 32000)
_given: set[tuple[str, int]] = set()


def _free(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def loopback_address() -> str:
    """A fresh 127.0.B.N address (B fixed per process, N counting up) that binds."""
    with _lock:
        for _ in range(250):
            n = next(_counter) % 250 + 2
            address = f"127.0.{_block}.{n}"
            if _free(address):
                return address
    raise RuntimeError("no free loopback address")


def free_port(address: str) -> int:
    """A port free for TCP and UDP on ``address`` right now (for configs that need one up front).

    Drawn below the kernel's ephemeral range: a port the kernel hands out for binding port 0 is
    one it may also give the next outgoing connection from ``address``, which then takes it
    before the node that was told to listen there starts.
    """
    with _lock:
        for _ in range(500):
            port = _rng.randrange(_PORTS[0], _PORTS[1])
            if (address, port) in _given:
                continue
            if _bindable(address, port, socket.SOCK_STREAM) and _bindable(
                address, port, socket.SOCK_DGRAM
            ):
                _given.add((address, port))
                return port
    raise RuntimeError(f"no free port on {address}")


def _bindable(address: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True
