"""``frumitcache prefetch``: stage artifacts on members of the site ahead of need."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import trio

from frumitcache._results import PrefetchProgress, as_dict
from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import error, is_terminal, print_json
from frumitcache.client import AgentClient, PrefetchHandle, parse_sha256
from frumitcache.errors import PeerError, ProtocolError


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "prefetch",
        help="stage artifacts on site members ahead of need",
        description=textwrap.fill(
            "Ask members of the site (--node, repeatable; default: every live member) to fetch "
            "each URL into their store now, through the site as a pull would: the uplink "
            "carries each byte once. Returns as soon as every member has answered; with --wait "
            "it follows progress (a bar per member on a terminal) until all hold everything. "
            "Exit code 9 if a member could not be asked."
        ),
    )
    parser.add_argument("urls", nargs="+", metavar="URL", help="http(s) URLs to stage")
    parser.add_argument(
        "--node", action="append", metavar="NODE", help="a member's node id (repeatable)"
    )
    parser.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (only with a single URL)")
    parser.add_argument("--wait", action="store_true", help="wait until every member holds all")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="give up waiting after this long (default 3600)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_client_flags(parser)
    parser.set_defaults(handler=run)


async def _follow(handle: PrefetchHandle, bar: bool) -> tuple[PrefetchProgress, ...]:
    progress_bar: Any = None
    tasks: dict[tuple[str, str], Any] = {}
    if bar:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress

        progress_bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            console=Console(stderr=True),
        )
        progress_bar.start()
    try:
        while True:
            now = await handle.status()
            if progress_bar is not None:
                for p in now:
                    key = (p.url, p.node)
                    if key not in tasks:
                        name = p.url.rsplit("/", 1)[-1] or p.url
                        tasks[key] = progress_bar.add_task(f"{p.node} {name}", total=p.size)
                    progress_bar.update(tasks[key], completed=p.bytes, total=p.size)
            if all(p.complete for p in now):
                return now
            await trio.sleep(0.5)
    finally:
        if progress_bar is not None:
            progress_bar.stop()


def run(args: argparse.Namespace) -> int:
    if args.sha256 is not None and len(args.urls) != 1:
        error("--sha256 goes with a single URL")
        return _exit.USAGE
    try:
        digest = parse_sha256(args.sha256)
    except ProtocolError as exc:
        error(str(exc))
        return _exit.USAGE
    client = AgentClient(client_socket(args))
    urls: dict[str, str | bytes | None] = dict.fromkeys(args.urls, digest)

    async def main() -> tuple[PrefetchHandle, tuple[PrefetchProgress, ...] | None]:
        handle = await client.prefetch(urls, nodes=args.node)
        if not args.wait or handle.errors:
            return handle, None
        bar = not args.json and is_terminal(sys.stderr)
        with trio.fail_after(args.timeout):
            return handle, await _follow(handle, bar)

    try:
        handle, progress = trio.run(main)
    except trio.TooSlowError:
        error(f"not every member holds everything after {args.timeout:.0f} s")
        return _exit.SITE
    if args.json:
        out: dict[str, Any] = {"started": handle.started}
        if progress is not None:
            out["progress"] = [as_dict(p) for p in progress]
        print_json(out)
    else:
        for url, nodes in handle.started.items():
            for node, state in nodes.items():
                sys.stdout.write(f"{node}\t{state}\t{url}\n")
        if progress is not None:
            sys.stdout.write(f"done: {len(progress)} member/URL pairs complete\n")
    if handle.errors:
        (url, node), reason = next(iter(handle.errors.items()))
        error(str(PeerError(f"{node} did not take {url}: {reason}")))
        return _exit.SITE
    return _exit.OK
