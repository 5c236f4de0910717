"""``frumitcache status``: what the local agent is, where it is, and what it has done."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import human_bytes, is_terminal, print_json
from frumitcache.client import ask_blocking
from frumitcache.control import Status, StatusRequest
from frumitcache.errors import ProtocolError


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
        ("registry mirror", status.oci or "off"),
        ("uptime", f"{status.uptime_s:.0f} s"),
    ]
    for key, value in status.site.items():
        if key != "members":
            rows.append((f"site {key}", str(value)))
    for key, value in status.store.items():
        rows.append((f"store {key}", human_bytes(value) if "bytes" in key else str(value)))
    for key, value in (status.oci_counters or {}).items():
        rows.append((f"oci {key}", human_bytes(value) if "bytes" in key else str(value)))
    for key, value in status.origin.items():
        rows.append((f"uplink {key}", human_bytes(value) if "bytes" in key else str(value)))
    return rows


MEMBER_COLUMNS = ("node", "address", "priority", "model", "ram", "free disk", "link", "load")


def _member_rows(status: Status) -> list[tuple[str, ...]]:
    seeder = status.site.get("seeder")
    rows: list[tuple[str, ...]] = []
    for m in status.site.get("members", []):
        rows.append(
            (
                str(m.get("node", "")) + (" (seeder)" if m.get("node") == seeder else ""),
                str(m.get("address", "")),
                str(m.get("priority", "")),
                str(m.get("model", "")) or "-",
                human_bytes(m["ram_bytes"]) if m.get("ram_bytes") else "-",
                human_bytes(m["free_disk_bytes"]) if m.get("free_disk_bytes") else "-",
                f"{m['link_mbit']} Mbit/s" if m.get("link_mbit") else "-",
                f"{m.get('load', 0):.2f}" if "load" in m else "-",
            )
        )
    return rows


def run(args: argparse.Namespace) -> int:
    # Blocking, without trio (client/_blocking): one request, one reply.
    status = ask_blocking(client_socket(args), StatusRequest())
    if not isinstance(status, Status):
        raise ProtocolError(f"unexpected {status.tag} to a status request")
    if args.json:
        print_json(status_dict(status))
    elif is_terminal(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"frumitcache agent on {status.node}", show_header=False)
        for key, value in _rows(status):
            table.add_row(key, value)
        members = Table(*MEMBER_COLUMNS, title="site members")
        for row in _member_rows(status):
            members.add_row(*row)
        console = Console()
        console.print(table)
        console.print(members)
    else:
        for key, value in _rows(status):
            sys.stdout.write(f"{key}: {value}\n")
        for row in _member_rows(status):
            sys.stdout.write("member: " + "  ".join(row) + "\n")
    return _exit.OK
