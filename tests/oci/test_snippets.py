"""``frumitcache oci config CLIENT`` and the public surface of frumitcache.oci (pinned)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import frumitcache.oci
from frumitcache.oci import mirror_address, parse_registries, render

REGS = parse_registries(["docker.io=registry-1.docker.io", "ghcr.io", "quay.io"])


def test_public_names() -> None:
    assert sorted(frumitcache.oci.__all__) == sorted([
        "CLIENTS", "DOCKER_PATH", "MANIFEST_TYPES", "ApiError", "ApiRoot", "Ask", "Challenge",
        "Credentials", "Opened", "Registry", "RegistryAuth", "RegistryContent", "RegistryError",
        "RegistryMetrics", "RegistryMirror", "TokenBook", "TokenError", "TokenGet",
        "accepted_manifest_types", "client_files", "is_manifest_url", "load_credentials",
        "manifest_request",
        "mirror_address", "parse_challenge", "parse_registries", "parse_request", "render",
        "serve_registry", "tag_revalidation",
    ])  # fmt: skip


def test_containerd_hosts_toml_parse() -> None:
    text = render("containerd", "127.0.0.1:3146", REGS, hosts_dir="/h")
    files = text.split("# /h/")[1:]
    assert [f.split("/", 1)[0] for f in files] == ["docker.io", "ghcr.io", "quay.io"]
    hub = tomllib.loads(files[0].split("\n", 1)[1])
    assert hub["server"] == "https://registry-1.docker.io"
    host = hub["host"]["http://127.0.0.1:3146"]
    assert host == {"capabilities": ["pull", "resolve"], "dial_timeout": "1s"}


def test_podman_k3s_docker() -> None:
    podman = tomllib.loads(render("podman", "127.0.0.1:3146", REGS))
    mirrors = {r["prefix"]: r["mirror"][0]["location"] for r in podman["registry"]}
    assert mirrors == {
        "docker.io": "127.0.0.1:3146",
        "ghcr.io": "127.0.0.1:3146/ghcr.io",
        "quay.io": "127.0.0.1:3146/quay.io",
    }
    k3s = render("k3s", "10.0.0.5:3146", REGS)
    assert '  "ghcr.io":\n    endpoint:\n      - "http://10.0.0.5:3146"' in k3s
    docker = render("docker", "127.0.0.1:3146", REGS)
    assert json.loads(docker.split("\n", 1)[1]) == {"registry-mirrors": ["http://127.0.0.1:3146"]}
    assert mirror_address("0.0.0.0", 3146) == "127.0.0.1:3146"  # noqa: S104
    assert mirror_address("::", 3146) == "[::1]:3146"
    assert mirror_address("fd00::5", 1) == "[fd00::5]:1"


def test_cli_prints_for_the_config_in_use() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "frumitcache", "oci", "config", "containerd",
         "--set", "oci.port=4000", "--set", "oci.registries=ghcr.io"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("# /etc/containerd/certs.d/ghcr.io/hosts.toml\n")
    assert '[host."http://127.0.0.1:4000"]' in out


def oci_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frumitcache", "oci", "config", *args,
         "--set", "oci.registries=docker.io=registry-1.docker.io,ghcr.io"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_cli_writes_the_files_where_the_tools_read_them(tmp_path: Path) -> None:
    done = oci_config("containerd", "--write", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "wrote /etc/containerd/certs.d/docker.io/hosts.toml",
        "wrote /etc/containerd/certs.d/ghcr.io/hosts.toml",
    ]
    ghcr = tomllib.loads((tmp_path / "etc/containerd/certs.d/ghcr.io/hosts.toml").read_text())
    assert ghcr["server"] == "https://ghcr.io"
    assert "http://127.0.0.1:3146" in ghcr["host"]
    again = oci_config("containerd", "--write", "--root", str(tmp_path))
    assert again.stdout.startswith("unchanged /etc/containerd/certs.d/docker.io/hosts.toml")
    for client, path in (
        ("k3s", "etc/rancher/k3s/registries.yaml"),
        ("podman", "etc/containers/registries.conf.d/50-frumitcache.conf"),
    ):
        assert oci_config(client, "--write", "--root", str(tmp_path)).returncode == 0
        assert "127.0.0.1:3146" in (tmp_path / path).read_text()
    # Docker: registry-mirrors set in the daemon.json there is, every other key kept.
    daemon = tmp_path / "etc/docker/daemon.json"
    daemon.parent.mkdir(parents=True)
    daemon.write_text('{"log-driver": "local"}')
    assert oci_config("docker", "--write", "--root", str(tmp_path)).returncode == 0
    assert json.loads(daemon.read_text()) == {
        "log-driver": "local",
        "registry-mirrors": ["http://127.0.0.1:3146"],
    }
    daemon.write_text("[1]")
    refused = oci_config("docker", "--write", "--root", str(tmp_path))
    assert refused.returncode == 3
    assert "daemon.json" in refused.stderr
