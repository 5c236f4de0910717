"""Admission for the peer HTTP port: who may hold a descriptor, and for how long.

The port is reachable by anything on the LAN, key or not, so what a connection costs before it
has proved the key must be bounded (issue 16, finding 6: 300 idle connections exhausted the
agent's descriptors and hung every pull):

- at most ``preauth_max`` connections may wait for their first signed request; a new one
  evicts the *oldest* waiting connection, so a flood of idle sockets cannot lock members out
  (a member's request head arrives within milliseconds of its connect);
- a waiting connection must deliver its request head within ``header_timeout_s``; an
  authenticated one may sit idle (no byte moved either way) for ``idle_timeout_s``;
- ``accept()`` failing with EMFILE/ENFILE/ENOBUFS/ENOMEM evicts the oldest waiting connection
  to free a descriptor and retries, or, with none to evict, backs off (50 ms doubling to 1 s);
  it logs one line per minute with a count, instead of trio's traceback per attempt.

This module knows nothing of HTTP: the server wraps each connection in :meth:`Admission.slot`
and calls :meth:`Slot.authenticated` once a request's signature checked out.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from frumitcache._log import Throttle, get_logger
from frumitcache.config import SiteConfig

log = get_logger("swarm")

_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0
_LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class PeerLimits:
    """Bounds on peer-port connections (see the module docstring); ``site.peer_*`` keys."""

    preauth_max: int = 64
    header_timeout_s: float = 5.0
    idle_timeout_s: float = 30.0

    @classmethod
    def from_config(cls, site: SiteConfig) -> PeerLimits:
        return cls(site.peer_preauth_max, site.peer_header_timeout_s, site.peer_idle_timeout_s)


class Slot:
    """One connection's place: its cancel scope, and whether it has proved the key."""

    def __init__(self, admission: Admission, ident: int) -> None:
        self._admission = admission
        self._ident = ident
        self.scope = trio.CancelScope()

    def authenticated(self) -> None:
        """The connection made a signed request: it no longer counts against the cap."""
        self._admission._waiting.pop(self._ident, None)


class Admission:
    """The pre-auth pool and the accept loop of one listening port."""

    def __init__(self, limits: PeerLimits) -> None:
        self.limits = limits
        self._waiting: OrderedDict[int, Slot] = OrderedDict()
        self._next = 0
        self.evicted = 0
        self.accept_errors = 0
        self._log_pace = Throttle(_LOG_EVERY_S)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """Admit one connection; run its handler inside ``slot.scope``."""
        while len(self._waiting) >= max(1, self.limits.preauth_max):
            self.evict_oldest()
        self._next += 1
        slot = Slot(self, self._next)
        self._waiting[self._next] = slot
        try:
            yield slot
        finally:
            self._waiting.pop(slot._ident, None)

    def evict_oldest(self) -> bool:
        """Cancel the connection that has waited longest without proving the key."""
        if not self._waiting:
            return False
        _, slot = self._waiting.popitem(last=False)
        slot.scope.cancel()
        self.evicted += 1
        return True

    async def accept_loop(
        self,
        listener: trio.SocketListener,
        handler: Callable[[trio.SocketStream], Awaitable[None]],
        nursery: trio.Nursery,
    ) -> None:
        """Accept until cancelled; out of descriptors is a reason to wait, never to crash."""
        backoff = _BACKOFF_MIN_S
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _CAPACITY_ERRNOS:
                        raise
                    self._capacity_error(exc.errno)
                    if self.evict_oldest():
                        # The evicted handler closes its socket at its next checkpoint;
                        # yield so it runs, then accept again at once.
                        await trio.lowlevel.checkpoint()
                        await trio.lowlevel.checkpoint()
                    else:
                        await trio.sleep(backoff)
                        backoff = min(2 * backoff, _BACKOFF_MAX_S)
                    continue
                backoff = _BACKOFF_MIN_S
                nursery.start_soon(handler, stream)

    def _capacity_error(self, code: int) -> None:
        self.accept_errors += 1
        held = self._log_pace.admit("accept", trio.current_time())
        if held is None:
            return
        log.warning(
            "peer_http.accept_failed",
            error=errno.errorcode.get(code, str(code)),
            reason=os.strerror(code),
            since_last=held,
            waiting=self.waiting,
        )
