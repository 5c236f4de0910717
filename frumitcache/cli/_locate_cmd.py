"""``frumitcache locate``: which members of the site hold an object, fully or in part."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import trio

from frumitcache._results import Location, as_dict
from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import print_json
from frumitcache.cli._tables import show_pairs, show_table, size_text
from frumitcache.client import AgentClient


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "locate",
        help="show which members hold an artifact (by URL or SHA-256)",
        description=textwrap.fill(
            "Ask the site (the seeder's catalogue; this node's store on a one-node site) which "
            "members hold TARGET completely or in part, and how much of it. TARGET is the URL "
            "an artifact was fetched under or its SHA-256 (64 hex digits). An unknown URL "
            "lists no holders; an unknown SHA-256 exits with 8."
        ),
    )
    parser.add_argument("target", metavar="URL|SHA256", help="an http(s) URL or a SHA-256")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_client_flags(parser)
    parser.set_defaults(handler=run)


def location_json(where: Location) -> dict[str, Any]:
    data = as_dict(where)
    data.update(known=where.known, full=list(where.full), partial=list(where.partial))
    return data


def run(args: argparse.Namespace) -> int:
    client = AgentClient(client_socket(args))
    where = trio.run(client.locate, args.target)
    if args.json:
        print_json(location_json(where))
        return _exit.OK
    show_pairs(
        f"where {where.url} is",
        [
            ("url", where.url),
            ("sha256", where.digest or "unknown"),
            ("size", size_text(where.size)),
            ("chunks", str(where.chunks)),
            ("state", "complete" if where.complete else "partial" if where.known else "unknown"),
            ("fetching", "yes" if where.fetching else "no"),
        ],
    )
    if where.holders:
        show_table(
            "holders",
            ("node", "holds", "chunks", "bytes"),
            [
                (
                    h.node,
                    "full" if h.complete else "part",
                    f"{h.chunks}/{where.chunks}",
                    str(h.bytes),
                )
                for h in where.holders
            ],
        )
    else:
        sys.stdout.write("no member holds it\n")
    return _exit.OK
