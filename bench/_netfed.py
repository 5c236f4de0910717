"""A shaped federation made of Linux network namespaces (root only): sites behind their own
shaped uplinks to a backbone router, and an origin beyond the backbone.

Layout, all inside namespaces named ``fc<pid>-...`` (the harness's pid, so :func:`bench._netns.
cleanup_leftovers` removes a dead run's namespaces; nothing is added to the host's namespace)::

    fc<pid>-og  eth0 10.97.250.2 / fd42:97:fa::2 ── o0 ┐
                                                      fc<pid>-bb (backbone router)
    fc<pid>-s<s> wan 10.97.<s>.2 / fd42:97:<s>::2 ── u<s> ┘  (shaped to U each way)
        br0 10.98.<10+s>.1 / fd42:98:<s>::1
        └─ p<i> ── fc<pid>-s<s>p<i> eth0 10.98.<10+s>.<10+i> / fd42:98:<s>::<10+i>

Site 0 is the core. Every site reaches every other and the origin through the backbone, IPv4
and IPv6 (a ULA prefix), so an edge can name its parents by either family. The addresses exist
only inside these namespaces; the host's interfaces are never touched.

``slow_links`` narrows one edge's federation link: on that edge's uplink (``wan`` out,
backbone ``u<s>`` out), traffic to or from the core's Pi subnets gets its own htb class at the
slow rate, under the uplink's rate; the edge's traffic with the origin (and other edges) keeps
the rest of the uplink. So the edge's path to the core is slow, its path to the origin is not.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench._netns import PREFIX, Namespaces, _ip, _shape, _tc
from frumitcache.testing.agents import AgentProcess

ORIGIN_PORT = 8080


def _sysctl(ns: str, *settings: str) -> None:
    for setting in settings:
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", setting],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip


@dataclass
class ShapedFederation(Namespaces):
    """The namespaces of one run; :meth:`build` makes them, :meth:`teardown` removes them."""

    sites: Sequence[int]  # Pis per site; site 0 is the core
    uplink: int  # bytes/s of each site's uplink, both ways (0: unshaped)
    lan: int = 0  # bytes/s of each Pi's link, both ways (0: unshaped)
    core_uplink: int = 0  # bytes/s of site 0's uplink (0: ``uplink``), a data centre's
    # site -> bytes/s of its link to the core (both ways), carved out of its uplink
    slow_links: dict[int, int] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    created: list[str] = field(default_factory=list)

    @property
    def backbone_ns(self) -> str:
        return f"{self.tag}-bb"

    @property
    def origin_ns(self) -> str:
        return f"{self.tag}-og"

    origin_v4 = "10.97.250.2"
    origin_v6 = "fd42:97:fa::2"

    def site_ns(self, s: int) -> str:
        return f"{self.tag}-s{s}"

    def pi_ns(self, s: int, i: int) -> str:
        return f"{self.tag}-s{s}p{i}"

    def pi_v4(self, s: int, i: int) -> str:
        return f"10.98.{10 + s}.{10 + i}"

    def pi_v6(self, s: int, i: int) -> str:
        return f"fd42:98:{s}::{10 + i}"

    def _addr(self, ns: str, dev: str, v4: str, v6: str) -> None:
        _ip("-n", ns, "addr", "add", v4, "dev", dev)
        _ip("-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad")  # usable at once

    def _veth(self, a: str, a_dev: str, b: str, b_dev: str) -> None:
        _ip("-n", a, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b)
        _ip("-n", a, "link", "set", a_dev, "up")
        _ip("-n", b, "link", "set", b_dev, "up")

    def _route(self, ns: str, dest: str, via: str) -> None:
        family = "-6" if ":" in via else "-4"
        _ip("-n", ns, family, "route", "add", dest, "via", via)

    def _build(self) -> None:
        if len(self.sites) > 200 or any(n > 200 for n in self.sites):
            raise ValueError("at most 200 sites of 200 Pis fit the address plan")
        for s, slow in self.slow_links.items():
            if not 0 < s < len(self.sites) or slow <= 0 or (self.uplink and slow >= self.uplink):
                raise ValueError(f"slow link of site {s}: must be an edge's, below its uplink")
        bb, og = self.backbone_ns, self.origin_ns
        forward = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self._add_ns(bb)
        _sysctl(bb, *forward)
        self._add_ns(og)
        self._veth(bb, "o0", og, "eth0")
        self._addr(bb, "o0", "10.97.250.1/24", "fd42:97:fa::1/64")
        self._addr(og, "eth0", f"{self.origin_v4}/24", f"{self.origin_v6}/64")
        self._route(og, "default", "10.97.250.1")
        self._route(og, "default", "fd42:97:fa::1")
        for s, pis in enumerate(self.sites):
            site = self.site_ns(s)
            self._add_ns(site)
            _sysctl(site, *forward)
            self._veth(bb, f"u{s}", site, "wan")
            self._addr(bb, f"u{s}", f"10.97.{s}.1/24", f"fd42:97:{s}::1/64")
            self._addr(site, "wan", f"10.97.{s}.2/24", f"fd42:97:{s}::2/64")
            rate = self.core_uplink if s == 0 and self.core_uplink else self.uplink
            if s in self.slow_links:
                slow = self.slow_links[s]
                core = ("10.98.10.0/24", "fd42:98:0::/64")  # site 0's Pis
                _shape_split(bb, f"u{s}", rate, slow, "src", core)  # core -> edge
                _shape_split(site, "wan", rate, slow, "dst", core)  # edge -> core
            else:
                _shape(bb, f"u{s}", rate)  # backbone -> site
                _shape(site, "wan", rate)  # site -> backbone
            self._route(site, "default", f"10.97.{s}.1")
            self._route(site, "default", f"fd42:97:{s}::1")
            self._route(bb, f"10.98.{10 + s}.0/24", f"10.97.{s}.2")
            self._route(bb, f"fd42:98:{s}::/64", f"fd42:97:{s}::2")
            _ip("-n", site, "link", "add", "br0", "type", "bridge")
            _ip("-n", site, "link", "set", "br0", "up")
            self._addr(site, "br0", f"10.98.{10 + s}.1/24", f"fd42:98:{s}::1/64")
            for i in range(pis):
                pi = self.pi_ns(s, i)
                self._add_ns(pi)
                self._veth(site, f"p{i}", pi, "eth0")
                _ip("-n", site, "link", "set", f"p{i}", "master", "br0")
                self._addr(pi, "eth0", f"{self.pi_v4(s, i)}/24", f"{self.pi_v6(s, i)}/64")
                self._route(pi, "default", f"10.98.{10 + s}.1")
                self._route(pi, "default", f"fd42:98:{s}::1")
                _shape(pi, "eth0", self.lan)
                _shape(site, f"p{i}", self.lan)


def _shape_split(ns: str, dev: str, rate: int, slow: int, side: str, nets: tuple[str, str]) -> None:
    """Like :func:`bench._netns._shape` (``rate`` bytes/s; 0: none), with packets whose
    ``side`` ("src" or "dst") address is in ``nets`` (IPv4, IPv6) in a class of their own at
    ``slow`` bytes/s, within ``rate``."""
    total = rate or 1_000_000_000  # an unshaped uplink: a ceiling no veth reaches here
    burst = str(max(32 * 1024, total // 100))
    classes = (("1:1", "1:", total, total), ("1:10", "1:1", total - slow, total))
    _tc(ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
    for classid, parent, low, ceil in (*classes, ("1:20", "1:1", slow, slow)):
        _tc(
            ns,
            "class", "add", "dev", dev, "parent", parent, "classid", classid, "htb",
            "rate", f"{low * 8}bit", "ceil", f"{ceil * 8}bit", "burst", burst, "cburst", burst,
        )  # fmt: skip
    for prio, proto, match, net in (("1", "ip", "ip", nets[0]), ("2", "ipv6", "ip6", nets[1])):
        _tc(
            ns,
            "filter", "add", "dev", dev, "parent", "1:", "protocol", proto, "prio", prio,
            "u32", "match", match, side, net, "flowid", "1:20",
        )  # fmt: skip


def run_in(ns: str, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` and wait (a probe, a one-shot query)."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path.cwd(),
    )


def site_agents(
    fed: ShapedFederation,
    s: int,
    work: Path,
    key: str | None,
    parents: Sequence[str],
    *,
    site: dict[str, Any] | None = None,
) -> list[AgentProcess]:
    """The agents of site ``s`` (not started): one site key of their own, the federation key
    ``key`` (None: no federation), ``parents`` as member addresses; ``site`` adds [site] keys."""
    directory = work / f"site{s}"
    directory.mkdir(parents=True, exist_ok=True)
    site_key = directory / "site.key"
    site_key.write_text(secrets.token_hex(32) + "\n")
    site_key.chmod(0o600)
    addresses = [fed.pi_v4(s, i) for i in range(fed.sites[s])]
    agents = []
    for i, address in enumerate(addresses):
        settings: dict[str, dict[str, Any]] = {
            "node": {"name": f"s{s}-pi{i}"},
            "site": {
                **(site or {}),
                "name": f"site{s}",
                "peers": [a for a in addresses if a != address],
                "discovery": False,
                "key_file": str(site_key),
            },
            "origin": {"allow": [f"{fed.origin_v4}:*"]},
        }
        if key is not None:
            settings["federation"] = {"key": key, "listen": "*", "parents": list(parents)}
        agents.append(
            AgentProcess(
                directory / f"pi{i}",
                address=address,
                settings=settings,
                prefix=fed.prefix(fed.pi_ns(s, i)),
            )
        )
    return agents


def start_origin(fed: ShapedFederation, root: Path, rate: int = 0) -> subprocess.Popen[bytes]:
    """The test origin serving ``root`` in the origin namespace on :data:`ORIGIN_PORT`, at most
    ``rate`` bytes/s over all its connections (0: no limit); the caller kills it by pid (and
    closes its stdout)."""
    proc = subprocess.Popen(
        [
            *fed.prefix(fed.origin_ns),
            sys.executable,
            "-m",
            "frumitcache.testing.origin",
            "--address",
            fed.origin_v4,
            "--port",
            str(ORIGIN_PORT),
            "--dir",
            str(root),
            "--rate",
            str(rate),
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if not proc.stdout.readline():
        raise RuntimeError("the origin exited before it listened")
    return proc


def origin_stats(fed: ShapedFederation) -> dict[str, Any]:
    """The origin's counters (asked from inside its namespace: the host has no route there)."""
    import json

    base = f"http://{fed.origin_v4}:{ORIGIN_PORT}"
    probe = f"import urllib.request as u; print(u.urlopen('{base}/_stats').read().decode())"
    result = run_in(fed.origin_ns, [sys.executable, "-c", probe])
    if result.returncode != 0:
        raise RuntimeError(f"origin stats: {result.stderr.strip()}")
    return dict(json.loads(result.stdout))


async def wait_origin_sent(
    fed: ShapedFederation, path: str, n: int, timeout_s: float
) -> int | None:
    """Wait until the origin has sent ``n`` bytes of ``path``; returns its count then (None
    after ``timeout_s``). One watcher process in the origin's namespace polls ``/_stats``
    every 20 ms (one process, not one per poll: a kill must land close to its mark)."""
    base = f"http://{fed.origin_v4}:{ORIGIN_PORT}"
    probe = (
        "import json, time, urllib.request as u\n"
        f"end = time.monotonic() + {timeout_s}\n"
        "while time.monotonic() < end:\n"
        f"    sent = json.load(u.urlopen('{base}/_stats'))['bytes_sent'].get({path!r}, 0)\n"
        f"    if sent >= {n}:\n"
        "        print(sent)\n"
        "        break\n"
        "    time.sleep(0.02)\n"
    )
    argv = [*fed.prefix(fed.origin_ns), sys.executable, "-c", probe]
    result = await trio.run_process(argv, capture_stdout=True, check=False)
    out = result.stdout.decode().strip()
    return int(out) if result.returncode == 0 and out else None
