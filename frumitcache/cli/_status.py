"""``frumitcache status``: what the local agent is, where it is, and what it has done."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import trio

from frumitcache.cli import _exit
from frumitcache.cli._app import add_client_flags, client_socket
from frumitcache.cli._output import human_bytes, is_terminal, print_json
from frumitcache.client import AgentClient
from frumitcache.control._protocol import Status


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "status",
        help="show the local agent, its site and its counters",
        description="Ask the local agent for its status: node, site, store and uplink counters.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_client_flags(parser)
    parser.set_defaults(handler=run)


def status_dict(status: Status) -> dict[str, Any]:
    return {f.name: getattr(status, f.name) for f in dataclasses.fields(status)}


def _rows(status: Status) -> list[tuple[str, str]]:
    rows = [
        ("node", status.node),
        ("version", status.version),
        ("address", status.address),
        ("control socket", status.socket),
        ("store", status.store_path),
        ("apt proxy", status.apt or "off"),
        ("uptime", f"{status.uptime_s:.0f} s"),
    ]
    for key, value in status.site.items():
        rows.append((f"site {key}", str(value)))
    for key, value in status.store.items():
        rows.append((f"store {key}", human_bytes(value) if "bytes" in key else str(value)))
    for key, value in status.origin.items():
        rows.append((f"uplink {key}", human_bytes(value) if "bytes" in key else str(value)))
    return rows


def run(args: argparse.Namespace) -> int:
    status = trio.run(AgentClient(client_socket(args)).status)
    if args.json:
        print_json(status_dict(status))
    elif is_terminal(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"frumitcache agent on {status.node}", show_header=False)
        for key, value in _rows(status):
            table.add_row(key, value)
        Console().print(table)
    else:
        for key, value in _rows(status):
            sys.stdout.write(f"{key}: {value}\n")
    return _exit.OK
