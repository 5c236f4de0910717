"""``frumitcache oci config CLIENT``: print the snippet that points a container tool at this
node's registry mirror (containerd hosts.toml, k3s registries.yaml, podman registries.conf,
Docker daemon.json)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from frumitcache.cli import _exit
from frumitcache.cli._flags import add_agent_flags, load_cli_config
from frumitcache.oci import CLIENTS, mirror_address, parse_registries, render


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "oci",
        help="container registry mirror (port 3146): print client configuration",
        description=(
            "config CLIENT: print the configuration that sends CLIENT's image pulls through "
            "this node's registry mirror (oci.listen:oci.port), for every registry in "
            "oci.registries. containerd: one hosts.toml per registry (pull and resolve only, "
            "a 1 s dial timeout so a stopped agent falls back to the registry); k3s: "
            "registries.yaml; podman: registries.conf mirrors; docker: daemon.json's "
            "registry-mirrors (Docker mirrors Docker Hub only)."
        ),
    )
    parser.add_argument("action", choices=("config",))
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument(
        "--hosts-dir",
        default="/etc/containerd/certs.d",
        metavar="DIR",
        help="containerd's config_path for hosts.toml files (default /etc/containerd/certs.d)",
    )
    add_agent_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    mirror = mirror_address(config.oci.listen, config.oci.port)
    registries = parse_registries(config.oci.registries)
    sys.stdout.write(render(args.client, mirror, registries, hosts_dir=args.hosts_dir))
    return _exit.OK
