"""The files in deploy/: the systemd unit passes systemd-analyze verify, the sysusers entry
creates the user, the example config is the code's and loads, the apt and avahi files say
what apt and DNS-SD browsers expect."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from frumitcache.config import example_toml, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "frumitcache.service"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def _verify(unit_dir: Path, name: str) -> tuple[int, str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(unit_dir / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    return proc.returncode, proc.stdout + proc.stderr


def _with_exec_start(tmp_path: Path, text: str, name: str = "frumitcache.service") -> Path:
    """A copy of the unit whose ExecStart names a binary that exists on this machine (the
    real /usr/bin/frumitcache is not installed here); everything else is verified as is."""
    true = shutil.which("true") or "/bin/true"
    fixed = re.sub(r"^ExecStart=/usr/bin/frumitcache", f"ExecStart={true}", text, flags=re.M)
    assert fixed != text or "/usr/bin/frumitcache" not in text
    (tmp_path / name).write_text(fixed)
    return tmp_path


def test_unit_verifies(tmp_path: Path) -> None:
    code, output = _verify(_with_exec_start(tmp_path, UNIT.read_text()), "frumitcache.service")
    # systemd-analyze exits 0 on unknown keys and bad values ("ignoring"): any word about our
    # unit is a defect.
    assert code == 0, output
    assert "frumitcache.service" not in output, output


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a bad value are both caught."""
    broken = UNIT.read_text().replace("MemoryMax=256M", "MemoryMax=lots\nProtectSytem=strict")
    code, output = _verify(_with_exec_start(tmp_path, broken), "frumitcache.service")
    assert code != 0 or "frumitcache.service" in output
    assert "ProtectSytem" in output
    assert "lots" in output


def test_unit_settings() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == (
        "/usr/bin/frumitcache agent --config /etc/frumitcache/frumitcache.toml"
    )
    assert service["User"] == "frumitcache"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ProtectSystem"] == "strict"
    for key in ("StateDirectory", "CacheDirectory", "RuntimeDirectory"):
        assert service[key] == "frumitcache"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


# Where the agent's graceful-stop deadline may live (seconds), first found wins.
GRACE_CONSTANTS = (
    ("frumitcache.agent", "GRACEFUL_STOP_S"),
    ("frumitcache.agent._agent", "GRACEFUL_STOP_S"),
    ("frumitcache.cli._agent_cmd", "GRACE_S"),
)
MAX_GRACE_S = 10.0  # what the unit's comment promises


def test_stop_timeout_covers_the_agents_grace_period() -> None:
    """systemd must not SIGKILL the agent while it is still finishing transfers cleanly."""
    import importlib

    stop = _seconds(_unit()["Service"]["TimeoutStopSec"])
    assert stop >= MAX_GRACE_S + 10
    for module, name in GRACE_CONSTANTS:
        try:
            grace = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        assert grace <= MAX_GRACE_S, f"{module}.{name}={grace}s: raise TimeoutStopSec with it"
        return
    pytest.skip(
        "the agent names no graceful-stop deadline (one of "
        + ", ".join(f"{m}.{n}" for m, n in GRACE_CONSTANTS)
        + ")"
    )


def test_watchdog_leaves_room_for_pings() -> None:
    # The agent pings every WatchdogSec/2 from its event loop; a Pi model B needs slack.
    assert _seconds(_unit()["Service"]["WatchdogSec"]) >= 30


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed (Debian package systemd)")
    if os.geteuid() != 0:
        pytest.skip("systemd-sysusers --root writes files owned by root")
    (tmp_path / "etc").mkdir()
    subprocess.run(
        [sysusers, f"--root={tmp_path}", str(DEPLOY / "systemd" / "frumitcache.sysusers.conf")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = (tmp_path / "etc" / "passwd").read_text()
    [entry] = [line for line in passwd.splitlines() if line.startswith("frumitcache:")]
    fields = entry.split(":")
    assert int(fields[2]) < 1000  # a system user
    assert fields[5] == "/var/lib/frumitcache"
    assert fields[6] == "/usr/sbin/nologin"
    assert "frumitcache:" in (tmp_path / "etc" / "group").read_text()


def test_example_config_is_generated_from_the_code() -> None:
    path = DEPLOY / "frumitcache.toml"
    assert path.read_text() == example_toml(), (
        "deploy/frumitcache.toml is stale; regenerate it: .venv/bin/python -c "
        "'from frumitcache.config import example_toml; print(example_toml(), end=\"\")' "
        "> deploy/frumitcache.toml"
    )
    load_config(path)


def test_apt_snippet(tmp_path: Path) -> None:
    from frumitcache.config import AptConfig
    from frumitcache.doctor._aptconf import apt_config_files, read_apt_config

    text = (DEPLOY / "apt" / "01frumitcache").read_text()
    active = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("//")
    ]
    assert active == [f'Acquire::http::Proxy "http://127.0.0.1:{AptConfig().port}";']
    # Installed under its own name, apt reads it (a name with a foreign extension is skipped).
    (tmp_path / "apt.conf.d").mkdir()
    shutil.copy(DEPLOY / "apt" / "01frumitcache", tmp_path / "apt.conf.d")
    assert apt_config_files(tmp_path) == [tmp_path / "apt.conf.d" / "01frumitcache"]
    assert read_apt_config(tmp_path) == {"acquire::http::proxy": "http://127.0.0.1:3142"}


def test_avahi_service_advertises_the_apt_proxy() -> None:
    tree = ET.parse(DEPLOY / "avahi" / "frumitcache.service")  # noqa: S314 - our own file
    root = tree.getroot()
    assert root.tag == "service-group"
    name = root.find("name")
    assert name is not None
    assert name.get("replace-wildcards") == "yes"
    [service] = root.findall("service")
    assert service.findtext("type") == "_apt_proxy._tcp"
    from frumitcache.config import AptConfig

    assert service.findtext("port") == str(AptConfig().port)
