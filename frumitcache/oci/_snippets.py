"""Client configuration that points container tools at this node's registry mirror.

``frumitcache oci config containerd|k3s|podman|docker`` prints these (pure text, no I/O):
containerd ``hosts.toml`` per registry (a short ``dial_timeout`` so a stopped agent costs a pull
one second, then containerd goes to the registry itself), k3s ``registries.yaml``, podman
``registries.conf`` mirrors (registry-prefixed paths, as podman cannot send containerd's
``?ns=``) and Docker's ``registry-mirrors`` (Docker mirrors Docker Hub only).
:func:`client_files` gives the files ``frumitcache oci config CLIENT --write`` installs.
"""

from __future__ import annotations

import json
from typing import Literal

from frumitcache.config import Registry
from frumitcache.oci._names import DOCKER_HUB

Client = Literal["containerd", "k3s", "podman", "docker"]
CLIENTS: tuple[Client, ...] = ("containerd", "k3s", "podman", "docker")
DIAL_TIMEOUT = "1s"
K3S_PATH = "/etc/rancher/k3s/registries.yaml"
PODMAN_PATH = "/etc/containers/registries.conf.d/50-frumitcache.conf"
DOCKER_PATH = "/etc/docker/daemon.json"


def _server(registry: Registry) -> str:
    # containerd's own default for Docker Hub is this host; others are served where named.
    return registry.base


def _hosts_toml(mirror: str, registry: Registry) -> str:
    return "\n".join(
        [
            f'server = "{_server(registry)}"',
            "",
            f'[host."http://{mirror}"]',
            '  capabilities = ["pull", "resolve"]',
            f'  dial_timeout = "{DIAL_TIMEOUT}"',
            "",
        ]
    )


def containerd(mirror: str, registries: dict[str, Registry], hosts_dir: str) -> str:
    """One ``hosts.toml`` per registry, each preceded by a comment naming its path."""
    out: list[str] = []
    for name, registry in registries.items():
        out += [f"# {hosts_dir}/{name}/hosts.toml", _hosts_toml(mirror, registry)]
    return "\n".join(out)


def k3s(mirror: str, registries: dict[str, Registry]) -> str:
    """``/etc/rancher/k3s/registries.yaml``: every registry mirrored by this node."""
    out = [f"# {K3S_PATH}", "mirrors:"]
    for name in registries:
        out += [f'  "{name}":', "    endpoint:", f'      - "http://{mirror}"']
    return "\n".join(out) + "\n"


def podman(mirror: str, registries: dict[str, Registry]) -> str:
    """``registries.conf`` entries: Docker Hub at the mirror's root, others under their name."""
    out = [f"# {PODMAN_PATH}"]
    for name in registries:
        location = mirror if name == DOCKER_HUB else f"{mirror}/{name}"
        out += [
            "[[registry]]",
            f'prefix = "{name}"',
            f'location = "{name}"',
            "",
            "[[registry.mirror]]",
            f'location = "{location}"',
            "insecure = true",
            "",
        ]
    return "\n".join(out)


def docker(mirror: str) -> str:
    """``/etc/docker/daemon.json``'s key (merge it into an existing file)."""
    body = json.dumps({"registry-mirrors": [f"http://{mirror}"]}, indent=2)
    return f"# {DOCKER_PATH} (Docker mirrors Docker Hub only)\n" + body + "\n"


def render(
    client: Client,
    mirror: str,
    registries: dict[str, Registry],
    *,
    hosts_dir: str = "/etc/containerd/certs.d",
) -> str:
    if client == "containerd":
        return containerd(mirror, registries, hosts_dir)
    if client == "k3s":
        return k3s(mirror, registries)
    if client == "podman":
        return podman(mirror, registries)
    return docker(mirror)


def client_files(
    client: Client,
    mirror: str,
    registries: dict[str, Registry],
    *,
    hosts_dir: str = "/etc/containerd/certs.d",
    daemon_json: str | None = None,
) -> dict[str, str]:
    """The files that point ``client`` at the mirror, by absolute path. Docker's
    ``daemon.json`` is ``daemon_json`` (the file as it is, if any) with ``registry-mirrors``
    set: every other key of it is kept."""
    if client == "containerd":
        return {
            f"{hosts_dir}/{name}/hosts.toml": _hosts_toml(mirror, registry)
            for name, registry in registries.items()
        }
    if client == "k3s":
        return {K3S_PATH: k3s(mirror, registries)}
    if client == "podman":
        return {PODMAN_PATH: podman(mirror, registries)}
    data = json.loads(daemon_json) if daemon_json and daemon_json.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{DOCKER_PATH} does not hold a JSON object")
    data["registry-mirrors"] = [f"http://{mirror}"]
    return {DOCKER_PATH: json.dumps(data, indent=2) + "\n"}


def mirror_address(listen: str, port: int) -> str:
    """Where this node's clients reach the mirror: a wildcard listen means loopback."""
    wildcard = {"", "0.0.0.0", "::"}  # noqa: S104 - compared with, never bound
    host = listen if listen not in wildcard else "[::1]" if listen == "::" else "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"
