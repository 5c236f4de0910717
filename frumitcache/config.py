"""The one configuration object of an agent.

:class:`Config` is a tree of frozen dataclasses, one section per part of the agent. Each field
documents its meaning, unit and default in its metadata; the loader, the CLI overrides
(``--set section.key=value``) and the generated example config (``deploy/frumitcache.toml``)
are all driven by that data, so the three can never disagree.

Loading is strict: an unknown section or key, or a value of the wrong type or range, raises
:class:`~frumitcache.errors.ConfigError` naming the key (``store.max_bytes``).

The defaults run an embedded one-node site: everything listens on 127.0.0.1 and the store
lives under the user's cache directory (``/var/cache/frumitcache`` as root).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from frumitcache.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def _doc(text: str, unit: str = "") -> dict[str, str]:
    return {"doc": text, "unit": unit}


def opt(default: Any, text: str, unit: str = "") -> Any:
    """A config field: its default, what it means, and its unit (bytes, bytes/s, s, ...)."""
    if isinstance(default, list):
        value = list(default)
        return field(default_factory=lambda: list(value), metadata=_doc(text, unit))
    return field(default=default, metadata=_doc(text, unit))


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_store_path() -> Path:
    """Where the store lives when ``store.path`` is empty."""
    if _is_root():
        return Path("/var/cache/frumitcache")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frumitcache"


def default_state_path() -> Path:
    """Where small state (site key, node id) lives when ``node.state_dir`` is empty."""
    if _is_root():
        return Path("/var/lib/frumitcache")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "frumitcache"


def default_socket_path() -> Path:
    """Where the control socket lives when ``control.socket`` is empty."""
    if _is_root():
        return Path("/run/frumitcache/agent.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "frumitcache" / "agent.sock"
    return default_state_path() / "agent.sock"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str = opt("", "Stable id of this node in its site; empty means the host name.")
    address: str = opt(
        "127.0.0.1",
        "Address this node binds its site-facing ports to (IPv4 or IPv6). The default keeps "
        "the agent on loopback: a one-node site.",
    )
    priority: int = opt(0, "Seeder election preference; a higher value wins.")
    model: str = opt(
        "", "Board model advertised to the site; empty means read it from the device tree."
    )
    link_mbit: int = opt(0, "Link speed advertised to the site; 0 means detect it.", "Mbit/s")
    wired: bool = opt(True, "Whether the node's site link is wired (preferred as seeder).")
    state_dir: str = opt(
        "",
        "Directory for small state (node id, site key); empty means ~/.local/state/frumitcache "
        "(/var/lib/frumitcache as root).",
    )


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = opt(
        "", "Store directory; empty means ~/.cache/frumitcache (/var/cache/frumitcache as root)."
    )
    max_bytes: int = opt(
        8 * GiB,
        "Size cap of the store; least recently used unpinned objects are evicted past it.",
        "bytes",
    )
    chunk_size: int = opt(
        4 * MiB,
        "Size of the content-addressed chunks objects are cut into (a power of two, "
        "at least 16 KiB).",
        "bytes",
    )
    min_free_bytes: int = opt(
        256 * MiB, "Free disk space the store always leaves on its file system.", "bytes"
    )
    scrub_interval_s: float = opt(
        86400.0, "Interval between background scrubs that re-check every chunk; 0 disables.", "s"
    )


@dataclass(frozen=True, slots=True)
class OriginConfig:
    max_rate: int = opt(0, "Uplink budget for origin fetches; 0 means unlimited.", "bytes/s")
    connect_timeout_s: float = opt(10.0, "Timeout to connect to an origin.", "s")
    read_timeout_s: float = opt(30.0, "Timeout between two reads from an origin.", "s")
    max_redirects: int = opt(5, "Redirects followed per fetch.")
    retries: int = opt(
        5, "Range-resumed retries after a dropped connection or a short body, per fetch."
    )
    proxy: str = opt("", "Upstream HTTP proxy URL for origin fetches; empty means none.")
    user_agent: str = opt("", "User-Agent sent to origins; empty means frumitcache/VERSION.")
    allow: list[str] = opt(
        ["*"],
        "Upstream allow-list of every door that has no list of its own (apt.allowed_hosts, "
        "control.allow), checked for every URL and every redirect hop, on the member and again "
        "on the seeder. Entries: host, *.domain, * (any host), an address or a network "
        "(10.0.0.0/8, [fd00::/8]), each with :port or :* (any port); without a port only 80/443. "
        "A pattern (* or *.domain) reaches public addresses only: loopback, private, link-local "
        "and the agent's own addresses need an explicit entry. Only http and https are fetched.",
    )


@dataclass(frozen=True, slots=True)
class ControlConfig:
    socket: str = opt(
        "",
        "Unix socket of the local control API used by the CLI and the library; empty means "
        "$XDG_RUNTIME_DIR/frumitcache/agent.sock (/run/frumitcache/agent.sock as root).",
    )
    allow: list[str] = opt(
        [],
        "Upstream allow-list of the control socket's door (frumitcache pull, the library's "
        "fetch and prefetch), with origin.allow's syntax; empty means origin.allow.",
    )
    idle_timeout_s: float = opt(
        60.0,
        "A control connection is closed when its client sends no complete request, or reads "
        "nothing the agent sends, for this long (a request's own work is not limited).",
        "s",
    )
    max_connections: int = opt(
        64,
        "Control connections open at once from users other than root and the agent's own; "
        "more are refused at once, so local users cannot exhaust the agent's file descriptors.",
    )


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str = opt("default", "Name of the site this node belongs to.")
    key_file: str = opt(
        "",
        "File holding the site key (shared secret of the site); empty means a key generated "
        "in node.state_dir, which suits only a one-node site.",
    )
    peers: list[str] = opt([], "Static list of site members, as host or host:port.")
    control_port: int = opt(
        3143, "UDP port of the site control plane (beacons, election, catalogue)."
    )
    peer_port: int = opt(3144, "TCP port serving chunks over HTTP to site members.")
    peer_preauth_max: int = opt(
        64,
        "Connections to the peer port that may wait for their first signed request at once; "
        "a new one evicts the oldest waiting (idle sockets cannot lock members out).",
    )
    peer_header_timeout_s: float = opt(
        5.0, "A peer-port connection must send a complete request head within this.", "s"
    )
    peer_idle_timeout_s: float = opt(
        30.0, "A peer-port connection with no byte moving either way for this long is closed.",
        "s",
    )
    discovery: bool = opt(
        False,
        "Discover members by UDP multicast beacons on the site LAN (IPv4 and IPv6). Off in the "
        "embedded one-node default; turn it on (with node.address on the LAN) for a real site.",
    )
    multicast_v4: str = opt("239.255.42.99", "IPv4 multicast group for beacons.")
    multicast_v6: str = opt("ff02::4299", "IPv6 multicast group for beacons.")
    beacon_interval_s: float = opt(1.0, "Interval between membership beacons.", "s")
    member_timeout_s: float = opt(4.0, "A member silent this long is considered gone.", "s")
    lease_s: float = opt(3.0, "Seeder lease; a seeder that cannot renew it stops fetching.", "s")
    member_forget_s: float = opt(
        20.0,
        "A member silent this long no longer counts in election majorities (until then a "
        "minority side of a partition cannot elect a seeder).",
        "s",
    )
    election_round_s: float = opt(
        0.5, "Length of one election round, and the stagger between candidates.", "s"
    )
    max_clock_skew_s: float = opt(
        60.0,
        "Control frames and peer-port requests timestamped further than this from the local "
        "clock are rejected as stale (replay protection); 0 disables the time check for sites "
        "without NTP (replays are then refused by nonce only, over a bounded memory).",
        "s",
    )
    fallback: Literal["never", "after-timeout", "always"] = opt(
        "after-timeout",
        "When an agent may fetch from the origin itself if the seeder is unreachable.",
    )
    fallback_timeout_s: float = opt(
        15.0, "How long the seeder must be unreachable before falling back to the origin.", "s"
    )


@dataclass(frozen=True, slots=True)
class SwarmConfig:
    port: int = opt(3145, "TCP port of the libtorrent session.")
    small_chunk_bytes: int = opt(
        1 * MiB,
        "Chunks up to this size are pulled over the peer HTTP port instead of "
        "libtorrent (a libtorrent dial costs about a second; bench.swarm --threshold: with "
        "5 fetchers on 100 Mbit ports HTTP was faster up to 4 MiB).",
        "bytes",
    )
    upload_rate: int = opt(0, "Swarm upload limit; 0 means unlimited.", "bytes/s")
    download_rate: int = opt(0, "Swarm download limit; 0 means unlimited.", "bytes/s")
    max_queued_disk_bytes: int = opt(
        4 * MiB, "libtorrent write cache bound (keeps the agent's memory Pi-sized).", "bytes"
    )
    super_seeding: bool = opt(
        True, "Seeder hands each chunk out once so its port carries about one copy: each "
        "fetcher dials the seeder only for the chunks assigned to it (or stalled), and fetchers "
        "trade the rest. (libtorrent's own super-seeding is not used: it delays every torrent "
        "by 10 s.)"
    )
    seeder_grace_s: float = opt(
        3.0, "A chunk that made no progress for this long may be fetched from the seeder by "
        "any fetcher (its assigned fetcher is slow or gone).", "s",
    )
    stall_timeout_s: float = opt(
        20.0, "A libtorrent fetch with no progress for this long falls back to peer HTTP.", "s"
    )
    parallel_chunks: int = opt(
        8, "Chunks of one object fetched at once (each libtorrent chunk pays a connect tick, "
        "so a few in flight hide it; more costs memory)."
    )


@dataclass(frozen=True, slots=True)
class AptConfig:
    enabled: bool = opt(True, "Serve the apt proxy.")
    port: int = opt(3142, "TCP port of the apt proxy (apt-cacher-ng's port).")
    listen: str = opt(
        "127.0.0.1", "Address the apt proxy listens on; 0.0.0.0 or :: to serve other hosts."
    )
    allowed_hosts: list[str] = opt(
        [
            "deb.debian.org",
            "security.debian.org",
            "ftp.debian.org",
            "archive.raspberrypi.org",
            "archive.raspberrypi.com",
            "raspbian.raspberrypi.org",
            "raspbian.raspberrypi.com",
        ],
        "Upstream allow-list of the apt proxy (origin.allow's syntax); anything else gets 403.",
    )
    connect_allowed_hosts: list[str] = opt(
        [], "Hosts reachable through CONNECT tunnels (not cached); empty means none."
    )
    index_window_s: float = opt(
        30.0,
        "Index files (InRelease, Packages, ...) are revalidated at most once per window "
        "for the whole site, and never served staler.",
        "s",
    )
    header_timeout_s: float = opt(
        10.0,
        "A client must send a whole request head within this time once it has started one "
        "(slow-loris clients are cut off).",
        "s",
    )
    idle_timeout_s: float = opt(
        60.0, "A keep-alive connection with no request for this long is closed.", "s"
    )
    max_header_bytes: int = opt(
        16384, "Largest request head accepted; a bigger one is answered 431.", "bytes"
    )
    first_request_timeout_s: float = opt(
        10.0,
        "A new connection that has not sent its first request head within this time is "
        "closed (idle connections cannot hold descriptors for long).",
        "s",
    )
    max_pending_connections: int = opt(
        256,
        "Most connections that have not sent a request yet; past it the oldest of them is "
        "closed for each new one, so idle connections never crowd out apt clients.",
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = opt("info", "Log level.")
    format: Literal["text", "json"] = opt(
        "text", "Log line format on stderr: text (journald-friendly) or json."
    )


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    origin: OriginConfig = field(default_factory=OriginConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    apt: AptConfig = field(default_factory=AptConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # Paths with their defaults resolved; the raw fields stay as written.
    @property
    def store_path(self) -> Path:
        return Path(self.store.path).expanduser() if self.store.path else default_store_path()

    @property
    def state_path(self) -> Path:
        return (
            Path(self.node.state_dir).expanduser() if self.node.state_dir else default_state_path()
        )

    @property
    def socket_path(self) -> Path:
        return (
            Path(self.control.socket).expanduser() if self.control.socket else default_socket_path()
        )


# --- loading ---------------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b|bit)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_quantity(text: str, unit: str) -> int:
    """Parse ``"4MiB"``, ``"10M"``, ``"20Mbit"`` into bytes (or bytes/s for rates).

    Binary suffixes (KiB) are powers of 1024, decimal ones (kB, M) powers of 1000; ``bit``
    divides by eight, which is how link speeds are usually written.
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"expected a number of {unit} such as 4MiB or 20Mbit, got {text!r}")
    number, prefix, binary, suffix = m.groups()
    base = 1024 if binary else 1000
    value = float(number) * base ** _POWERS[prefix.lower()]
    if suffix and suffix.lower() == "bit":
        value /= 8
    return int(value)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _convert(key: str, tp: Any, unit: str, value: Any) -> Any:
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, str) and unit in ("bytes", "bytes/s"):
            try:
                value = parse_quantity(value, unit)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a bug in this module


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _fields(section: type[Any]) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    hints = typing.get_type_hints(section, include_extras=False)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(section)}


def _check_values(cfg: Config) -> None:
    chunk = cfg.store.chunk_size
    if chunk < 16 * KiB or chunk & (chunk - 1):
        raise ConfigError(
            f"store.chunk_size: must be a power of two of at least 16 KiB, got {chunk}"
        )
    for key, port in (
        ("site.control_port", cfg.site.control_port),
        ("site.peer_port", cfg.site.peer_port),
        ("swarm.port", cfg.swarm.port),
        ("apt.port", cfg.apt.port),
    ):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: must be a port number (0-65535), got {port}")
    if cfg.site.lease_s <= 0 or cfg.site.beacon_interval_s <= 0:
        raise ConfigError("site.lease_s and site.beacon_interval_s: must be positive")
    from frumitcache.origin._allow import AllowPolicy  # here: origin imports this module

    AllowPolicy.from_config(cfg)  # a bad allow-list entry raises ConfigError naming its key
    if cfg.site.peer_preauth_max < 1:
        raise ConfigError("site.peer_preauth_max: must be at least 1")
    if cfg.site.peer_header_timeout_s <= 0 or cfg.site.peer_idle_timeout_s <= 0:
        raise ConfigError(
            "site.peer_header_timeout_s and site.peer_idle_timeout_s: must be positive"
        )
    if cfg.site.max_clock_skew_s < 0:
        raise ConfigError("site.max_clock_skew_s: must be 0 (no check) or positive")
    if cfg.apt.max_pending_connections < 1 or cfg.apt.first_request_timeout_s <= 0:
        raise ConfigError(
            "apt.max_pending_connections and apt.first_request_timeout_s: must be positive"
        )
    if cfg.control.idle_timeout_s <= 0 or cfg.control.max_connections < 1:
        raise ConfigError("control.idle_timeout_s and control.max_connections: must be positive")


def config_from_mapping(data: Mapping[str, Any], *, source: str = "config") -> Config:
    """Build a :class:`Config` from parsed TOML, rejecting unknown keys and bad values."""
    sections = _section_types()
    built: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in sections:
            known = ", ".join(sections)
            raise ConfigError(f"{source}: unknown section [{name}] (known: {known})")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table")
        fields = _fields(sections[name])
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                raise ConfigError(
                    f"{name}.{key}: unknown key (known in [{name}]: {', '.join(fields)})"
                )
            tp, f = fields[key]
            values[key] = _convert(f"{name}.{key}", tp, f.metadata.get("unit", ""), value)
        built[name] = sections[name](**values)
    cfg = Config(**built)
    _check_values(cfg)
    return cfg


_SYSTEM_CONFIG = Path("/etc/frumitcache/frumitcache.toml")


def find_config_file() -> Path | None:
    """The config file used when none is named.

    ``$FRUMITCACHE_CONFIG``, else the first that exists of
    ``$XDG_CONFIG_HOME/frumitcache/frumitcache.toml`` (``~/.config/...``) and
    ``/etc/frumitcache/frumitcache.toml``. ``$FRUMITCACHE_SYSTEM_CONFIG`` replaces the ``/etc``
    path; it exists so that tests can check this order without writing to ``/etc``.
    """
    env = os.environ.get("FRUMITCACHE_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    system = os.environ.get("FRUMITCACHE_SYSTEM_CONFIG") or str(_SYSTEM_CONFIG)
    for candidate in (Path(base) / "frumitcache" / "frumitcache.toml", Path(system)):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None) -> Config:
    """Load the TOML file at ``path``; ``None`` gives the embedded one-node defaults."""
    if path is None:
        return config_from_mapping({})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_mapping(data, source=str(path))


def _parse_override_value(tp: Any, text: str) -> Any:
    if typing.get_origin(tp) is list:
        return [p.strip() for p in text.split(",") if p.strip()]
    if tp is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        return text
    if tp is int:
        try:
            return int(text)
        except ValueError:
            return text  # a quantity such as 4MiB, or garbage that _convert names
    if tp is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def with_overrides(cfg: Config, overrides: Mapping[str, str]) -> Config:
    """Apply ``{"store.max_bytes": "2GiB"}``-style overrides (from ``--set`` and CLI flags)."""
    data: dict[str, dict[str, Any]] = {
        name: dataclasses.asdict(getattr(cfg, name)) for name in _section_types()
    }
    sections = _section_types()
    for dotted, text in overrides.items():
        section, _, key = dotted.partition(".")
        if section not in sections or not key:
            raise ConfigError(f"{dotted}: unknown setting (write it as section.key)")
        fields = _fields(sections[section])
        if key not in fields:
            raise ConfigError(f"{dotted}: unknown key (known in [{section}]: {', '.join(fields)})")
        data[section][key] = _parse_override_value(fields[key][0], text)
    return config_from_mapping(data, source="overrides")


def describe() -> list[tuple[str, str, Any, str, str]]:
    """Every setting as ``(section, key, default, unit, doc)``, in declaration order."""
    rows: list[tuple[str, str, Any, str, str]] = []
    for name, section in _section_types().items():
        for key, (_tp, f) in _fields(section).items():
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            rows.append((name, key, default, f.metadata.get("unit", ""), f.metadata.get("doc", "")))
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Write ``{section: {key: value}}`` as TOML (what tests and tools generate configs with)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def example_toml(wrap: Callable[[str], list[str]] | None = None) -> str:
    """A complete, commented config file with every key at its default."""
    import textwrap

    wrapper = wrap or (lambda s: textwrap.wrap(s, 96))
    lines = [
        "# frumitcache agent configuration. Every key is shown at its default; delete what you",
        "# do not change. Generated from frumitcache/config.py (`frumitcache config example`).",
    ]
    current = ""
    for section, key, default, unit, doc in describe():
        if section != current:
            lines += ["", f"[{section}]"]
            current = section
        text = doc + (f" Unit: {unit}." if unit else "")
        lines += ["# " + line for line in wrapper(text)]
        lines.append(f"{key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "AptConfig",
    "Config",
    "ControlConfig",
    "LogConfig",
    "NodeConfig",
    "OriginConfig",
    "SiteConfig",
    "StoreConfig",
    "SwarmConfig",
    "config_from_mapping",
    "describe",
    "dump_toml",
    "example_toml",
    "find_config_file",
    "load_config",
    "parse_quantity",
    "with_overrides",
]
