"""The test helpers' addresses and ports: distinct, bindable, and out of the kernel's way."""

from __future__ import annotations

import socket
from pathlib import Path

from frumitcache.testing.net import free_port, loopback_address


def _ephemeral() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_free_ports_are_distinct_bindable_and_not_ephemeral() -> None:
    address = loopback_address()
    low, high = _ephemeral()
    ports = [free_port(address) for _ in range(50)]
    assert len(set(ports)) == 50
    for port in ports:
        # An outgoing connection from this address can never be given one of these.
        assert not low <= port <= high
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((address, port))


def test_free_port_skips_a_port_in_use() -> None:
    address = loopback_address()
    taken = []
    try:
        for _ in range(20):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            taken.append(s)
            port = free_port(address)
            s.bind((address, port))  # free now, so this bind succeeds ...
            s.listen()
        # ... and no later call hands out a port a listener holds.
        held = {s.getsockname()[1] for s in taken}
        assert not held & {free_port(address) for _ in range(50)}
    finally:
        for s in taken:
            s.close()


def test_loopback_addresses_are_distinct() -> None:
    addresses = {loopback_address() for _ in range(20)}
    assert len(addresses) == 20
    assert all(a.startswith("127.0.") for a in addresses)
