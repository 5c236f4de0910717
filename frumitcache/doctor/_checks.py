"""Local set-up checks behind ``frumitcache doctor``: what is wrong with this node, and the fix.

Each check returns a :class:`Check` ``(name, ok, message, hint)``; none raises for a broken
set-up (that is what it reports). :func:`run_checks` runs them all for one config:

- ``site key``      the site key file exists, is readable by the service, not world-readable;
- ``store dir`` / ``state dir``  writable by the service (or creatable), with room left;
- ``control socket``  an agent answers on the control socket;
- ``port ...``      every port the agent binds is free, or held by the agent itself;
- ``apt``           apt's effective ``Acquire::http::Proxy`` points at this agent;
- ``federation ...``  with ``[federation]`` set: key, endpoint, members (:mod:`._federation`).

Checking "by the service": run as root with ``service_user="frumitcache"`` (what the systemd
unit runs as), permissions are judged from the file modes for that user instead of for root,
to whom everything is writable. Reachability of the site's other members is not checked here
(that of federation members is).
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from frumitcache.config import Config
from frumitcache.doctor._access import (
    SERVICE_USER,
    Check,
    ServiceUser,
    check_secret_file,
    writable_dir,
)
from frumitcache.doctor._aptconf import read_apt_config
from frumitcache.doctor._federation import check_federation
from frumitcache.doctor._procnet import (
    WILDCARDS,
    agent_hosts,
    command_line,
    is_agent,
    is_loopback,
    socket_holders,
)


def run_checks(
    config: Config,
    *,
    service_user: str | None = None,
    apt_dir: Path = Path("/etc/apt"),
    timeout_s: float = 1.0,
) -> list[Check]:
    """Every local check for ``config``, in a stable order.

    ``service_user`` judges file access as that user (see the module docstring); ``apt_dir``
    is where apt's configuration lives; ``timeout_s`` bounds the control-socket connect.
    """
    checks: list[Check] = []
    user: ServiceUser | None = None
    if service_user is not None:
        try:
            user = ServiceUser.lookup(service_user)
        except KeyError:
            checks.append(
                Check(
                    "service user",
                    False,
                    f"user {service_user!r} does not exist",
                    "create it: systemd-sysusers (deploy/systemd/frumitcache.sysusers.conf) or "
                    "the ansible role",
                )
            )
        else:
            checks.append(Check("service user", True, f"checking access as {service_user!r}"))
    checks.append(check_key_file(config, user))
    min_free = config.store.min_free_bytes
    checks.append(check_directory("store dir", config.store_path, user, min_free))
    checks.append(check_directory("state dir", config.state_path, user, 0))
    control, agent = _check_control_socket(config.socket_path, timeout_s)
    checks.append(control)
    checks.extend(check_ports(config, agent))
    checks.append(check_apt(config, apt_dir))
    checks.extend(check_federation(config, user, agent_running=agent is not None))
    return checks


def check_key_file(config: Config, user: ServiceUser | None = None) -> Check:
    """The site key: set for a multi-node site, readable, and not readable by everyone."""
    name = "site key"
    key_file = config.site.key_file
    if not key_file:
        lonely = not config.site.peers and is_loopback(config.node.address)
        if lonely:
            return Check(
                name,
                True,
                "no site.key_file: a key is generated in the state dir (a one-node site)",
            )
        return Check(
            name,
            False,
            "no site.key_file, but this node has site peers or a non-loopback address: a "
            "generated key is shared with no other node",
            "set site.key_file to the site's key (the ansible role installs it as "
            "/etc/frumitcache/site.key)",
        )
    return check_secret_file(name, "site.key_file", Path(key_file).expanduser(), user)


# Directories the systemd unit has systemd create and hand to the service user.
_UNIT_DIRECTORIES = frozenset(
    {Path("/var/lib/frumitcache"), Path("/var/cache/frumitcache"), Path("/run/frumitcache")}
)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")  # pragma: no cover - "/" always exists


def check_directory(
    name: str, path: Path, user: ServiceUser | None = None, min_free: int = 0
) -> Check:
    """A directory the agent writes: exists (or can be created), writable, with room left."""
    existing = _existing_ancestor(path)
    if user is not None and existing != path and path in _UNIT_DIRECTORIES:
        return Check(
            name,
            True,
            f"{path} does not exist yet; systemd creates it for "
            f"{user.name} when the agent starts (StateDirectory=/CacheDirectory=)",
        )
    if existing == path and not path.is_dir():
        return Check(name, False, f"{path} is not a directory", f"remove {path} or fix the path")
    if not existing.is_dir():
        return Check(
            name,
            False,
            f"{path} cannot be created: {existing} is not a directory",
            f"fix the path, or remove {existing}",
        )
    why = writable_dir(existing, user)
    if why is not None:
        where = path if existing == path else f"{existing} (to create {path})"
        owner = user.name if user is not None else "the agent's user"
        return Check(
            name,
            False,
            f"{where} is not writable: {why}",
            f"chown {owner} {existing} (the systemd unit's StateDirectory=/"
            "CacheDirectory= do this for the default paths)",
        )
    free = _free_bytes(existing)
    if free < min_free:
        return Check(
            name,
            False,
            f"{path}: {free} bytes free, below store.min_free_bytes ({min_free})",
            "free disk space or lower store.min_free_bytes",
        )
    state = "writable" if existing == path else f"will be created (in {existing})"
    return Check(name, True, f"{path} {state}, {free // (1024 * 1024)} MiB free")


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# --- control socket --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    """The process that answered on the control socket (from SO_PEERCRED)."""

    pid: int
    uid: int


def _check_control_socket(path: Path, timeout_s: float) -> tuple[Check, AgentCredentials | None]:
    name = "control socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            return Check(
                name,
                False,
                f"no socket at {path}: the agent is not running",
                "systemctl start frumitcache; journalctl -u frumitcache",
            ), None
        except PermissionError:
            return Check(
                name,
                False,
                f"{path}: permission denied",
                f"run as root, or add your user to group {SERVICE_USER}",
            ), None
        except ConnectionRefusedError:
            return Check(
                name,
                False,
                f"{path} exists but nobody listens (a stale socket)",
                "systemctl restart frumitcache; journalctl -u frumitcache",
            ), None
        except OSError as exc:
            return Check(
                name, False, f"{path}: {exc.strerror or exc}", "systemctl status frumitcache"
            ), None
        peer = _peer_of(sock)
    who = f" (pid {peer.pid})" if peer is not None else ""
    return Check(name, True, f"the agent listens on {path}{who}"), peer


def _peer_of(sock: socket.socket) -> AgentCredentials | None:
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:  # pragma: no cover - not Linux
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, opt, 12)
    pid, uid, _gid = (int.from_bytes(raw[i : i + 4], "little") for i in (0, 4, 8))
    return AgentCredentials(pid, uid)


def check_control_socket(path: Path, timeout_s: float = 1.0) -> Check:
    """Whether an agent accepts connections on the control socket at ``path``."""
    return _check_control_socket(path, timeout_s)[0]


# --- ports -----------------------------------------------------------------------------------


def _agent_ports(config: Config) -> list[tuple[str, str, str, int]]:
    """``(config key, "tcp"|"udp", address, port)`` for every port the agent binds."""
    node = config.node.address
    ports = [
        ("site.control_port", "udp", node, config.site.control_port),
        ("site.peer_port", "tcp", node, config.site.peer_port),
        ("swarm.port", "tcp", node, config.swarm.port),
    ]
    if config.apt.enabled:
        ports.append(("apt.port", "tcp", config.apt.listen, config.apt.port))
    if config.federation.enabled:
        listen = config.federation.listen or node
        host = "0.0.0.0" if listen == "*" else listen  # noqa: S104 - "*" binds every address
        ports.append(("federation.port", "tcp", host, config.federation.port))
    return [p for p in ports if p[3] != 0]  # 0 picks a free port at start-up


def check_ports(config: Config, agent: AgentCredentials | None = None) -> list[Check]:
    """One check per port: free, or held by the running agent (``agent``), else the culprit."""
    return [
        _check_port(key, proto, host, port, agent)
        for key, proto, host, port in _agent_ports(config)
    ]


def _check_port(
    key: str, proto: str, host: str, port: int, agent: AgentCredentials | None
) -> Check:
    name = f"port {proto}/{port}"
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as s:
            if proto == "tcp":
                # A listener sets this too; without it a connection in TIME_WAIT reads as busy.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return Check(
                name,
                False,
                f"{where} ({key}): {host} is not an address of this host",
                "set node.address / apt.listen to one of this host's addresses",
            )
        if exc.errno == errno.EACCES:
            return Check(
                name,
                False,
                f"{where} ({key}): permission denied",
                f"choose a port above 1023 for {key}",
            )
        if exc.errno != errno.EADDRINUSE:
            return Check(name, False, f"{where} ({key}): {exc.strerror or exc}", "")
    else:
        return Check(name, True, f"{where} ({key}) is free")
    return _who_holds(name, key, where, proto, host, port, agent)


def _who_holds(
    name: str,
    key: str,
    where: str,
    proto: str,
    host: str,
    port: int,
    agent: AgentCredentials | None,
) -> Check:
    holders = list(socket_holders(proto, port, host))
    for pid, uid in holders:
        if pid is not None and ((agent is not None and pid == agent.pid) or is_agent(pid)):
            return Check(name, True, f"{where} ({key}) is held by the agent (pid {pid})")
        if pid is None and agent is not None and uid == agent.uid:
            return Check(name, True, f"{where} ({key}) is held by the agent's user (uid {uid})")
    culprits = [f"pid {pid} ({command_line(pid)})" for pid, _uid in holders if pid is not None]
    if culprits:
        return Check(
            name,
            False,
            f"{where} ({key}) is in use by {', '.join(culprits)}",
            f"stop that service, or move {key} to a free port",
        )
    return Check(
        name,
        False,
        f"{where} ({key}) is in use by another process",
        f"run doctor as root to see which; or move {key} to a free port",
    )


# --- apt -------------------------------------------------------------------------------------


def check_apt(config: Config, apt_dir: Path = Path("/etc/apt")) -> Check:
    """Whether apt's effective ``Acquire::http::Proxy`` is this agent's apt proxy."""
    name = "apt"
    if not config.apt.enabled:
        return Check(name, True, "the apt proxy is disabled (apt.enabled = false)")
    settings = read_apt_config(apt_dir)
    host = "127.0.0.1" if config.apt.listen in WILDCARDS else config.apt.listen
    want = f"http://{host}:{config.apt.port}"
    hint = (
        f"install deploy/apt/01frumitcache as {apt_dir}/apt.conf.d/01frumitcache "
        f'(Acquire::http::Proxy "{want}";)'
    )
    proxy = settings.get("acquire::http::proxy", "")
    if proxy:
        url = urlsplit(proxy)
        port = url.port or 80
        ours = url.hostname in agent_hosts(config) and port == config.apt.port
        if url.scheme == "http" and ours:
            return Check(name, True, f'apt uses the agent: Acquire::http::Proxy "{proxy}"')
        return Check(
            name,
            False,
            f'apt uses another proxy: Acquire::http::Proxy "{proxy}"',
            f"point it at {want}; " + hint,
        )
    detect = settings.get("acquire::http::proxy-auto-detect", "")
    if detect:
        return Check(
            name,
            False,
            f"apt detects its proxy with {detect}; doctor cannot tell whether that finds the agent",
            hint,
        )
    return Check(
        name,
        False,
        f"apt uses no proxy ({apt_dir}/apt.conf.d/* sets no Acquire::http::Proxy)",
        hint,
    )
