"""``frumitcache cache``: the local store: list, verify, gc, pin, unpin, import .deb files."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import trio

from frumitcache._results import as_dict
from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import error, human_bytes, print_json
from frumitcache.cli._tables import show_pairs, show_table
from frumitcache.client import AgentClient
from frumitcache.config import parse_quantity

_HELP = {
    "ls": (
        "list the objects in this node's store",
        "List every complete object in this "
        "node's store (most recently used first) with its size, pin and the URLs naming "
        "it, then the keys held in part.",
    ),
    "verify": (
        "re-hash the store and drop damaged chunks",
        "Read every chunk back and check "
        "it against its SHA-256. Damaged chunks are removed and their objects demoted to "
        "partial (the site refetches them when next needed). Exit code 7 if anything "
        "was damaged.",
    ),
    "gc": (
        "evict unpinned objects to free space",
        "Evict unpinned objects, least recently used "
        "first, until --free more bytes fit under store.max_bytes (default: only what is "
        "over the cap). Pinned objects are never evicted.",
    ),
    "pin": (
        "keep an object from eviction",
        "Pin the object named by URL (as fetched) or "
        "SHA-256 on this node so eviction never removes it. A SHA-256 that is not stored "
        "yet is pinned ahead of its arrival; a URL must have been fetched here.",
    ),
    "unpin": (
        "let an object be evicted again",
        "Remove the pin of the object named by URL or "
        "SHA-256. Exit code 8 if it is neither stored nor pinned.",
    ),
    "import": (
        "ingest existing .deb files into the store",
        "Store every *.deb file under DIR "
        "(e.g. /var/cache/apt/archives, searched recursively) by its SHA-256, so the apt "
        "proxy and the site serve those packages without the uplink. The agent reads "
        "the files, so they must be readable by the agent's user. Files already stored "
        "are counted, not copied again.",
    ),
}


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "cache",
        help="inspect and maintain this node's store (ls, verify, gc, pin, unpin, import)",
        description=textwrap.fill(
            "Inspect and maintain the local agent's content store. Each action has its own "
            "--help; every one takes --json. Example: frumitcache cache import "
            "/var/cache/apt/archives"
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str) -> argparse.ArgumentParser:
        short, long = _HELP[name]
        p = actions.add_parser(
            name,
            help=short,
            description=textwrap.fill(long, 90),
            epilog=_exit.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        add_client_flags(p)
        return p

    action("ls").set_defaults(handler=run_ls)
    action("verify").set_defaults(handler=run_verify)
    gc = action("gc")
    gc.add_argument(
        "--free",
        default="0",
        metavar="SIZE",
        help="bytes to make room for under the cap, e.g. 2GiB (default 0)",
    )
    gc.set_defaults(handler=run_gc)
    for name in ("pin", "unpin"):
        p = action(name)
        p.add_argument("target", metavar="URL|SHA256", help="an http(s) URL or a SHA-256")
        p.set_defaults(handler=run_pin, pinned=name == "pin")
    imp = action("import")
    imp.add_argument("directory", metavar="DIR", help="directory holding .deb files")
    imp.set_defaults(handler=run_import)


def _client(args: argparse.Namespace) -> AgentClient:
    return AgentClient(client_socket(args))


def run_ls(args: argparse.Namespace) -> int:
    contents = trio.run(_client(args).cache_list)
    if args.json:
        print_json(as_dict(contents))
        return _exit.OK
    show_table(
        "stored objects",
        ("sha256", "size", "pinned", "last used", "keys"),
        [
            (
                o.digest,
                human_bytes(o.size),
                "yes" if o.pinned else "no",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(o.last_used)),
                " ".join(o.keys),
            )
            for o in contents.objects
        ],
    )
    for key in contents.partial:
        sys.stdout.write(f"partial: {key}\n")
    return _exit.OK


def run_verify(args: argparse.Namespace) -> int:
    report = trio.run(_client(args).verify)
    if args.json:
        print_json({**as_dict(report), "damage": report.damage})
    else:
        show_pairs("store verified", [(k, str(v)) for k, v in as_dict(report).items()])
    return _exit.STORE if report.damage else _exit.OK


def run_gc(args: argparse.Namespace) -> int:
    try:
        free = parse_quantity(args.free, "bytes")
    except ValueError as exc:
        error(f"--free: {exc}")
        return _exit.USAGE
    client = _client(args)
    report = trio.run(lambda: client.gc(free=free))
    if args.json:
        print_json(as_dict(report))
    else:
        sys.stdout.write(
            f"freed {human_bytes(report.freed)}; store holds {human_bytes(report.bytes_used)} "
            f"of {human_bytes(report.max_bytes)}\n"
        )
    return _exit.OK


def run_pin(args: argparse.Namespace) -> int:
    client = _client(args)
    call = client.pin if args.pinned else client.unpin
    state = trio.run(call, args.target)
    if args.json:
        print_json(as_dict(state))
    else:
        verb = "pinned" if state.pinned else "unpinned"
        note = "" if state.present else " (not stored here yet)"
        sys.stdout.write(f"{verb} {state.digest}{note}\n")
    return _exit.OK


def run_import(args: argparse.Namespace) -> int:
    report = trio.run(_client(args).import_debs, args.directory)
    data: dict[str, Any] = as_dict(report)
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(
            f"{report.files} .deb files: {report.imported} imported "
            f"({human_bytes(report.bytes_imported)}), {report.present} already stored, "
            f"{report.failed} failed\n"
        )
        for line in report.errors:
            sys.stderr.write(f"  {line}\n")
    return _exit.STORE if report.failed else _exit.OK
