"""The I/O of rule 8 (:mod:`._evidence`): is anything listening at a late seeder's peer port?
(Also asked by a seeder taking over a fetch: does the quiet seeder it replaced still live?)

Only a refused connect (``ECONNREFUSED``: the host's kernel answered with a reset, or a
firewall rejected the port) counts, and only at the address the seeder's own control frames
come from: an agent binds its control socket and its peer port to the same address, and a
frame's source is where it really is (not a name it advertises, nor a wildcard address). A
timeout, an unreachable host or network, an accepted connect: no evidence.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import trio

from frumitcache._log import get_logger
from frumitcache.site._core import SiteCore
from frumitcache.site._election import Outgoing
from frumitcache.site._evidence import Probe, Refused
from frumitcache.site._setup import family_of

log = get_logger("site")


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.partition("%")[0]) == ipaddress.ip_address(b)
    except ValueError:
        return False


async def peer_port_answer(
    address: str, port: int, source: tuple[Any, ...] | None, *, timeout_s: float
) -> bool | None:
    """A TCP connect to ``address:port``, only when ``address`` is ``source`` (where the
    node's last frame came from): True accepted (a process of it lives, perhaps paused: its
    kernel completes the handshake), False refused (none is left), None no answer."""
    if source is None or not _same_address(str(source[0]), address):
        return None
    family = family_of(address)
    target: tuple[Any, ...] = (address, port)
    if family == socket.AF_INET6 and len(source) >= 4:
        target = (*target, 0, source[3])  # a link-local address needs the frame's scope
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        with trio.move_on_after(timeout_s):
            await sock.connect(target)
            return True
        return None
    except ConnectionRefusedError:
        return False
    except OSError:  # unreachable, no route, ...: no evidence
        return None
    finally:
        sock.close()


async def seeder_gone(probe: Probe, source: tuple[Any, ...] | None, *, timeout_s: float) -> bool:
    """True only when a TCP connect to ``probe``'s address and port is refused and that address
    is ``source``, where the seeder's last frame came from."""
    answer = await peer_port_answer(probe.address, probe.port, source, timeout_s=timeout_s)
    return answer is False


async def probe_seeder(
    core: SiteCore,
    probe: Probe,
    source: tuple[Any, ...] | None,
    *,
    now: Callable[[], float],
    wall: Callable[[], float],
) -> list[Outgoing] | None:
    """Carry out ``probe``; on evidence feed ``core`` and return what it sends (``None``: no
    evidence, or nothing voided). Logs the wall time the voided promise would have run to."""
    timeout_s = core.timings.lease_s / 3  # no answer by the next renewal: no evidence
    if not await seeder_gone(probe, source, timeout_s=timeout_s):
        return None
    at, until = now(), core.election.promise_until
    out = core.refused(Refused(probe), at)
    if out is not None:
        promised = round(wall() + until - at, 3)
        log.info("site.seeder-gone", seeder=probe.seeder, term=probe.term, promised=promised)
    return out
