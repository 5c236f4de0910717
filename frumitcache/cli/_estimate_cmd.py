"""``frumitcache estimate``: what fetching artifacts would cost the uplink."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable

import trio

from frumitcache._results import as_dict
from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import human_bytes, print_json
from frumitcache.cli._tables import show_table, size_text
from frumitcache.client import AgentClient


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "estimate",
        help="how many bytes of some artifacts must still cross the uplink",
        description=textwrap.fill(
            "For each URL: its size, how many of its bytes live members already hold, and how "
            "many must still come over the uplink. URLs the site has never seen are sized by "
            "a HEAD request the agent sends to the origin; when the origin does not say, the "
            "uplink cost is 'unknown'. Give '-' to read URLs from stdin, one per line."
        ),
    )
    parser.add_argument("urls", nargs="+", metavar="URL", help="http(s) URLs, or - for stdin")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_client_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    urls: list[str] = []
    for url in args.urls:
        if url == "-":
            urls.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            urls.append(url)
    client = AgentClient(client_socket(args))
    est = trio.run(client.estimate, urls)
    if args.json:
        print_json(as_dict(est))
        return _exit.OK
    rows = [
        (
            i.url,
            size_text(i.size),
            human_bytes(i.in_site),
            size_text(i.uplink),
            i.error or i.source,
        )
        for i in est.items
    ]
    show_table("uplink estimate", ("url", "size", "in site", "uplink", "from"), rows)
    sys.stdout.write(
        f"total: {human_bytes(est.uplink_bytes)} over the uplink, "
        f"{human_bytes(est.in_site_bytes)} already in the site"
        + (f", {len(est.unknown)} of unknown size" if est.unknown else "")
        + "\n"
    )
    return _exit.OK
