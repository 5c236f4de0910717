"""Who holds a port: the ``/proc/net`` forensics behind doctor's port checks.

Reads ``/proc/net/{tcp,tcp6,udp,udp6}`` for sockets bound to a port at an address that takes
the wanted one, then ``/proc/<pid>/fd`` for the processes holding them (all of them as root,
one's own otherwise), and their command lines to tell the agent from a stranger; and the
addresses under which this node's own ports are reached.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from frumitcache.config import Config

_PROC_NET = {"tcp": ("tcp", "tcp6"), "udp": ("udp", "udp6")}
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp; unbound UDP sockets show state 07


def _proc_address(field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a ``/proc/net`` ``HEX:PORT`` field (each 32-bit word in host order)."""
    raw = bytes.fromhex(field.rpartition(":")[0])
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def _overlaps(bound: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> bool:
    """Whether a socket bound to ``bound`` takes the address ``host`` wants (either is a
    wildcard, they are equal, or one is the other's IPv4-mapped form)."""
    try:
        wanted = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return True  # a name, not an address: be conservative
    if bound.is_unspecified or wanted.is_unspecified:
        return True
    if isinstance(bound, ipaddress.IPv6Address) and bound.ipv4_mapped is not None:
        bound = bound.ipv4_mapped
    return bound == wanted


def socket_holders(
    proto: str, port: int, host: str = "::", proc: Path = Path("/proc")
) -> Iterator[tuple[int | None, int]]:
    """``(pid or None, uid)`` of each socket bound to ``port`` (a listener for TCP) at an
    address that takes ``host`` (the same one, or a wildcard)."""
    inodes: dict[int, int] = {}
    for table in _PROC_NET[proto]:
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, state = parts[1], parts[3]
            if int(local.rpartition(":")[2], 16) != port:
                continue
            try:
                if not _overlaps(_proc_address(local), host):
                    continue
            except ValueError:
                pass  # a line we cannot read: keep it, as before
            if proto == "tcp" and state != _LISTEN:
                continue
            inodes[int(parts[9])] = int(parts[7])
    pids = _pids_of_inodes(set(inodes), proc)
    for inode, uid in inodes.items():
        yield pids.get(inode), uid


def _pids_of_inodes(inodes: set[int], proc: Path) -> dict[int, int]:
    """Which process holds each socket inode; only the processes we may look into (all as root)."""
    found: dict[int, int] = {}
    if not inodes:
        return found
    for entry in _iter_pids(proc):
        with contextlib.suppress(OSError):
            for fd in (proc / str(entry) / "fd").iterdir():
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
                if m and int(m.group(1)) in inodes:
                    found[int(m.group(1))] = entry
    return found


def _iter_pids(proc: Path) -> Iterable[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def command_line(pid: int) -> str:
    argv = _argv(pid)
    return shlex.join(argv)[:80] if argv else "?"


def is_agent(pid: int) -> bool:
    """``frumitcache agent ...`` or ``python -m frumitcache agent ...``."""
    argv = _argv(pid)
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "frumitcache":
            return "agent" in argv[i + 1 :]
    return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - names the wildcard, binds nothing


def agent_hosts(config: Config) -> set[str]:
    """Host names under which apt reaches this node's proxy."""
    listen = config.apt.listen
    if listen in WILDCARDS:
        return {"127.0.0.1", "localhost", "::1", config.node.address, socket.gethostname()}
    if is_loopback(listen):
        return {listen, "localhost"}
    return {listen}
