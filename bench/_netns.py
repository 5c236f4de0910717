"""A shaped site made of Linux network namespaces (root only).

Layout, all inside namespaces named ``fc<pid>-...`` (the harness's pid, so parallel runs and
leftovers never clash; nothing is added to the host's own namespace)::

    fc<pid>-inet  eth0 10.99.1.2 ──(U both ways)──wan 10.99.1.1 ┐
                                                               fc<pid>-site (router + bridge br0
                                                                10.99.0.1)
    fc<pid>-pi<i> eth0 10.99.0.<10+i> ──(u up / d down)── p<i> ┘ (bridge port)

Every link is a veth pair created straight into its two namespaces and shaped on egress with
htb: a Pi's upload on its own ``eth0``, its download on the bridge port ``p<i>``; the site uplink
on ``wan`` (site → internet) and on the internet side's ``eth0`` (internet → site). The private
addresses exist only inside these namespaces; the host's interfaces are never touched.

Each namespace also gets ``/etc/netns/<name>/resolv.conf`` (which ``ip netns exec`` mounts over
``/etc/resolv.conf``) naming a resolver on the namespace's own loopback: the host's resolver is
unreachable from the site, and apt-cacher-ng, which asks DNS for ``_http._tcp.<host>`` SRV
records even for an IP address, would otherwise wait 17 s for every miss and then answer 500.

:func:`cleanup_leftovers` removes the namespaces of runs whose harness process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "fc"
SITE_NET = "10.99.0"
INET_NET = "10.99.1"
SITE_NET6 = "fd99:fc::"  # a ULA /64 for the site LAN when the Pis get IPv6 addresses
ETC_NETNS = Path("/etc/netns")
_NAME = re.compile(rf"^{PREFIX}(\d+)-[a-z0-9]+$")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _tc(ns: str, *args: str) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "tc", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} in {ns}: {result.stderr.strip()}")


def _shape(ns: str, dev: str, rate_bytes: int) -> None:
    """Limit ``dev``'s egress to ``rate_bytes`` bytes/s with one htb class (0: unshaped)."""
    if not rate_bytes:
        return
    bits = rate_bytes * 8
    # A burst of ~10 ms at the rate (at least 32 KiB) keeps htb accurate on veth with GSO.
    burst = max(32 * 1024, rate_bytes // 100)
    _tc(ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1")
    _tc(
        ns,
        "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
        "rate", f"{bits}bit", "ceil", f"{bits}bit", "burst", str(burst), "cburst", str(burst),
    )  # fmt: skip


def list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"bench" in cmdline or b"pytest" in cmdline


def delete_namespace(ns: str) -> None:
    """Kill what still runs in ``ns`` (by pid) and delete it; deleting it frees its links."""
    for pid in namespace_pids(ns):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _ip("netns", "del", ns, check=False)
    shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


def cleanup_leftovers() -> list[str]:
    """Delete the namespaces of dead harness runs; returns their names."""
    removed = []
    for ns in list_namespaces():
        m = _NAME.match(ns)
        if m and not _alive(int(m.group(1))):
            delete_namespace(ns)
            removed.append(ns)
    if ETC_NETNS.is_dir():
        for path in ETC_NETNS.iterdir():
            m = _NAME.match(path.name)
            if m and not _alive(int(m.group(1))):
                shutil.rmtree(path, ignore_errors=True)
    return removed


class Namespaces:
    """What every shaped testbed does with its namespaces (``tag`` names them, ``created``
    lists them): :meth:`build` makes them with the subclass's ``_build`` (removing what it made
    if that fails), :meth:`teardown` removes them, :meth:`exists` lists the ones left."""

    tag: str
    created: list[str]

    def _build(self) -> None:
        raise NotImplementedError

    def build(self) -> None:
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise

    def prefix(self, ns: str) -> list[str]:
        """argv prefix that runs a command inside ``ns``."""
        return ["ip", "netns", "exec", ns]

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        etc = ETC_NETNS / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def teardown(self) -> None:
        for ns in reversed(self.created):
            delete_namespace(ns)
        self.created.clear()

    def exists(self) -> Sequence[str]:
        """Namespaces of this run that still exist (empty after :meth:`teardown`)."""
        return [ns for ns in list_namespaces() if ns.startswith(f"{self.tag}-")]


@dataclass
class ShapedSite(Namespaces):
    """The namespaces of one site; :meth:`build` makes them, :meth:`teardown` removes them."""

    nodes: int
    uplink: int  # bytes/s, both directions
    down: int  # bytes/s per Pi
    up: int  # bytes/s per Pi
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    created: list[str] = field(default_factory=list)
    #: Also give the bridge and every Pi an IPv6 ULA address on the site LAN (no DAD: the
    #: addresses are usable at once); the uplink and the origin stay IPv4.
    ipv6: bool = False

    @property
    def site_ns(self) -> str:
        return f"{self.tag}-site"

    @property
    def inet_ns(self) -> str:
        return f"{self.tag}-inet"

    def pi_ns(self, i: int) -> str:
        return f"{self.tag}-pi{i}"

    def pi_address(self, i: int) -> str:
        return f"{SITE_NET}.{10 + i}"

    def pi_address6(self, i: int) -> str:
        return f"{SITE_NET6}{10 + i:x}"

    @property
    def origin_address(self) -> str:
        return f"{INET_NET}.2"

    def _build(self) -> None:
        if self.nodes > 200:
            raise ValueError("at most 200 Pis fit the site subnet")
        site, inet = self.site_ns, self.inet_ns
        self._add_ns(site)
        self._add_ns(inet)
        _ip("-n", site, "link", "add", "br0", "type", "bridge")
        _ip("-n", site, "addr", "add", f"{SITE_NET}.1/24", "dev", "br0")
        if self.ipv6:
            _ip("-n", site, "addr", "add", f"{SITE_NET6}1/64", "dev", "br0", "nodad")
        _ip("-n", site, "link", "set", "br0", "up")
        subprocess.run(
            ["ip", "netns", "exec", site, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        # The site uplink: site "wan" <-> internet "eth0", shaped to U each way.
        _ip("-n", site, "link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", inet)
        _ip("-n", site, "addr", "add", f"{INET_NET}.1/24", "dev", "wan")
        _ip("-n", inet, "addr", "add", f"{self.origin_address}/24", "dev", "eth0")
        _ip("-n", site, "link", "set", "wan", "up")
        _ip("-n", inet, "link", "set", "eth0", "up")
        _ip("-n", inet, "route", "add", "default", "via", f"{INET_NET}.1")
        _shape(site, "wan", self.uplink)
        _shape(inet, "eth0", self.uplink)
        for i in range(self.nodes):
            pi, port = self.pi_ns(i), f"p{i}"
            self._add_ns(pi)
            _ip(
                "-n", site, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", pi
            )
            _ip("-n", site, "link", "set", port, "master", "br0")
            _ip("-n", site, "link", "set", port, "up")
            _ip("-n", pi, "addr", "add", f"{self.pi_address(i)}/24", "dev", "eth0")
            if self.ipv6:
                _ip("-n", pi, "addr", "add", f"{self.pi_address6(i)}/64", "dev", "eth0", "nodad")
            _ip("-n", pi, "link", "set", "eth0", "up")
            _ip("-n", pi, "route", "add", "default", "via", f"{SITE_NET}.1")
            _shape(pi, "eth0", self.up)
            _shape(site, port, self.down)
