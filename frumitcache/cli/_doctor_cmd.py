"""``frumitcache doctor``: check this node's set-up and say what is wrong and how to fix it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from frumitcache.cli import _exit
from frumitcache.cli._flags import add_agent_flags, load_cli_config
from frumitcache.cli._output import print_json


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "doctor",
        help="check this node's set-up (key, store, ports, apt, agent, federation)",
        description=(
            "Check this node's set-up for the config in use: the site key is readable, the "
            "store and state directories are writable, the agent's ports are free (or held by "
            "the agent), an agent answers on the control socket, and apt is pointed at it; with "
            "[federation] set, its key, the agent's federation endpoint and every parent and "
            "sibling answer a request signed with the key. "
            "Each problem comes with a hint. Exits 1 when any check fails. As root, file "
            "access is judged for the service user `frumitcache` when it exists."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--user", metavar="NAME", help="judge file access for this user (default: see above)"
    )
    add_agent_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from frumitcache.doctor import default_service_user, run_checks

    config = load_cli_config(args)
    checks = run_checks(config, service_user=args.user or default_service_user())
    if args.json:
        print_json(
            [{"name": c.name, "ok": c.ok, "message": c.message, "hint": c.hint} for c in checks]
        )
    else:
        for c in checks:
            mark = "ok  " if c.ok else "FAIL"
            sys.stdout.write(f"{mark} {c.name}: {c.message}\n")
            if not c.ok and c.hint:
                sys.stdout.write(f"     hint: {c.hint}\n")
    return _exit.OK if all(c.ok for c in checks) else _exit.FAILURE
