"""``frumitcache oci config CLIENT``: print the snippet that points a container tool at this
node's registry mirror (containerd hosts.toml, k3s registries.yaml, podman registries.conf,
Docker daemon.json); with ``--write``, install it where the tool reads it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from frumitcache.cli import _exit
from frumitcache.cli._flags import add_agent_flags, load_cli_config
from frumitcache.oci import (
    CLIENTS,
    DOCKER_PATH,
    client_files,
    mirror_address,
    parse_registries,
    render,
)


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
            "registry-mirrors (Docker mirrors Docker Hub only). --write installs the files "
            "instead (daemon.json: registry-mirrors set, other keys kept); restart k3s or "
            "Docker afterwards, containerd and podman read them per pull."
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
    parser.add_argument(
        "--write",
        action="store_true",
        help="install the files (each printed as 'wrote PATH' or 'unchanged PATH')",
    )
    parser.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="with --write: the file system root to write under (an image being built)",
    )
    add_agent_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    mirror = mirror_address(config.oci.listen, config.oci.port)
    registries = parse_registries(config.oci.registries)
    if not args.write:
        sys.stdout.write(render(args.client, mirror, registries, hosts_dir=args.hosts_dir))
        return _exit.OK
    root = Path(args.root)
    daemon = root / DOCKER_PATH.lstrip("/")
    existing = daemon.read_text() if args.client == "docker" and daemon.exists() else None
    try:
        wanted = client_files(
            args.client, mirror, registries, hosts_dir=args.hosts_dir, daemon_json=existing
        )
    except ValueError as exc:
        sys.stderr.write(f"frumitcache: {exc}\n")
        return _exit.CONFIG
    for path, text in wanted.items():
        target = root / path.lstrip("/")
        if target.exists() and target.read_text() == text:
            sys.stdout.write(f"unchanged {path}\n")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(target.name + ".frumitcache-new")
        scratch.write_text(text)
        scratch.chmod(0o644)
        scratch.replace(target)  # atomic: the tool never reads half a file
        sys.stdout.write(f"wrote {path}\n")
    return _exit.OK
