"""The site the herd benchmark runs on: Pis, an origin behind the uplink, and their processes.

Two kinds share one interface, :class:`Testbed`:

* :class:`LoopbackTestbed` (no root): every Pi is a distinct loopback address, the origin
  another; the uplink is the origin's own rate limit (``U``); Pi links are not shaped.
* :class:`ShapedTestbed` (root): the network namespaces of :mod:`bench._netns`, every Pi link
  shaped to ``d``/``u`` and the uplink to ``U`` with tc.

A process runs "on" a host by prefixing its argv with :attr:`Host.prefix` (``ip netns exec``
in shaped mode, nothing in loopback mode; ``ip netns exec`` execs, so the pid is the
program's own). Every process started through :meth:`Testbed.spawn` is killed by pid in
:meth:`Testbed.close`, which also deletes the namespaces; the harness calls it in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench._cgroup import CgroupSet
from bench._netns import ShapedSite, cleanup_leftovers
from frumitcache.testing.net import loopback_address


@dataclass(frozen=True, slots=True)
class Host:
    """A machine of the site: where it is reached and how to run a command on it."""

    name: str
    address: str
    prefix: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rates:
    """Configured rates in bytes/s; ``None`` where nothing limits (loopback Pi links)."""

    uplink: int | None
    down: int | None
    up: int | None


# Runs beside the origin (same host) and answers "stats"/"reset" lines with its counters: the
# harness cannot reach an origin inside a namespace directly, and must not route to it.
ORIGIN_PORT = 8080

_PROBE = r"""
import json, sys, urllib.request
base = sys.argv[1]
for line in sys.stdin:
    cmd = line.strip()
    try:
        if cmd == "reset":
            request = urllib.request.Request(base + "/_reset", method="POST", data=b"")
            urllib.request.urlopen(request, timeout=10).read()
            out = {}
        else:
            out = json.loads(urllib.request.urlopen(base + "/_stats", timeout=10).read())
    except Exception as exc:
        out = {"error": repr(exc)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class Testbed:
    """Hosts, rates and process ownership; see the module docstring."""

    mode = ""

    def __init__(self, nodes: int, rates: Rates, work: Path) -> None:
        self.nodes = nodes
        self.rates = rates
        self.work = work
        self.pis: list[Host] = []
        self.origin_host = Host("origin", "")
        self.origin_port = 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._probe: subprocess.Popen[str] | None = None
        # One question at a time: a herd's reset and a watcher's reads run in threads.
        self._probe_lock = threading.Lock()
        # Per-Pi CPU/memory budgets (bench._cgroup), owned and torn down by the harness.
        self.cgroups: CgroupSet | None = None

    # --- processes ----------------------------------------------------------------------------

    def spawn(
        self,
        host: Host,
        argv: list[str],
        *,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        role: str = "daemons",
    ) -> subprocess.Popen[bytes]:
        pi = self.pi_index(host)
        return self.spawn_argv(
            [*host.prefix, *argv], stdout=stdout, stderr=stderr, env=env, cwd=cwd, pi=pi, role=role
        )

    def pi_index(self, host: Host) -> int | None:
        for i, pi in enumerate(self.pis):
            if pi.name == host.name:
                return i
        return None

    def spawn_argv(
        self,
        argv: list[str],
        *,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pi: int | None = None,
        role: str = "clients",
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as is (its host prefix included) and own it; with ``pi``, inside
        that Pi's cgroup (as ``role``) when the run has budgets."""
        if pi is not None and self.cgroups is not None:
            argv = self.cgroups.wrap(argv, self.pis[pi].name, role)
        proc = subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        self._procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    # --- the origin ---------------------------------------------------------------------------

    def origin_rate_limit(self) -> int:
        """The origin's own rate limit (the uplink in loopback mode; 0 when tc shapes it)."""
        return 0

    def origin_listen_port(self) -> int:
        """A port below 32768: apt-cacher-ng 3.7.4 answers 503 for origin ports above that."""
        return ORIGIN_PORT

    def start_origin(self, root: Path, generate: tuple[str, ...] = ()) -> str:
        """Serve ``root`` from the origin host, and bodies made on the fly (``generate``: the
        origin's ``--generate`` specs); returns its base URL."""
        argv = [
            sys.executable,
            "-m",
            "frumitcache.testing.origin",
            "--address",
            self.origin_host.address,
            "--port",
            str(self.origin_listen_port()),
            "--dir",
            str(root),
            "--rate",
            str(self.origin_rate_limit()),
            *(a for spec in generate for a in ("--generate", spec)),
        ]
        proc = self.spawn(self.origin_host, argv, stdout=subprocess.PIPE, stderr=None)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the origin exited before it listened")
        self.origin_port = int(json.loads(line)["port"])
        self.origin_pid = proc.pid
        base = f"http://{self.origin_host.address}:{self.origin_port}"
        self._probe = subprocess.Popen(
            [*self.origin_host.prefix, sys.executable, "-c", _PROBE, base],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._procs.append(self._probe)  # type: ignore[arg-type]
        return base

    @property
    def origin_authority(self) -> str:
        return f"{self.origin_host.address}:{self.origin_port}"

    def _ask_probe(self, cmd: str) -> dict[str, Any]:
        probe = self._probe
        assert probe is not None
        assert probe.stdin is not None
        assert probe.stdout is not None
        with self._probe_lock:
            probe.stdin.write(cmd + "\n")
            probe.stdin.flush()
            answer: dict[str, Any] = json.loads(probe.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"origin stats: {answer['error']}")
        return answer

    def origin_stats(self) -> dict[str, Any]:
        """The origin's counters (``total_bytes_sent``, ``bytes_sent`` per path, ...)."""
        return self._ask_probe("stats")

    def reset_origin(self) -> None:
        self._ask_probe("reset")

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._probe is not None and self._probe.stdin is not None:
            with contextlib.suppress(OSError):
                self._probe.stdin.close()
        for proc in reversed(self._procs):
            self.kill(proc)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self._procs.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "uplink_Bps": self.rates.uplink,
            "down_Bps": self.rates.down,
            "up_Bps": self.rates.up,
        }


class LoopbackTestbed(Testbed):
    mode = "loopback"

    def origin_listen_port(self) -> int:
        for port in range(ORIGIN_PORT, ORIGIN_PORT + 200):
            with socket.socket() as s:
                try:
                    s.bind((self.origin_host.address, port))
                except OSError:
                    continue
            return port
        raise RuntimeError(f"no free port below {ORIGIN_PORT + 200} on {self.origin_host.address}")

    def __init__(self, nodes: int, rates: Rates, work: Path) -> None:
        super().__init__(nodes, rates, work)
        self.pis = [Host(f"pi{i}", loopback_address()) for i in range(nodes)]
        self.origin_host = Host("origin", loopback_address())

    def origin_rate_limit(self) -> int:
        return self.rates.uplink or 0


class ShapedTestbed(Testbed):
    mode = "shaped"

    def __init__(self, nodes: int, rates: Rates, work: Path, *, ipv6: bool = False) -> None:
        super().__init__(nodes, rates, work)
        cleanup_leftovers()
        self.site = ShapedSite(
            nodes, uplink=rates.uplink or 0, down=rates.down or 0, up=rates.up or 0, ipv6=ipv6
        )
        self.site.build()
        # With ``ipv6`` the Pis are reached (and their agents bind) at their IPv6 addresses.
        address = self.site.pi_address6 if ipv6 else self.site.pi_address
        self.pis = [
            Host(f"pi{i}", address(i), tuple(self.site.prefix(self.site.pi_ns(i))))
            for i in range(nodes)
        ]
        self.origin_host = Host(
            "origin", self.site.origin_address, tuple(self.site.prefix(self.site.inet_ns))
        )

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.site.teardown()


def wait_listening(host: Host, port: int, proc: subprocess.Popen[Any], limit_s: float) -> None:
    """Wait until something accepts TCP on ``host:port`` (checked from inside the host)."""
    check = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(1)\n"
        f"sys.exit(s.connect_ex(({host.address!r}, {port})))\n"
    )
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        done = subprocess.run([*host.prefix, sys.executable, "-c", check], timeout=10, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host.address}:{port}")
