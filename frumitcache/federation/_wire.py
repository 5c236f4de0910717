"""The federation link's wire rules, without I/O: the request path that names an origin URL,
the headers a child sends, and which answers a child takes (the rest make it ask the next
member, site or the origin).

A child asks ``GET /federation/v1/object?url=<origin URL, percent-encoded>``, signed with the
federation key exactly as a site member signs a peer-port request (``X-Frumit-Auth``: time,
nonce, HMAC-SHA256 over method, path, time and nonce). Range, If-Range, If-None-Match,
If-Modified-Since and Accept travel as in any HTTP request; ``Cache-Control: only-if-cached``
asks a sibling for what it holds, never for a fetch (Squid's sibling rule); ``X-Frumit-Freshness:
revalidate`` says the object may change (an apt index), so a parent serves it revalidated within
its site's window rather than as held. ``X-Frumit-In-Flight: join`` on an only-if-cached request
to a parent (a registry blob the child fetches with a token it may not pass on) lets the parent
serve what it is fetching for itself at that moment, as it arrives: no fetch is started for the
child, and the child checks the bytes against the digest it knows. ``X-Frumit-In-Flight: relay``
on a sibling's request (``federation.relay_depth``) lets the sibling serve what its seeder is
fetching right now, chunk by chunk as verified, within the depth (``may_relay``); the answer
names the relaying sites in ``X-Frumit-Chain``.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qs, quote, urlsplit

Role = Literal["parent", "sibling"]

PATH = "/federation/v1/object"
FRESHNESS_HEADER = "x-frumit-freshness"
#: The asking child's site name (``site.name``): a label for the parent's figures and logs.
SITE_HEADER = "x-frumit-site"
#: Set by a parent on a 404/410 that is the origin's own answer (not a refusal of the link).
ORIGIN_STATUS_HEADER = "x-frumit-origin-status"
#: Set on the 403 that refuses the link itself (no or a wrong federation key): the child skips
#: that member for a while, where any other refusal concerns one object only.
REFUSED_HEADER = "x-frumit-federation"
ONLY_IF_CACHED = "only-if-cached"
#: On an only-if-cached request: the member's own running fetch of the object counts as held.
#: ``join`` is sent to parents (a registry blob the child may not fetch itself). ``relay`` is
#: sent to siblings when ``federation.relay_depth`` is set: a sibling serves what its seeder
#: is fetching right now only within that depth (``may_relay``), or every site of a
#: simultaneous release would chain behind the first one's upload.
IN_FLIGHT_HEADER = "x-frumit-in-flight"
JOIN = "join"
RELAY = "relay"
#: On a relayed answer: the sites the bytes pass through, nearest first (the answering site,
#: then those its own fetch comes through). The child keeps it as its own upstream.
CHAIN_HEADER = "x-frumit-chain"
#: Set on the 503 of a member already serving ``federation.max_sibling_streams`` held objects to
#: sibling sites: the child asks its next sibling, then its parents, and asks this one again
#: for the next object (busy is not failed).
BUSY_HEADER = "x-frumit-busy"
#: Request headers a child passes on to the link as they are.
FORWARDED = ("range", "if-range", "if-none-match", "if-modified-since", "accept", "user-agent")
_MAX_URL = 8192


def object_target(url: str) -> str:
    """The request target that asks a federated site for ``url``."""
    return f"{PATH}?url={quote(url, safe='')}"


def parse_target(target: str) -> str | None:
    """The origin URL a target asks for, or None when it is not a federation request (or
    names no http/https URL)."""
    if len(target) > _MAX_URL + len(PATH) + 8:
        return None
    path, _, query = target.partition("?")
    if path != PATH:
        return None
    values = parse_qs(query, keep_blank_values=True, strict_parsing=False).get("url", [])
    if len(values) != 1:
        return None
    url = values[0]
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


def takes(role: Role, status: int, origin_said: bool) -> bool:
    """Does a child take this answer of a ``role`` member as the object's answer?

    Content (200, 206), not-modified (304) and an unsatisfiable range (416) are answers. A 404
    or 410 is one only from a parent and only when the origin said so. Anything else (refused,
    not held, the member's site failing) sends the child to the next member, site or the origin.
    """
    if status in (200, 206, 304, 416):
        return True
    return role == "parent" and origin_said and status in (404, 410)


_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # what a site label may hold
_MAX_CHAIN = 16  # sites in a chain header: relay_depth is a handful


def site_name(value: str) -> str | None:
    """``value`` if it is a usable site label (``site.name``), else None."""
    return value if _SITE_NAME.fullmatch(value) else None


def parse_chain(value: str) -> tuple[str, ...] | None:
    """The sites of a ``x-frumit-chain`` header; None when it is not one (too long, or a
    name that is no site label): the child then does not relay what it fetches."""
    names = tuple(part.strip() for part in value.split(",")) if value.strip() else ()
    if len(names) > _MAX_CHAIN or any(site_name(name) is None for name in names):
        return None
    return names


def may_relay(asker: str, own: str, upstream: tuple[str, ...] | None, depth: int) -> bool:
    """May a site (``own``) whose running fetch comes through ``upstream`` (the sites between
    it and its parent or the origin; None: no fetch of its own running, or its chain unknown)
    serve that fetch to the sibling site ``asker``, under ``federation.relay_depth`` ``depth``?

    Only between named sites, never to a site the bytes already pass through (a loop: each
    would wait for the other), and only while at most ``depth`` - 1 relays stand between the
    asker and the parent: every relay holds a chunk back until it is verified, so each level
    adds a chunk time.
    """
    if not depth or upstream is None or site_name(asker) is None or not own:
        return False
    if asker == own or asker in upstream:
        return False
    return len(upstream) + 1 < depth


def sibling_ask(cache_control: str, in_flight: str) -> bool:
    """Is a request with these header values a sibling's ask for held content (only-if-cached,
    not a child's ask to join its parent's running fetch)? Such asks share a member's
    ``federation.max_sibling_streams``; a parent's children never do."""
    return ONLY_IF_CACHED in cache_control and in_flight != JOIN


class SiblingSlots:
    """How many held objects a member is streaming to sibling sites, against ``limit`` (0: no
    limit). Without one, every later site of a late release that finds this member holding
    the object takes all of it from here, and a dozen sites share one site's uplink while the
    parents, which would serve them, idle (bench.sim ``--release late``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.serving = 0

    def take(self) -> bool:
        """A slot for one more stream; False when the member is busy (answer 503)."""
        if self.limit and self.serving >= self.limit:
            return False
        self.serving += 1
        return True

    def give(self) -> None:
        """A stream ended (completed, cut or refused after the slot was taken)."""
        self.serving = max(0, self.serving - 1)


#: A wait this long for a link's next bytes means the member had none ready (a parent waiting
#: for its own source releases each verified chunk in one burst): not the link's slowness. A
#: busy narrow link hands over bytes as packets arrive (a member pacing at federation.max_rate
#: sends a quarter second of its rate at a time, at least 4 KiB), so it waits this long only
#: when stalled or paced below 4 KiB/s.
IDLE_GAP_S = 1.0


class RateFloor:
    """Is a *link* slower than ``min_rate`` bytes/s over the last ``window_s``? Fed each body
    piece with the time and how long the reader waited for it (``add(n, now, waited)``); the
    first window starts at the first piece, so the wait for the answer's head is not counted,
    and waits of :data:`IDLE_GAP_S` or more (the member had nothing to send: a parent slowed by
    its own origin) leave the rate: it is the bytes over the time the link was busy. So a child
    leaves a narrow link, also while its parent is still fetching, and stays with a parent that
    is slow for its own reasons (leaving it would make the origin send those bytes again).
    ``min_rate`` 0: never."""

    def __init__(self, min_rate: int, window_s: float) -> None:
        self.min_rate = min_rate
        self.window_s = window_s
        self._start: float | None = None
        self._bytes = 0
        self._idle = 0.0

    def add(self, n: int, now: float, waited: float = 0.0) -> bool:
        """Count ``n`` bytes received at ``now`` after ``waited`` seconds; True when the window
        ended with the link busy and too slow."""
        if not self.min_rate:
            return False
        if self._start is None:
            self._start = now
            return False
        self._bytes += n
        if waited >= IDLE_GAP_S:
            self._idle += waited
        elapsed = now - self._start
        if elapsed < self.window_s:
            return False
        busy = elapsed - self._idle
        slow = busy > 0 and self._bytes < self.min_rate * busy
        self._start, self._bytes, self._idle = now, 0, 0.0
        return slow
