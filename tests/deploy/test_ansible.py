"""The fleet rollout: the playbook passes ansible-playbook's syntax check and ansible-lint (from
pyproject's test extra), and the role's own config tasks, run locally over the example
inventory, write a config per Pi that the agent loads, with the site's peers, the Pi's priority
and the site key."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from frumitcache.config import load_config

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "ansible"
ROLE = ANSIBLE_DIR / "roles" / "frumitcache"
RENDER = Path(__file__).resolve().parent / "render_config.yml"
INVENTORY = ANSIBLE_DIR / "inventory.example.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package ansible-core / ansible-lint)")
    return path


def _run(argv: list[str], tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    return subprocess.run(
        argv, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_playbook_syntax(tmp_path: Path) -> None:
    proc = _run(
        [_tool("ansible-playbook"), "--syntax-check", "-i", str(INVENTORY), "site.yml"], tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_syntax_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("- name: x\n  hosts: all\n  tasks:\n    - ansible.builtin.nosuchmodule: {}\n")
    proc = _run([_tool("ansible-playbook"), "--syntax-check", str(broken)], tmp_path)
    assert proc.returncode != 0


def _lint() -> str:
    """ansible-lint from the test venv (pyproject's test extra; the venv need not be on PATH),
    else from PATH."""
    beside = Path(sys.executable).parent / "ansible-lint"
    return str(beside) if beside.exists() else _tool("ansible-lint")


def test_ansible_lint(tmp_path: Path) -> None:
    proc = _run(
        [_lint(), "--offline", "--format=pep8", "site.yml", "roles/frumitcache"],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"  # an unnamed task running a bare command: two lint errors
    bad.write_text("- hosts: all\n  tasks:\n    - command: touch /tmp/x\n")
    proc = _run([_lint(), "--offline", "--format=pep8", str(bad)], tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "name[missing]" in proc.stdout + proc.stderr


def _render(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    key2 = tmp_path / "lab2.key"
    key2.write_text("bGFiMiBzaXRlIGtleQ==\n")
    out = tmp_path / "etc"
    out.mkdir(exist_ok=True)
    extra_vars = {
        "frumitcache_config_dir": f"{out}/{{{{ inventory_hostname }}}}",
        "frumitcache_venv": sys.prefix,  # the validation step loads the config with our Python
        "frumitcache_manage_service": False,
        "frumitcache_user": "root",  # group of the key; the service user does not exist here
        "frumitcache_site_key_file": str(key2),
        "vault_frumitcache_keys": {"lab1": "bGFiMSBzaXRlIGtleQ=="},
        "frumitcache_apt_port": 3150,
        "ansible_connection": "local",
    }
    return _run(
        [
            _tool("ansible-playbook"),
            "-i",
            str(INVENTORY),
            str(RENDER),
            "-e",
            json.dumps(extra_vars),
            *extra,
        ],
        tmp_path,
    )


def test_role_writes_loadable_configs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the role's config tasks chown files to root")
    proc = _render(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "etc"
    configs = {p.name: load_config(p / "frumitcache.toml") for p in sorted(out.iterdir())}
    assert set(configs) == {"lab1-pi01", "lab1-pi02", "lab1-zero01", "lab2-pi01", "lab2-pi02"}

    pi01 = configs["lab1-pi01"]
    assert pi01.node.priority == 100
    assert pi01.node.address == "2001:db8:42:1::11"
    assert pi01.site.name == "lab1"
    # Peers are the other Pis of the same site only, IPv6 in brackets with the control port.
    assert sorted(pi01.site.peers) == ["[2001:db8:42:1::12]:3143", "[2001:db8:42:1::21]:3143"]
    assert configs["lab1-zero01"].node.wired is False
    assert configs["lab1-zero01"].node.priority == 0
    lab2 = configs["lab2-pi02"]
    assert lab2.site.peers == ["192.0.2.11:3143"]
    assert lab2.origin.max_rate == 1_000_000  # 8Mbit
    assert str(lab2.store_path) == "/var/cache/frumitcache"
    assert str(lab2.socket_path) == "/run/frumitcache/agent.sock"

    for host, cfg in configs.items():
        key = Path(cfg.site.key_file)
        assert key == out / host / "site.key"
        mode = stat.S_IMODE(key.stat().st_mode)
        assert mode == 0o600, f"{key}: {mode:o}"  # the agent only: not the socket group
        assert cfg.apt.port == 3150
        advert = ET.parse(out / host / "avahi.service").getroot()  # noqa: S314 - ours
        assert advert.findtext("service/type") == "_apt_proxy._tcp"
        assert advert.findtext("service/port") == "3150"
        # The registry mirror is on, and the role pointed containerd and podman at it.
        assert cfg.oci.enabled
        assert cfg.oci.port == 3146
        hosts = (out / host / "etc/containerd/certs.d/docker.io/hosts.toml").read_text()
        assert '[host."http://127.0.0.1:3146"]' in hosts
        assert (out / host / "etc/containers/registries.conf.d/50-frumitcache.conf").exists()
    assert (out / "lab1-pi01" / "site.key").read_text() == "bGFiMSBzaXRlIGtleQ=="
    assert (out / "lab2-pi01" / "site.key").read_text() == "bGFiMiBzaXRlIGtleQ==\n"


def test_role_refuses_a_config_the_agent_would_reject(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the role's config tasks chown files to root")
    bad = {"frumitcache_extra_config": {"store": {"chunk_size": 1000}}}
    proc = _render(tmp_path, "-e", json.dumps(bad))
    assert proc.returncode != 0
    assert "chunk_size" in proc.stdout + proc.stderr
    assert not list((tmp_path / "etc").glob("*/frumitcache.toml"))
    assert not list((tmp_path / "etc").glob("*/avahi.service"))  # the play stopped
