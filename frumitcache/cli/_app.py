"""The ``frumitcache`` command: argument parsing and dispatch to one module per command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from frumitcache._version import __version__
from frumitcache.cli import (
    _agent_cmd,
    _cache_cmd,
    _config_cmd,
    _doctor_cmd,
    _estimate_cmd,
    _exit,
    _locate_cmd,
    _oci_cmd,
    _prefetch_cmd,
    _pull,
    _site_cmd,
    _status,
)
from frumitcache.cli._output import error
from frumitcache.errors import FrumitcacheError

DESCRIPTION = """\
frumitcache: peer-to-peer content distribution for Raspberry Pi sites.

Every Pi runs an agent; the agents of a site elect one seeder that fetches each byte over the
uplink once, and the Pis swarm it among themselves. Start an agent with `frumitcache agent`,
then fetch through it with `frumitcache pull URL -o FILE` or point apt at it
(Acquire::http::Proxy "http://127.0.0.1:3142";).

The config file is --config, else $FRUMITCACHE_CONFIG, else ~/.config/frumitcache/frumitcache.toml
or /etc/frumitcache/frumitcache.toml if present, else the built-in one-node defaults
(`frumitcache config example` prints them all, documented)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frumitcache",
        description=DESCRIPTION,
        epilog=_exit.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"frumitcache {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def sub(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help,
            description=description,
            epilog=_exit.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    for module in (
        _agent_cmd,
        _pull,
        _prefetch_cmd,
        _status,
        _site_cmd,
        _locate_cmd,
        _estimate_cmd,
        _cache_cmd,
        _config_cmd,
        _doctor_cmd,
        _oci_cmd,
    ):
        module.register(sub)
    return parser


Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except FrumitcacheError as exc:
        error(str(exc))
        return _exit.code_for(exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return _exit.INTERRUPTED
