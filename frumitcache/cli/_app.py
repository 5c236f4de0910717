"""The ``frumitcache`` command: argument parsing and dispatch to one module per command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from frumitcache._version import __version__
from frumitcache.cli import _exit
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


#: Each command and the module that registers and runs it, in the order ``--help`` lists them.
COMMANDS = {
    "agent": "_agent_cmd",
    "pull": "_pull",
    "prefetch": "_prefetch_cmd",
    "status": "_status",
    "site": "_site_cmd",
    "locate": "_locate_cmd",
    "estimate": "_estimate_cmd",
    "cache": "_cache_cmd",
    "config": "_config_cmd",
    "doctor": "_doctor_cmd",
    "oci": "_oci_cmd",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` just that command's part: a command's module
    (and what it imports: the registry door, httpx, ...) loads only when it runs, because
    interpreter start-up is most of what a ``pull`` costs a Pi."""
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

    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"frumitcache.cli.{module}").register(sub)
    return parser


Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A known command first: build just its part. Anything else (--help, a typo) gets the
    # whole parser, so the help and the "invalid choice" error list every command.
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
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
