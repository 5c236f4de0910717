"""The request loop of a port whose requests are signed: the peer HTTP port (site key) and the
federation endpoint (federation key) serve each connection with :func:`serve_signed`.

The loop owns what both ports must do alike: the connection's :class:`~._admission.Admission`
slot (a pre-auth connection is cheap to evict, an authenticated one is not), the head timeout
before the key is proved and the idle timeout after, the signature check of every request
(:class:`RequestGate`: time window, nonce once), reading the request's body to its end,
keep-alive, and closing the stream whatever happens. What a port answers is its own
:class:`SignedHandler`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import h11
import trio

from frumitcache._signing import HEADER, Verifier
from frumitcache.swarm._admission import Admission, PeerLimits
from frumitcache.swarm._peer_wire import header, next_event

#: Longest request head either port reads.
MAX_HEAD = 16 * 1024

#: How a connection ends without anything being wrong here: the peer went away or was too
#: slow, or spoke bad HTTP.
_ENDED: tuple[type[Exception], ...] = (
    trio.BrokenResourceError,
    trio.TooSlowError,
    h11.ProtocolError,
    OSError,
)


class RequestGate:
    """Who gets in at a signed port: :attr:`admission` bounds the connections not yet
    authenticated (``limits``), and a request passes when it is signed with ``key`` within
    ``max_clock_skew_s`` of ``clock()`` (unix seconds) with a nonce not seen before."""

    def __init__(
        self,
        key: bytes,
        *,
        limits: PeerLimits | None = None,
        max_clock_skew_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admission = Admission(limits or PeerLimits())
        self._verifier = Verifier(key, window=max_clock_skew_s)
        self._clock = clock

    def passes(self, req: h11.Request) -> bool:
        return self._verifier.check(req.method, req.target, header(req, HEADER), self._clock())


class SignedHandler(Protocol):
    """A signed port's own part of :func:`serve_signed`: what it answers, and to whom."""

    #: Exceptions that end a connection quietly, besides a peer that goes away, a timeout
    #: and bad HTTP (a response the port cut off on purpose, say).
    quiet: tuple[type[Exception], ...]

    async def answer(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        """Answer a signed request (its body has been read)."""

    async def refuse(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        """Answer a request whose signature failed; the connection then ends."""

    def admitted(self, stream: trio.SocketStream) -> None:
        """The connection's first request passed the gate."""

    def connection_error(self, exc: Exception) -> None:
        """An unexpected error ended one connection (the port serves on)."""


async def serve_signed(stream: trio.SocketStream, gate: RequestGate, port: SignedHandler) -> None:
    """Serve one connection through ``gate`` until it ends; never raises (a connection's end
    is no error, and one connection's bug must not stop the agent)."""
    limits = gate.admission.limits
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    ended = (*_ENDED, *port.quiet)
    try:
        with gate.admission.slot() as slot, slot.scope:
            authenticated = False
            while True:
                # Before the key is proved, a head must arrive quickly; after, the connection
                # may idle between requests for the idle timeout.
                wait = limits.idle_timeout_s if authenticated else limits.header_timeout_s
                with trio.fail_after(wait):
                    event = await next_event(conn, stream)
                if not isinstance(event, h11.Request):
                    return
                if not gate.passes(event):
                    # No body is read and no keep-alive is offered to a stranger.
                    await port.refuse(conn, stream, event)
                    return
                if not authenticated:
                    authenticated = True
                    slot.authenticated()
                    port.admitted(stream)
                with trio.fail_after(limits.idle_timeout_s):
                    while not isinstance(await next_event(conn, stream), h11.EndOfMessage):
                        pass
                await port.answer(conn, stream, event)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
    except ended:
        return
    except Exception as exc:
        port.connection_error(exc)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
