"""``frumitcache agent``: run this node's agent in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from frumitcache._log import get_logger, setup_logging
from frumitcache._malloc import tune_malloc
from frumitcache._version import __version__
from frumitcache.cli import _exit
from frumitcache.cli._flags import add_agent_flags, load_cli_config
from frumitcache.config import Config
from frumitcache.errors import single_error

if TYPE_CHECKING:
    from frumitcache.agent import AgentInfo

log = get_logger("agent")


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "agent",
        help="run this node's agent (apt proxy, registry mirror, control socket, site)",
        description=(
            "Run the frumitcache agent in the foreground. With no config it runs an embedded "
            "one-node site on 127.0.0.1: the store under ~/.cache/frumitcache "
            "(/var/cache/frumitcache as root), the control socket that `frumitcache pull` "
            "uses, the apt proxy on 127.0.0.1:3142 and the container registry mirror on "
            "127.0.0.1:3146. It prints where it listens and "
            "stores, and stops cleanly on Ctrl-C or SIGTERM."
        ),
    )
    add_agent_flags(parser)
    parser.add_argument("--no-apt", action="store_true", help="do not serve the apt proxy")
    parser.add_argument(
        "--no-oci", action="store_true", help="do not serve the container registry mirror"
    )
    parser.set_defaults(handler=run)


def _banner(info: AgentInfo) -> str:
    lines = [
        f"frumitcache agent {__version__}: node {info.node}",
        f"  control socket  {info.socket}",
        f"  store           {info.store}",
    ]
    if info.apt is not None:
        lines.append(f"  apt proxy       http://{info.apt[0]}:{info.apt[1]}")
    if info.oci is not None:
        lines.append(f"  registry mirror http://{info.oci[0]}:{info.oci[1]}")
    lines.append("  stop with Ctrl-C (or SIGTERM)")
    return "\n".join(lines)


# How long in-flight fetches get to complete after SIGTERM before they are cancelled (their
# writers then keep what they have as resumable partials; nothing partial is ever complete).
# deploy/systemd/frumitcache.service's TimeoutStopSec is larger than this.
GRACE_S = 10.0


async def serve(config: Config) -> None:
    """Run the agent until SIGINT/SIGTERM, then drain it and stop cleanly."""
    # Imported here so that `frumitcache --help` and the client commands start fast.
    from frumitcache.agent import Agent, Notifier

    with (
        Notifier.from_environ() as notifier,
        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
    ):
        async with trio.open_nursery(strict_exception_groups=True) as nursery:
            agent = Agent(config)
            info: AgentInfo = await nursery.start(agent.run)
            print(_banner(info), flush=True)
            notifier.ready(f"serving on {info.socket}")
            nursery.start_soon(notifier.watchdog_loop)
            async for signum in signals:
                log.info("agent.stopping", signal=signal.Signals(signum).name)
                notifier.stopping("draining in-flight fetches")
                with trio.move_on_after(GRACE_S):
                    await agent.drain()
                nursery.cancel_scope.cancel()
                break


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    setup_logging(config.log.level, config.log.format)
    tune_malloc()  # before libtorrent's and trio's threads start
    try:
        trio.run(serve, config, strict_exception_groups=True)
    except BaseExceptionGroup as group:
        raise single_error(group) from None
    sys.stdout.write("frumitcache agent stopped\n")
    return _exit.OK
