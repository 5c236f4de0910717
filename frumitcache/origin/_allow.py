"""The upstream allow-list: which URLs may cross the uplink, for every door and every redirect.

One list per door, written with one syntax (``origin.allow`` is the default; ``apt.allowed_hosts``
and ``control.allow`` override it for the apt proxy and for the control socket's pull, fetch and
prefetch). An entry is

- ``host`` or ``host:port`` -- one name, or one address (``10.0.0.5``, ``[fd00::5]``);
- ``*.example.org`` -- any name under ``example.org``; ``*`` -- any host;
- ``10.0.0.0/8`` or ``[fd00::/8]`` -- any address in a network;

followed by ``:N`` for one port or ``:*`` for any; without a port only the scheme's default port
(80, 443) is admitted, so ``deb.debian.org`` does not open ``deb.debian.org:25``.

Why the default ``origin.allow = ["*"]`` is safe enough for ``pull``: users pull artifacts from
arbitrary public hosts, so a closed list would be replaced by ``*`` at once; what must never be
reachable is what lives *behind* the seeder -- its loopback services, the site LAN, the
management network, the seeder's own addresses. So a pattern (``*``, ``*.x``) admits a host only
while *every address it is reached at* is public (globally routed) and not one of this host's own;
loopback, private, link-local, CGNAT, unique-local and the like need an explicit entry (the exact
name, the address, or its network). An explicit name is trusted wherever it resolves (a LAN
mirror ``mirror.lan`` may sit on 10.x). Only ``http`` and ``https`` are ever fetched: ``file:``,
``ftp:`` and every other scheme are refused by every door.

Names are checked per door for the first URL and every redirect hop (:meth:`AllowList.check`);
addresses are checked when the connection is made (:class:`GuardedBackend`, which connects to the
address it checked, so a DNS answer that changes between check and connect gains nothing). The
connection check applies the union of all doors' lists: a pooled connection may serve several
doors, and a member's request reaching the seeder over the site (``FetchRequest``, ``POST
/prefetch``) is checked against that union too -- the seeder decides, not the (maybe compromised)
member. With ``origin.proxy`` set, the proxy resolves names; only the name and literal-address
checks apply.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore
import trio

from frumitcache.errors import ConfigError, NotAllowedError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Door = Literal["apt", "control", "oci", "site"]
SCHEMES = {"http": 80, "https": 443}
ALLOW_EXTENSION = "frumitcache.allow"  # httpx request extension: the asking door's AllowList
ANY_PORT = -1
# Names that always mean this host (RFC 6761), whatever a resolver says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# NAT64 well-known prefix: an address in it reaches the IPv4 address in its low 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@functools.lru_cache(maxsize=1024)  # pure, and asked per request for the same few hosts
def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_public(address: Address) -> bool:
    """Globally routed unicast, including what an IPv6 address embeds (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def is_own(address: Address) -> bool:
    """Whether this host holds ``address`` (it can bind it): the seeder's own services."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of an allow-list."""

    text: str  # as written, for messages
    kind: Literal["any", "suffix", "name", "net"]
    name: str = ""  # the name (kind name) or the suffix with its dot (kind suffix)
    network: Network | None = None
    port: int | None = None  # None: the scheme's default port; ANY_PORT: any

    @property
    def explicit(self) -> bool:
        """Names one host or network: trusted at any address (patterns need public ones)."""
        return self.kind in ("name", "net")

    @classmethod
    def parse(cls, text: str, key: str) -> Rule:
        entry = text.strip().lower()
        host, port_text = entry, ""
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigError(f"{key}: bad entry {text!r}")
            port_text = rest[1:]
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
        port: int | None = None
        if port_text == "*":
            port = ANY_PORT
        elif port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"{key}: bad port in {text!r}")
            port = int(port_text)
        if not host:
            raise ConfigError(f"{key}: empty entry {text!r}")
        if host == "*":
            return cls(text, "any", port=port)
        if host.startswith("*."):
            return cls(text, "suffix", name=host[1:].rstrip("."), port=port)
        if "/" in host or _address(host) is not None:
            try:
                return cls(text, "net", network=ipaddress.ip_network(host, strict=False), port=port)
            except ValueError:
                raise ConfigError(f"{key}: bad network in {text!r}") from None
        if "*" in host or not all(c.isalnum() or c in "-._" for c in host):
            raise ConfigError(f"{key}: bad host in {text!r} (a name, *.domain, * or a network)")
        return cls(text, "name", name=host.rstrip("."), port=port)

    def matches(self, host: str, port: int | None, scheme: str | None) -> bool:
        """Whether this entry names ``host`` on ``port`` (``None``: do not look at the port)."""
        if port is not None and self.port != ANY_PORT:
            wanted = self.port if self.port is not None else SCHEMES.get(scheme or "", 0)
            if port != wanted:
                return False
        address = _address(host)
        if self.kind == "any":
            return True
        if self.kind == "net":
            assert self.network is not None
            return address is not None and address in self.network
        if address is not None:
            return False
        if self.kind == "suffix":
            return host.endswith(self.name)
        return host == self.name


@dataclass(frozen=True, slots=True)
class AllowList:
    """The entries of one door's list, and the config key that holds them (for messages)."""

    rules: tuple[Rule, ...]
    key: str

    @classmethod
    def parse(cls, entries: Iterable[str], key: str) -> AllowList:
        return cls(tuple(Rule.parse(e, key) for e in entries), key)

    def admits_name(self, host: str, port: int, scheme: str) -> bool:
        """Whether a URL's host and port pass (an address literal must also pass the address
        rule: a pattern never admits a loopback, private or own address)."""
        host = host.lower().rstrip(".")
        for rule in self.rules:
            if not rule.matches(host, port, scheme):
                continue
            if rule.explicit:
                return True
            address = _address(host)
            if address is not None:
                if is_public(address) and not is_own(address):
                    return True
            elif host not in _LOCAL_NAMES and not host.endswith(".localhost"):
                return True
        return False

    def admits_address(self, host: str, address: Address) -> bool:
        """Whether a connection to ``address`` (resolved from ``host``) may be made."""
        host = host.lower().rstrip(".")
        for rule in self.rules:
            if rule.kind == "net" and rule.matches(str(address), None, None):
                return True
            if rule.kind == "name" and rule.matches(host, None, None):
                return True
        return is_public(address) and not is_own(address)

    def check(self, url: str) -> None:
        """Raise :class:`NotAllowedError` (naming the key to edit) unless ``url`` passes."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise NotAllowedError(f"not a URL: {url!r}") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise NotAllowedError(
                f"{url}: only http:// and https:// URLs are fetched, never {scheme or '(none)'}:"
            )
        host = parts.hostname or ""
        if not host:
            raise NotAllowedError(f"{url}: the URL names no host")
        port = port if port is not None else SCHEMES[scheme]
        if self.admits_name(host, port, scheme):
            return
        shown = f"[{host}]" if ":" in host else host
        shown = shown if port == SCHEMES[scheme] else f"{shown}:{port}"
        address = _address(host)
        why = ""
        if address is not None and not (is_public(address) and not is_own(address)):
            why = " (a loopback, private, link-local or own address needs an explicit entry)"
        elif host in _LOCAL_NAMES or host.endswith(".localhost"):
            why = " (this host's own name needs an explicit entry)"
        raise NotAllowedError(
            f"{url}: upstream {shown} is not allowed{why}; add {shown!r} to {self.key} in the "
            "agent's config"
        )


@dataclass(frozen=True, slots=True)
class AllowPolicy:
    """Every door's list; ``site`` (requests from other members) gets the union of them all."""

    doors: Mapping[str, AllowList]

    @classmethod
    def from_lists(cls, default: Iterable[str], **doors: Iterable[str]) -> AllowPolicy:
        """``default`` is ``origin.allow``; ``doors`` (apt, control) override it when non-empty."""
        base = AllowList.parse(default, "origin.allow")
        keys = {
            "apt": "apt.allowed_hosts",
            "control": "control.allow",
            "oci": "oci.allowed_hosts",
        }
        built = {
            door: AllowList.parse(entries, keys.get(door, f"{door}.allow")) if entries else base
            for door, entries in doors.items()
        }
        built.setdefault("apt", base)
        built.setdefault("control", base)
        built.setdefault("oci", base)
        every = {id(a): a for a in (base, *built.values())}.values()
        built["site"] = AllowList(
            tuple(r for a in every for r in a.rules), " or ".join(a.key for a in every)
        )
        return cls(built)

    @classmethod
    def from_config(cls, cfg: Any) -> AllowPolicy:
        """From a :class:`~frumitcache.config.Config`."""
        return cls.from_lists(
            cfg.origin.allow,
            apt=cfg.apt.allowed_hosts,
            control=cfg.control.allow,
            oci=cfg.oci.allowed_hosts,
        )

    def door(self, door: Door) -> AllowList:
        return self.doors[door]

    def check(self, url: str, door: Door) -> None:
        self.doors[door].check(url)


class GuardedBackend:
    """An httpcore network backend that resolves a host itself, connects only to addresses the
    policy admits (:meth:`AllowList.admits_address` of the union), and to the very address it
    checked. Every other call goes to the wrapped backend."""

    def __init__(self, inner: Any, allow: AllowList, resolve: Callable[..., Any]) -> None:
        self._inner = inner
        self._allow = allow
        self._resolve = resolve  # trio.socket.getaddrinfo, injectable

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        # Name resolution moved here from the wrapped backend: give it the same connect
        # timeout and the same error types (httpx makes them "cannot connect").
        timeout = kwargs.get("timeout")
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                infos = await self._resolve(host, port, type=socket.SOCK_STREAM)
        except trio.TooSlowError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        admitted = [
            a for a in addresses if self._allow.admits_address(host, ipaddress.ip_address(a))
        ]
        if not admitted:
            raise NotAllowedError(
                f"{host} resolves to {', '.join(addresses) or 'nothing'}: a loopback, private, "
                f"link-local or own address, which only an explicit entry in {self._allow.key} "
                "admits"
            )
        error: BaseException | None = None
        for address in admitted:
            try:
                return await self._inner.connect_tcp(address, port, *args, **kwargs)
            except Exception as exc:  # the wrapped backend's connect error: try the next one
                error = exc
        assert error is not None
        raise error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def install_guard(transport: Any, allow: AllowList, resolve: Callable[..., Any]) -> bool:
    """Wrap the network backend of an ``httpx.AsyncHTTPTransport`` (httpx 0.23 to 0.28 keep it
    at ``_pool._network_backend``; neither exposes a parameter). False if it is not there."""
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if pool is None or inner is None:
        return False
    with contextlib.suppress(AttributeError):
        pool._network_backend = GuardedBackend(inner, allow, resolve)
        return True
    return False
