"""Flags shared by the commands and how they become a config: the agent flags mapped onto
config keys by data, ``--config`` / ``--set``, and the control socket of client commands.

Commands import this module, never ``_app`` (which imports every command to build the parser),
so the command line has no import cycle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from frumitcache.config import Config, find_config_file, load_config, with_overrides
from frumitcache.errors import ConfigError

# Agent flags map onto config keys by data: (flag, dest, config key, help).
AGENT_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("--address", "address", "node.address", "address for site-facing ports (node.address)"),
    ("--name", "name", "node.name", "node id in the site (node.name)"),
    ("--store", "store", "store.path", "store directory (store.path)"),
    ("--max-bytes", "max_bytes", "store.max_bytes", "store size cap, e.g. 8GiB (store.max_bytes)"),
    ("--socket", "socket", "control.socket", "control socket path (control.socket)"),
    ("--apt-port", "apt_port", "apt.port", "apt proxy port (apt.port)"),
    ("--apt-listen", "apt_listen", "apt.listen", "apt proxy address (apt.listen)"),
    ("--max-rate", "max_rate", "origin.max_rate", "uplink budget, e.g. 20Mbit (origin.max_rate)"),
    ("--log-level", "log_level", "log.level", "debug, info, warning or error (log.level)"),
    ("--log-format", "log_format", "log.format", "text or json (log.format)"),
)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help="config file (TOML); see above for the default",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set store.max_bytes=2GiB (repeatable)",
    )


def load_cli_config(args: argparse.Namespace, *, client: bool = False) -> Config:
    """The config file named (or found), then --set overrides, then the dedicated flags.
    ``client``: a command that only talks to the agent (its allow-lists are the agent's)."""
    path = args.config if args.config is not None else find_config_file()
    config = load_config(path, allow_lists=not client)
    overrides: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write it as KEY=VALUE")
        overrides[key.strip()] = value.strip()
    for _flag, dest, key, _help in AGENT_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = str(value)
    if getattr(args, "no_apt", False):
        overrides["apt.enabled"] = "false"
    if getattr(args, "no_oci", False):
        overrides["oci.enabled"] = "false"
    return with_overrides(config, overrides, allow_lists=not client) if overrides else config


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser)
    for flag, dest, _key, help in AGENT_FLAGS:
        parser.add_argument(flag, dest=dest, metavar=dest.upper(), help=help)


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of commands that talk to a running agent: how to find its socket."""
    _add_config_args(parser)
    parser.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="the agent's control socket (default: control.socket of the config in use)",
    )


def client_socket(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    return load_cli_config(args, client=True).socket_path
