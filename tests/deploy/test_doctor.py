"""``frumitcache doctor``'s local checks on a set-up built in a temporary directory: real bound
sockets on loopback, real files and modes, real apt configuration (checked against apt-config)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from frumitcache.config import Config, config_from_mapping
from frumitcache.doctor import (
    Check,
    ServiceUser,
    check_apt,
    check_control_socket,
    check_directory,
    check_key_file,
    check_ports,
    run_checks,
)
from frumitcache.doctor._aptconf import parse_apt_conf, read_apt_config
from frumitcache.testing.net import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _config(tmp_path: Path, address: str, **sections: dict[str, object]) -> Config:
    """A node on its own loopback address with every path under ``tmp_path``; ports 0 (unused)
    unless given."""
    data: dict[str, dict[str, object]] = {
        "node": {"address": address, "state_dir": str(tmp_path / "state")},
        "store": {"path": str(tmp_path / "store"), "min_free_bytes": 0},
        "control": {"socket": str(tmp_path / "agent.sock")},
        "site": {"control_port": 0, "peer_port": 0},
        "swarm": {"port": 0},
        "apt": {"port": 0, "listen": address},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_mapping(data)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def listener(address: str) -> Iterator[tuple[str, int]]:
    """Someone else's TCP listener on ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        s.listen()
        yield address, s.getsockname()[1]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="frumitcache-doctor-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


# --- ports -----------------------------------------------------------------------------------


def test_a_port_in_use_is_reported(tmp_path: Path, listener: tuple[str, int]) -> None:
    address, port = listener
    spare = free_port(address)
    cfg = _config(tmp_path, address, site={"peer_port": port}, swarm={"port": spare})
    checks = _by_name(check_ports(cfg))
    busy = checks[f"port tcp/{port}"]
    assert not busy.ok
    assert "site.peer_port" in busy.message
    assert "in use" in busy.message
    assert busy.hint
    if os.geteuid() == 0:  # root sees every process's sockets: the culprit is named
        assert f"pid {os.getpid()}" in busy.message
    assert checks[f"port tcp/{spare}"].ok


def test_a_udp_port_in_use_is_reported(tmp_path: Path, address: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        port = s.getsockname()[1]
        check = _by_name(check_ports(_config(tmp_path, address, site={"control_port": port})))
    assert not check[f"port udp/{port}"].ok
    assert "site.control_port" in check[f"port udp/{port}"].message


def test_ports_held_by_the_running_agent_are_fine(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    """This process plays the agent: it answers on the control socket and holds the port."""
    address, port = listener
    cfg = _config(tmp_path, address, site={"peer_port": port})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.bind(str(cfg.socket_path))
        control.listen()
        checks = _by_name(run_checks(cfg, apt_dir=tmp_path / "no-apt"))
    assert checks["control socket"].ok, checks["control socket"]
    assert f"pid {os.getpid()}" in checks["control socket"].message
    assert checks[f"port tcp/{port}"].ok, checks[f"port tcp/{port}"]
    assert "agent" in checks[f"port tcp/{port}"].message


def test_an_address_not_on_this_host_is_reported(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "192.0.2.1", swarm={"port": 3145})  # TEST-NET-1: bound, never sent to
    [check] = check_ports(cfg)
    assert not check.ok
    assert "not an address of this host" in check.message


# --- directories -----------------------------------------------------------------------------


def test_store_dir_writable_or_creatable(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    assert check_directory("store dir", tmp_path / "store").ok
    later = check_directory("store dir", tmp_path / "new" / "store")
    assert later.ok
    assert "will be created" in later.message


def test_store_dir_under_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    check = check_directory("store dir", tmp_path / "blocker" / "store")
    assert not check.ok
    assert "not a directory" in check.message
    (tmp_path / "plainfile").write_text("x")
    assert not check_directory("store dir", tmp_path / "plainfile").ok


def test_unwritable_store_dir_is_reported(tmp_path: Path, open_dir: Path) -> None:
    store = open_dir / "store"
    store.mkdir(mode=0o755)
    if os.geteuid() == 0:
        # Root may write anywhere: judge as the unprivileged user the service runs as.
        user = ServiceUser.lookup("nobody")
        os.chown(store, 0, 0)
        check = check_directory("store dir", store, user)
        assert not check.ok
        assert "nobody has no write permission" in check.message
        os.chown(store, user.uid, -1)
        assert check_directory("store dir", store, user).ok
        # A private directory on the way in blocks the user as surely.
        private = tmp_path / "store"
        private.mkdir()
        os.chown(private, user.uid, -1)
        hidden = check_directory("store dir", private, user)
        assert not hidden.ok
        assert "nobody cannot enter" in hidden.message
    else:
        store.chmod(0o555)
        try:
            check = check_directory("store dir", store)
        finally:
            store.chmod(0o755)
        assert not check.ok
        assert "not writable" in check.message


def test_run_checks_reports_the_unwritable_store(tmp_path: Path, address: str) -> None:
    (tmp_path / "store").write_text("a file where the store should be")
    checks = _by_name(run_checks(_config(tmp_path, address), apt_dir=tmp_path / "no-apt"))
    assert not checks["store dir"].ok
    assert checks["state dir"].ok


def test_too_little_free_space_is_reported(tmp_path: Path) -> None:
    check = check_directory("store dir", tmp_path, None, min_free=1 << 62)
    assert not check.ok
    assert "min_free_bytes" in check.message


# --- key file --------------------------------------------------------------------------------


def test_key_file(tmp_path: Path, address: str) -> None:
    key = tmp_path / "site.key"
    cfg = _config(tmp_path, address, site={"key_file": str(key)})
    missing = check_key_file(cfg)
    assert not missing.ok
    assert "No such file" in missing.message
    key.write_text("c2l0ZSBrZXk=\n")
    key.chmod(0o644)
    loose = check_key_file(cfg)
    assert not loose.ok
    assert "chmod 0600" in loose.hint
    key.chmod(0o640)  # the socket's group must not read it either (issue 16 finding 3)
    assert not check_key_file(cfg).ok
    key.chmod(0o600)
    assert check_key_file(cfg).ok
    key.write_text("")
    assert not check_key_file(cfg).ok


def test_key_file_unreadable_by_the_service_user(
    tmp_path: Path, open_dir: Path, address: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    key = open_dir / "site.key"
    key.write_text("secret")
    os.chown(key, 0, 0)
    key.chmod(0o600)
    cfg = _config(tmp_path, address, site={"key_file": str(key)})
    nobody = ServiceUser.lookup("nobody")
    check = check_key_file(cfg, nobody)
    assert not check.ok
    assert "nobody has no read permission" in check.message
    os.chown(key, pwd.getpwnam("nobody").pw_uid, 0)
    assert check_key_file(cfg, nobody).ok


def test_no_key_file_is_fine_only_alone(tmp_path: Path, address: str) -> None:
    assert check_key_file(_config(tmp_path, address)).ok
    assert not check_key_file(_config(tmp_path, address, site={"peers": ["127.0.0.9"]})).ok


def test_unknown_service_user_is_reported(tmp_path: Path, address: str) -> None:
    checks = _by_name(
        run_checks(
            _config(tmp_path, address), service_user="no-such-user-frumitcache", apt_dir=tmp_path
        )
    )
    assert not checks["service user"].ok


# --- control socket --------------------------------------------------------------------------


def test_control_socket(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    absent = check_control_socket(path)
    assert not absent.ok
    assert "not running" in absent.message
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        stale = check_control_socket(path)  # bound, not listening: what a crash leaves
        assert not stale.ok
        s.listen()
        assert check_control_socket(path).ok


# --- apt -------------------------------------------------------------------------------------


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "etc-apt"
    (root / "apt.conf.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_apt_pointed_at_the_agent(tmp_path: Path, address: str) -> None:
    cfg = _config(tmp_path, address, apt={"listen": "127.0.0.1", "port": 3142})
    snippet = (DEPLOY / "apt" / "01frumitcache").read_text()
    apt = _apt_dir(tmp_path, {"apt.conf.d/01frumitcache": snippet})
    assert check_apt(cfg, apt).ok
    # A later file wins, as in apt.
    (apt / "apt.conf.d" / "99other").write_text('Acquire::http::Proxy "http://10.9.9.9:8000";\n')
    other = check_apt(cfg, apt)
    assert not other.ok
    assert "10.9.9.9" in other.message
    # Files apt ignores are ignored.
    (apt / "apt.conf.d" / "99other").rename(apt / "apt.conf.d" / "99other.disabled")
    assert check_apt(cfg, apt).ok


def test_apt_without_proxy_or_with_autodetect(tmp_path: Path, address: str) -> None:
    cfg = _config(tmp_path, address, apt={"listen": "127.0.0.1", "port": 3142})
    apt = _apt_dir(tmp_path, {"apt.conf.d/70debconf": 'DPkg::Options { "--force-confdef"; };\n'})
    none = check_apt(cfg, apt)
    assert not none.ok
    assert "01frumitcache" in none.hint
    (apt / "apt.conf.d" / "auto-apt-proxy.conf").write_text(
        'Acquire::http::Proxy-Auto-Detect "/usr/bin/auto-apt-proxy";\n'
    )
    detect = check_apt(cfg, apt)
    assert not detect.ok
    assert "auto-apt-proxy" in detect.message
    assert check_apt(_config(tmp_path, address, apt={"enabled": False}), apt).ok


def test_apt_wrong_port(tmp_path: Path, address: str) -> None:
    cfg = _config(tmp_path, address, apt={"listen": "127.0.0.1", "port": 3142})
    apt = _apt_dir(tmp_path, {"apt.conf": 'Acquire::http::Proxy "http://localhost:3128/";\n'})
    assert not check_apt(cfg, apt).ok


def test_parse_apt_conf_syntax() -> None:
    text = """
    // comment
    # another comment
    /* a block
       comment */
    Acquire::http { Proxy "http://a:1"; Timeout "30"; };
    APT { Get { Assume-Yes "true"; }; };
    DPkg::Pre-Install-Pkgs { "/usr/sbin/dpkg-preconfigure --apt"; };
    Acquire::HTTP::Proxy::deb.example.org "DIRECT";
    #clear Acquire::http::Timeout;
    """
    pairs = parse_apt_conf(text)
    assert ("acquire::http::proxy", "http://a:1") in pairs
    assert ("apt::get::assume-yes", "true") in pairs
    assert ("acquire::http::proxy::deb.example.org", "DIRECT") in pairs
    assert ("acquire::http::timeout", None) in pairs


APT_CASES = {
    "flat": {"apt.conf.d/01a": 'Acquire::http::Proxy "http://127.0.0.1:3142";\n'},
    "nested": {"apt.conf.d/01a": 'Acquire { http { Proxy "http://127.0.0.1:3142"; }; };\n'},
    "override": {
        "apt.conf.d/01a": 'Acquire::http::Proxy "http://127.0.0.1:3142";\n',
        "apt.conf.d/50b.conf": 'Acquire::http::Proxy "http://10.0.0.1:8000";\n',
    },
    "main-wins": {
        "apt.conf.d/99a": 'Acquire::http::Proxy "http://10.0.0.1:8000";\n',
        "apt.conf": 'Acquire::http::Proxy "http://127.0.0.1:3142";\n',
    },
    "ignored-names": {
        "apt.conf.d/01a": 'Acquire::http::Proxy "http://127.0.0.1:3142";\n',
        "apt.conf.d/99b.dpkg-old": 'Acquire::http::Proxy "http://10.0.0.1:8000";\n',
        "apt.conf.d/99c.bak": 'Acquire::http::Proxy "http://10.0.0.2:8000";\n',
    },
    "commented": {
        "apt.conf.d/01a": (
            'Acquire::http::Proxy "http://127.0.0.1:3142";\n'
            '// Acquire::http::Proxy "http://10.0.0.1:8000";\n'
            '/* Acquire::http::Proxy "http://10.0.0.2:8000"; */\n'
        ),
    },
    "cleared": {
        "apt.conf.d/01a": 'Acquire::http::Proxy "http://10.0.0.1:8000";\n',
        "apt.conf.d/02b": "#clear Acquire::http::Proxy;\n",
    },
    "case": {"apt.conf.d/01a": 'acquire::HTTP::proxy "http://127.0.0.1:3142";\n'},
}


@pytest.mark.parametrize("case", sorted(APT_CASES))
def test_apt_reading_agrees_with_apt_config(tmp_path: Path, case: str) -> None:
    """Our reading of apt's configuration is apt's own: compared with apt-config."""
    apt_config = shutil.which("apt-config")
    if apt_config is None:
        pytest.skip("apt-config is not installed (Debian package apt)")
    apt = _apt_dir(tmp_path, APT_CASES[case])
    root = tmp_path / "root.conf"
    root.write_text(
        f'Dir::Etc "{apt}";\nDir::Etc::parts "apt.conf.d";\nDir::Etc::main "apt.conf";\n'
    )
    out = subprocess.run(
        [apt_config, "shell", "P", "Acquire::http::Proxy"],
        env={**os.environ, "APT_CONFIG": str(root)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    theirs = out.strip().removeprefix("P=").strip("'")
    ours = read_apt_config(apt).get("acquire::http::proxy", "")
    assert ours == theirs


def test_unit_directories_not_yet_created_are_fine_for_the_service_user() -> None:
    if Path("/var/cache/frumitcache").exists():
        pytest.skip("/var/cache/frumitcache exists on this machine")
    user = ServiceUser.lookup("nobody")
    check = check_directory("store dir", Path("/var/cache/frumitcache"), user)
    assert check.ok
    assert "systemd creates it" in check.message
    # Anywhere else the missing directory must be creatable by the user itself.
    assert not check_directory("store dir", Path("/var/cache/not-frumitcache/x"), user).ok


# --- ports match by address and port (issue 16 finding 12) ------------------------------------


def test_port_holders_match_the_address_too() -> None:
    from frumitcache.doctor._procnet import socket_holders as _socket_holders
    from frumitcache.testing.net import loopback_address

    ours, other = loopback_address(), loopback_address()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((ours, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        # Another address's listener on the same port is not in the way ...
        assert list(_socket_holders("tcp", port, other)) == []
        # ... the same address's is, and so is a wildcard's view of it.
        assert any(pid == os.getpid() for pid, _ in _socket_holders("tcp", port, ours))
        assert any(pid == os.getpid() for pid, _ in _socket_holders("tcp", port, "0.0.0.0"))  # noqa: S104 - a wildcard asked, not bound
