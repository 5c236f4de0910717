"""``frumitcache config``: print the documented example config, check or show a config."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable

from frumitcache.cli import _exit
from frumitcache.cli._flags import add_agent_flags, load_cli_config
from frumitcache.cli._output import print_json
from frumitcache.config import example_toml


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "config",
        help="print the example config, or check/show the config in use",
        description=(
            "example: print a config file with every key, its unit and default, documented. "
            "check: load the config (--config FILE or the default search) and report errors. "
            "show: print the effective config as JSON, defaults and overrides applied."
        ),
    )
    parser.add_argument("action", choices=("example", "check", "show"))
    add_agent_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "example":
        sys.stdout.write(example_toml())
        return _exit.OK
    config = load_cli_config(args)
    if args.action == "check":
        sys.stdout.write("config OK\n")
    else:
        data = dataclasses.asdict(config)
        if data["federation"]["key"]:
            data["federation"]["key"] = "<set>"  # a secret: shown as set, never printed
        data["resolved"] = {
            "store_path": str(config.store_path),
            "state_path": str(config.state_path),
            "socket_path": str(config.socket_path),
        }
        print_json(data)
    return _exit.OK
