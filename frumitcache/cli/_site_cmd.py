"""``frumitcache site``: members and their capabilities, the seeder, uplink and cache."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable

import trio

from frumitcache._results import as_dict
from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import human_bytes, print_json
from frumitcache.cli._tables import show_pairs, show_table
from frumitcache.client import AgentClient


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "site",
        help="show the site: members, seeder, uplink and cache figures",
        description=textwrap.fill(
            "What the local agent knows of its site: every live member with what it advertises "
            "(model, RAM, free disk, link speed, load), the seeder and its election term, this "
            "node's uplink figures (bytes fetched, bytes spared, current rate, budget) and its "
            "cache. The same data as the library's site() call."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_client_flags(parser)
    parser.set_defaults(handler=run)


#: How ``site`` names the sources of the bytes this agent served.
_SERVED_FROM = {"store": "this node", "site": "site peers"}


def _link_figures(received: int, rejected: int) -> str:
    """A link's bytes, and how many objects it sent wrong bytes for (dropped, fetched again)."""
    if not rejected:
        return human_bytes(received)
    return f"{human_bytes(received)}, wrong bytes for {rejected} object(s): left, fetched again"


def run(args: argparse.Namespace) -> int:
    info = trio.run(AgentClient(client_socket(args)).site)
    if args.json:
        print_json(as_dict(info))
        return _exit.OK
    u, c = info.uplink, info.cache
    show_pairs(
        f"site {info.site}",
        [
            ("node", info.node),
            ("seeder", f"{info.seeder or 'none (election)'} (term {info.term})"),
            ("uplink fetched", human_bytes(u.bytes_fetched)),
            ("  from origins", human_bytes(u.bytes_from_origin)),
            ("  from federation", human_bytes(u.bytes_from_federation)),
            *(
                (f"    {link}", _link_figures(n, u.federation_rejected.get(link, 0)))
                for link, n in sorted(u.federation_by_link.items())
            ),
            ("served", human_bytes(u.bytes_served)),
            *(
                (f"  from {_SERVED_FROM.get(source, source)}", human_bytes(n))
                for source, n in u.served_by_source.items()
            ),
            ("uplink spared", human_bytes(u.bytes_spared)),
            ("uplink rate", f"{human_bytes(u.rate)}/s"),
            ("uplink budget", f"{human_bytes(u.budget)}/s" if u.budget else "unlimited"),
            (
                "cache",
                f"{c.objects} objects, {human_bytes(c.bytes_used)} of {human_bytes(c.max_bytes)}",
            ),
        ],
    )
    show_table(
        "members",
        ("node", "address", "model", "ram", "free disk", "link", "load"),
        [
            (
                m.node + (" (seeder)" if m.seeder else ""),
                m.address,
                m.model or "-",
                human_bytes(m.ram_bytes) if m.ram_bytes else "-",
                human_bytes(m.free_disk_bytes) if m.free_disk_bytes else "-",
                f"{m.link_mbit} Mbit/s" if m.link_mbit else "-",
                f"{m.load:.2f}",
            )
            for m in info.members
        ],
    )
    return _exit.OK
