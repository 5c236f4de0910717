"""The systems the herd benchmark compares, each started fresh on a testbed.

* :class:`Frumitcache` — an agent per Pi (``python -m frumitcache agent``), configured as one
  site: every agent lists the others as static peers, discovery off, one shared key file, Pi 0
  with the highest election priority. Each Pi fetches with ``frumitcache pull`` against its own
  agent.
* :class:`Central` — apt-cacher-ng (the Debian package's daemon, a throw-away config, cache and
  log directory, never the system service) on Pi 0; every Pi fetches through it as an HTTP proxy.
* :class:`Direct` — every Pi fetches the origin itself.

``direct`` and ``central`` clients are :mod:`bench._fetch` (standard library, starts like curl).
Daemons report their pids so the harness can read their memory and CPU time from ``/proc``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench._testbed import Host, Testbed, wait_listening
from frumitcache.client import AgentClient
from frumitcache.config import dump_toml
from frumitcache.control._protocol import Status

_TICK = os.sysconf("SC_CLK_TCK")
APT_PORT = 3142
READY_LINE = "stop with Ctrl-C"  # what an agent prints once it serves (frumitcache.testing.agents)


class NotRunnable(Exception):
    """The scenario cannot run on this system yet; the message says why."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def memory_mb(pid: int, key: str = "VmHWM") -> float | None:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a live process in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Daemon:
    """A long-running process of a system on one Pi."""

    host: Host
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


class System:
    """One system under test on one testbed; :meth:`start` it, then run herds, then :meth:`stop`."""

    name = ""

    def __init__(self, bed: Testbed, work: Path) -> None:
        self.bed = bed
        self.work = work
        self.daemons: list[Daemon] = []
        self._cpu: dict[int, float] = {}
        self._hwm: dict[int, float] = {}

    async def start(self, *, apt: bool = False) -> None:
        """Start the system's daemons (``apt``: with whatever it needs to serve apt)."""

    def client_argv(self, i: int, url: str, sha256: str, output: Path) -> list[str]:
        raise NotImplementedError

    def apt_proxy(self, i: int) -> str | None:
        """Proxy URL Pi ``i``'s apt uses (``None``: straight to the origin)."""
        return None

    async def warm(self, url: str, sha256: str) -> None:
        """Put the object where the system keeps it (the seeder, the cache box)."""
        raise NotRunnable(f"{self.name} keeps nothing: warm is the same as cold")

    async def kill_seeder(self) -> str:
        """SIGKILL the box the others depend on; returns its host name."""
        raise NotRunnable(f"{self.name} has no seeder or cache box to kill")

    async def wait_failover(self, killed: str, limit_s: float) -> float | None:
        """Seconds until another box serves in the killed one's place, ``None`` if never."""
        return None

    def sample(self) -> None:
        """Read every live daemon's CPU time and peak RSS; the last reading outlives a kill."""
        for d in self.daemons:
            if d.proc.poll() is None:
                self._cpu[d.pid] = cpu_seconds(d.pid)
                hwm = memory_mb(d.pid)
                if hwm is not None:
                    self._hwm[d.pid] = hwm

    def cpu(self) -> float:
        """CPU seconds of all daemons so far (killed ones as last read)."""
        self.sample()
        return sum(self._cpu.values())

    def max_rss_mb(self) -> float | None:
        """Largest peak RSS of any daemon (killed ones as last read)."""
        self.sample()
        return max(self._hwm.values()) if self._hwm else None

    def peak_rss_by_pi(self) -> dict[str, float]:
        """Each daemon's peak RSS in MiB by Pi name (killed ones as last read)."""
        self.sample()
        return {d.host.name: round(self._hwm[d.pid], 1) for d in self.daemons if d.pid in self._hwm}

    def rss_mb(self) -> float | None:
        """Largest current RSS of a live daemon (at rest, when asked before a herd)."""
        values = [memory_mb(d.pid, "VmRSS") for d in self.daemons if d.proc.poll() is None]
        known = [v for v in values if v is not None]
        return max(known) if known else None

    def notes(self) -> list[str]:
        return []

    async def stop(self) -> None:
        for d in self.daemons:
            self.bed.kill(d.proc, signal.SIGTERM)
        self.daemons.clear()


def _fetch_argv(url: str, sha256: str, output: Path, proxy: str | None) -> list[str]:
    argv = [sys.executable, "-m", "bench._fetch", url, "-o", str(output), "--sha256", sha256]
    return [*argv, "--proxy", proxy] if proxy else argv


class Direct(System):
    name = "direct"

    def client_argv(self, i: int, url: str, sha256: str, output: Path) -> list[str]:
        return [*self.bed.pis[i].prefix, *_fetch_argv(url, sha256, output, None)]


class Central(System):
    """apt-cacher-ng on Pi 0; see the module docstring."""

    name = "central"

    def __init__(self, bed: Testbed, work: Path) -> None:
        super().__init__(bed, work)
        self.port = APT_PORT
        self.killed = False

    @property
    def host(self) -> Host:
        return self.bed.pis[0]

    @property
    def proxy(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    async def start(self, *, apt: bool = False) -> None:
        binary = shutil.which("apt-cacher-ng", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if binary is None:
            raise NotRunnable("apt-cacher-ng is not installed (apt-get install apt-cacher-ng)")
        root = self.work / "acng"
        for sub in ("conf", "cache", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "conf/acng.conf").write_text(
            f"CacheDir: {root / 'cache'}\nLogDir: {root / 'log'}\nPort: {self.port}\n"
            f"BindAddress: {self.host.address}\nSocketPath: {root / 'acng.socket'}\n"
            f"PidFile: {root / 'acng.pid'}\nForeGround: 1\nExThreshold: 4\n"
            "ReportPage: acng-report.html\n"
            # By default it proxies only to port 80; the origin listens elsewhere.
            f"AllowUserPorts: 80 {self.bed.origin_port}\n"
        )
        out = (root / "stdout.log").open("wb")
        proc = self.bed.spawn(
            self.host, [binary, "-c", str(root / "conf")], stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        self.daemons.append(Daemon(self.host, proc))
        try:
            await trio.to_thread.run_sync(wait_listening, self.host, self.port, proc, 15.0)
        except RuntimeError as exc:
            said = (root / "stdout.log").read_text(errors="replace").strip()
            raise RuntimeError(f"apt-cacher-ng did not start: {exc}: {said}") from exc

    def client_argv(self, i: int, url: str, sha256: str, output: Path) -> list[str]:
        return [*self.bed.pis[i].prefix, *_fetch_argv(url, sha256, output, self.proxy)]

    def apt_proxy(self, i: int) -> str | None:
        return self.proxy

    async def warm(self, url: str, sha256: str) -> None:
        out = self.work / "warm.bin"
        argv = self.client_argv(0, url, sha256, out)
        done = await trio.run_process(argv, check=False, capture_stderr=True)
        if done.returncode != 0:
            raise RuntimeError(f"warming apt-cacher-ng failed: {done.stderr.decode()[-500:]}")
        out.unlink()

    async def kill_seeder(self) -> str:
        self.sample()
        for d in self.daemons:
            self.bed.kill(d.proc, signal.SIGKILL)
        self.killed = True
        return self.host.name


class Frumitcache(System):
    """An agent per Pi configured as one site; see the module docstring."""

    name = "frumitcache"

    def __init__(self, bed: Testbed, work: Path, extra: dict[str, dict[str, Any]] | None = None):
        super().__init__(bed, work)
        self.extra = extra or {}
        self.sockets: list[Path] = []
        self.apt_ports: list[str] = []
        self.members_seen = 1
        self.killed: set[str] = set()
        self._notes: list[str] = []
        #: How long to wait for the site to settle after every agent serves.
        self.settle_limit_s = 30.0
        #: Seconds from the first spawn until every agent served (``ready_s``) and from then
        #: until all agreed on members and seeder (``formation_s``, ``None``: never settled).
        self.ready_s: float | None = None
        self.formation_s: float | None = None

    def settings(self, i: int, key_file: Path, apt: bool) -> dict[str, dict[str, Any]]:
        bed = self.bed
        host = bed.pis[i]
        directory = self.work / host.name
        settings: dict[str, dict[str, Any]] = {
            "node": {
                "name": host.name,
                "address": host.address,
                # Pi 0 is the preferred seeder; the rest in a stable order behind it.
                "priority": 100 - i,
                "state_dir": str(directory / "state"),
            },
            "store": {"path": str(directory / "store")},
            "control": {"socket": str(directory / "agent.sock")},
            "site": {
                "name": "herd",
                "key_file": str(key_file),
                "peers": [p.address for p in bed.pis if p is not host],
                "discovery": False,
            },
            "apt": {"enabled": False},
            # The test origin lives on a private address: name it (a pattern would not reach it).
            "origin": {"allow": ["*", bed.origin_authority]},
            "log": {"level": "warning"},
        }
        if apt:
            settings["apt"] = {
                "enabled": True,
                "listen": host.address,
                "port": APT_PORT,
                "allowed_hosts": [bed.origin_authority],
            }
        for section, values in self.extra.items():
            settings.setdefault(section, {}).update(values)
        return settings

    async def start(self, *, apt: bool = False) -> None:
        key_file = self.work / "site.key"
        self.work.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32) + "\n")
        key_file.chmod(0o600)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FRUMITCACHE_CONFIG", None)
        banners: list[Path] = []
        t0 = trio.current_time()
        for i, host in enumerate(self.bed.pis):
            directory = self.work / host.name
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "frumitcache.toml"
            config.write_text(dump_toml(self.settings(i, key_file, apt)))
            banner = directory / "agent.out"
            with banner.open("wb") as out, (directory / "agent.log").open("wb") as err:
                argv = [sys.executable, "-m", "frumitcache", "agent", "--config", str(config)]
                proc = self.bed.spawn(host, argv, stdout=out, stderr=err, env=env)
            self.daemons.append(Daemon(host, proc))
            self.sockets.append(directory / "agent.sock")
            banners.append(banner)
        # Python start-up is CPU-bound: N agents on a small box take a while to all serve.
        deadline = time.monotonic() + 60 + 2 * len(self.daemons)
        for d, banner in zip(self.daemons, banners, strict=True):
            while READY_LINE not in banner.read_text(errors="replace"):
                if d.proc.poll() is not None or time.monotonic() > deadline:
                    log = (banner.parent / "agent.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"agent on {d.host.name} did not start:\n{log}")
                await trio.sleep(0.05)
        t_ready = trio.current_time()
        self.ready_s = t_ready - t0
        statuses = await self.statuses()
        # Membership takes a few beacons and the election a few rounds: wait (bounded) until
        # every agent sees the whole site and all name the same seeder, as on a site that has
        # been up for a while. One-node agents (no site control plane) never will.
        with trio.move_on_after(self.settle_limit_s):
            while not _settled(statuses, len(self.daemons)):
                if all(s.site.get("solo") for s in statuses):
                    break
                await trio.sleep(0.25)
                statuses = await self.statuses()
        if _settled(statuses, len(self.daemons)):
            self.formation_s = trio.current_time() - t_ready
        else:
            seen = sorted({str(s.site.get("seeder")) for s in statuses})
            self._notes.append(f"site not settled before t=0 (seeders named: {seen})")
        self.members_seen = min(_members(s) for s in statuses)
        if self.members_seen < len(self.daemons):
            self._notes.append(
                f"agents report a site of {self.members_seen} member(s), not "
                f"{len(self.daemons)}: each agent fetches the origin itself"
            )
        self.apt_ports = [s.apt for s in statuses]

    async def status(self, i: int) -> Status:
        with trio.fail_after(10):
            return await AgentClient(self.sockets[i]).status()

    async def statuses(self, limit: int = 16) -> list[Status]:
        """Every agent's status, asked ``limit`` at a time: one after the other, a round of
        100 agents on a loaded box took longer than the formation it was timing."""
        out: list[Status | None] = [None] * len(self.daemons)
        limiter = trio.CapacityLimiter(limit)

        async def one(i: int) -> None:
            async with limiter:
                out[i] = await self.status(i)

        async with trio.open_nursery() as nursery:
            for i in range(len(self.daemons)):
                nursery.start_soon(one, i)
        return [s for s in out if s is not None]

    def notes(self) -> list[str]:
        return list(self._notes)

    def client_argv(self, i: int, url: str, sha256: str, output: Path) -> list[str]:
        argv = [sys.executable, "-m", "frumitcache", "pull", url, "--sha256", sha256]
        argv += ["-o", str(output), "--socket", str(self.sockets[i]), "-q"]
        return [*self.bed.pis[i].prefix, *argv]

    def apt_proxy(self, i: int) -> str | None:
        if not self.apt_ports or not self.apt_ports[i]:
            raise NotRunnable(
                "the agent does not serve its apt proxy yet (status.apt is empty): "
                "frumitcache/apt is not wired into the agent"
            )
        return f"http://{self.apt_ports[i]}"

    async def seeder(self) -> int:
        """Index of the Pi the site names as its seeder (asked of a live agent)."""
        for i, d in enumerate(self.daemons):
            if d.proc.poll() is None and d.host.name not in self.killed:
                status = await self.status(i)
                name = str(status.site.get("seeder", ""))
                for j, host in enumerate(self.bed.pis):
                    if host.name == name:
                        return j
        return 0

    async def warm(self, url: str, sha256: str) -> None:
        i = await self.seeder()
        out = self.work / "warm.bin"
        done = await trio.run_process(
            self.client_argv(i, url, sha256, out), check=False, capture_stderr=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"warming the seeder failed: {done.stderr.decode()[-500:]}")
        out.unlink()

    async def kill_seeder(self) -> str:
        i = await self.seeder()
        d = self.daemons[i]
        self.sample()
        self.bed.kill(d.proc, signal.SIGKILL)
        self.killed.add(d.host.name)
        return d.host.name

    async def wait_failover(self, killed: str, limit_s: float) -> float | None:
        if self.members_seen <= 1:
            self._notes.append("one-node sites: no election, so no failover to measure")
            return None
        start = trio.current_time()
        with trio.move_on_after(limit_s):
            while True:
                for i, d in enumerate(self.daemons):
                    if d.proc.poll() is None:
                        with trio.move_on_after(2):
                            seeder = str((await self.status(i)).site.get("seeder", ""))
                            if seeder and seeder != killed:
                                return trio.current_time() - start
                        break
                await trio.sleep(0.1)
        return None


def _settled(statuses: list[Status], nodes: int) -> bool:
    seeders = {s.site.get("seeder") for s in statuses}
    return all(_members(s) >= nodes for s in statuses) and len(seeders) == 1 and None not in seeders


def _members(status: Status) -> int:
    members = status.site.get("members", 1)
    if isinstance(members, list | dict):
        return len(members)
    try:
        return int(members)
    except (TypeError, ValueError):
        return 1


SYSTEMS: dict[str, type[System]] = {
    "frumitcache": Frumitcache,
    "central": Central,
    "direct": Direct,
}
