"""The allow-list's rules (pure) and its connection guard (a resolver and a backend injected)."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

import httpcore
import pytest
import trio

from frumitcache.config import config_from_mapping
from frumitcache.errors import ConfigError, NotAllowedError
from frumitcache.origin import AllowList, AllowPolicy
from frumitcache.origin._allow import GuardedBackend, is_own, is_public

LIST = AllowList.parse(
    ["*", "mirror.lan", "*.example.org:8080", "10.1.2.0/24:*", "[fd00::5]"], "origin.allow"
)


@pytest.mark.parametrize(
    "url",
    [
        "http://deb.debian.org/x",  # a pattern: any public name
        "https://8.8.8.8/x",  # a public address
        "http://mirror.lan/x",  # named exactly: trusted wherever it resolves
        "http://a.example.org:8080/x",
        "http://10.1.2.3:9999/x",  # a network with any port
        "http://[fd00::5]/x",
    ],
)
def test_admitted(url: str) -> None:
    LIST.check(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "never file:"),
        ("ftp://deb.debian.org/x", "never ftp:"),
        ("gopher://deb.debian.org/x", "never gopher:"),
        ("http://127.0.0.1/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),  # v4-mapped
        ("http://[64:ff9b::a9fe:a9fe]/x", "loopback"),  # NAT64 of 169.254.169.254
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://192.168.1.1/x", "private"),
        ("http://10.1.3.1/x", "private"),  # next to the allowed network
        ("http://localhost:631/x", "own name"),
        ("http://foo.localhost/x", "own name"),
        ("http://deb.debian.org:25/x", "add 'deb.debian.org:25'"),  # default ports only
        ("http://mirror.lan:8080/x", "add 'mirror.lan:8080'"),
    ],
)
def test_refused(url: str, why: str) -> None:
    with pytest.raises(NotAllowedError, match=re.escape(why)):
        LIST.check(url)


def test_public() -> None:
    assert is_public(ipaddress.ip_address("1.1.1.1"))
    for text in ("100.64.0.1", "fe80::1", "fd00::1", "::", "224.0.0.1", "2002:7f00:1::"):
        assert not is_public(ipaddress.ip_address(text)), text
    assert not is_public(ipaddress.IPv4Address(0))  # 0.0.0.0 reaches this host on Linux


def test_own_addresses_are_found_by_binding_them() -> None:
    assert is_own(ipaddress.ip_address("127.0.0.1"))
    assert not is_own(ipaddress.ip_address("203.0.113.7"))  # TEST-NET-3: nobody's here


def test_policy_doors_and_union() -> None:
    policy = AllowPolicy.from_lists(["*"], apt=["deb.debian.org"], control=[])
    policy.check("http://deb.debian.org/x", "apt")
    with pytest.raises(NotAllowedError, match=r"apt\.allowed_hosts"):
        policy.check("http://example.com/x", "apt")
    policy.check("http://example.com/x", "control")  # empty: origin.allow
    policy.check("http://example.com/x", "site")  # union of every door
    with pytest.raises(NotAllowedError):
        policy.check("http://127.0.0.1/x", "site")


@pytest.mark.parametrize("entry", ["http://x", "a b", "host:99999", "*foo", "[::1", "10.0.0.0/33"])
def test_bad_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"control\.allow"):
        config_from_mapping({"control": {"allow": [entry]}})


class _Inner:
    def __init__(self) -> None:
        self.dialled: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> str:
        self.dialled.append(host)
        return f"stream to {host}"


def _resolver(*addresses: str) -> Any:
    async def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


async def test_guard_refuses_a_name_resolving_to_loopback() -> None:
    # DNS rebinding: a public-looking name answers 127.0.0.1; "*" admits the name, the
    # guard refuses the address and dials nothing.
    inner = _Inner()
    guard = GuardedBackend(inner, AllowList.parse(["*:*"], "origin.allow"), _resolver("127.0.0.1"))
    with pytest.raises(NotAllowedError, match=r"127\.0\.0\.1"):
        await guard.connect_tcp("rebind.example", 80)
    assert inner.dialled == []


async def test_guard_dials_only_the_address_it_checked() -> None:
    inner = _Inner()
    guard = GuardedBackend(
        inner, AllowList.parse(["*"], "origin.allow"), _resolver("10.0.0.1", "93.184.216.34")
    )
    assert await guard.connect_tcp("mixed.example", 80) == "stream to 93.184.216.34"
    assert inner.dialled == ["93.184.216.34"]  # never the private one, never the name


async def test_guard_trusts_an_explicit_name_or_network() -> None:
    inner = _Inner()
    allow = AllowList.parse(["mirror.lan", "10.9.0.0/16:*"], "origin.allow")
    assert await GuardedBackend(inner, allow, _resolver("192.168.1.5")).connect_tcp(
        "mirror.lan", 80
    )
    assert await GuardedBackend(inner, allow, _resolver("10.9.1.1")).connect_tcp("any.lan", 80)
    with pytest.raises(NotAllowedError):
        await GuardedBackend(inner, allow, _resolver("10.8.1.1")).connect_tcp("any.lan", 80)


async def test_guard_turns_resolver_failures_into_connect_errors() -> None:
    # httpx maps these to ConnectError/ConnectTimeout: the fetcher says "unreachable", and a
    # stray OSError never escapes as an internal error.
    async def fails(host: str, port: int, **_: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def hangs(host: str, port: int, **_: Any) -> list[Any]:
        await trio.sleep_forever()
        raise AssertionError

    allow = AllowList.parse(["*"], "origin.allow")
    with pytest.raises(httpcore.ConnectError, match="cannot resolve"):
        await GuardedBackend(_Inner(), allow, fails).connect_tcp("nowhere.invalid", 80)
    with trio.fail_after(5), pytest.raises(httpcore.ConnectTimeout):
        await GuardedBackend(_Inner(), allow, hangs).connect_tcp("slow.invalid", 80, timeout=0.05)
