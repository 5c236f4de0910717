"""``frumitcache doctor``'s federation checks against real federation endpoints over loopback TCP
(the agent's own :class:`FederationServer`, keyed), a plain HTTP server, a closed port, and real
key files: the probe is signed, fetches nothing, and each failure says which and why."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import cast

import pytest
import trio

from frumitcache.config import Config, config_from_mapping
from frumitcache.content import Content, ContentRequest, ContentSource
from frumitcache.doctor import Check, check_federation, run_checks
from frumitcache.doctor._federation import PROBE_PATH, REFUSED_HEADER
from frumitcache.federation import FederationServer
from frumitcache.testing.net import free_port, loopback_address
from frumitcache.testing.origin import OriginServer


class _NoContent:
    """The endpoint's content seam: the probe must never reach it."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    async def open(self, request: ContentRequest) -> Content:
        self.opened.append(request.url)
        raise AssertionError("the doctor's probe opened content")


def _key_file(tmp_path: Path, key: str, name: str = "federation.key") -> Path:
    path = tmp_path / name
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def _config(
    tmp_path: Path, address: str, site: Mapping[str, object] | None = None, **federation: object
) -> Config:
    return config_from_mapping(
        {
            "node": {"address": address, "state_dir": str(tmp_path / "state")},
            "store": {"path": str(tmp_path / "store"), "min_free_bytes": 0},
            "control": {"socket": str(tmp_path / "agent.sock")},
            "site": {"control_port": 0, "peer_port": 0, **(site or {})},
            "swarm": {"port": 0},
            "apt": {"enabled": False},
            "federation": {"connect_timeout_s": 2.0, **federation},
        }
    )


async def _doctor(config: Config, *, running: bool = False) -> dict[str, Check]:
    checks = await trio.to_thread.run_sync(lambda: check_federation(config, agent_running=running))
    return {c.name: c for c in checks}


@pytest.fixture
async def endpoint(nursery: trio.Nursery) -> AsyncIterator[tuple[FederationServer, str, str]]:
    """A keyed federation endpoint on its own loopback address: (server, key, host:port)."""
    key = secrets.token_hex(32)
    source = _NoContent()
    server = FederationServer(cast("ContentSource", source), key.encode(), held=lambda url: False)
    host, port = await nursery.start(server.serve, loopback_address(), 0)
    yield server, key, f"{host}:{port}"
    assert source.opened == []


def test_the_probe_speaks_the_federations_wire() -> None:
    from frumitcache.federation._wire import PATH
    from frumitcache.federation._wire import REFUSED_HEADER as WIRE_REFUSED

    assert PROBE_PATH == PATH
    assert REFUSED_HEADER == WIRE_REFUSED


def test_federation_off_adds_no_check(tmp_path: Path, address: str) -> None:
    assert check_federation(_config(tmp_path, address)) == []


async def test_members_are_probed_with_the_key(
    tmp_path: Path, address: str, endpoint: tuple[FederationServer, str, str], origin: OriginServer
) -> None:
    server, key, parent = endpoint
    closed = f"{loopback_address()}:{free_port(address)}"
    web = origin.url("/").removeprefix("http://").rstrip("/")  # an HTTP server, not a member
    config = _config(
        tmp_path,
        address,
        key_file=str(_key_file(tmp_path, key)),
        parents=[parent, closed, web],
    )
    checks = await _doctor(config)
    assert checks["federation key"].ok
    good = checks[f"federation parent@{parent}"]
    assert good.ok, good
    assert "accepts this node's federation key" in good.message
    down = checks[f"federation parent@{closed}"]
    assert not down.ok
    assert "connection refused" in down.message
    assert "port" in down.hint
    other = checks[f"federation parent@{web}"]
    assert not other.ok
    assert "not a frumitcache federation endpoint" in other.message
    # One signed request, answered before any content: nothing refused, nothing opened.
    assert server.stats.requests == 1
    assert server.stats.refused == 0


async def test_a_member_with_another_key_is_named(
    tmp_path: Path, address: str, endpoint: tuple[FederationServer, str, str]
) -> None:
    server, _key, sibling = endpoint
    config = _config(tmp_path, address, key=secrets.token_hex(32), siblings=[sibling])
    check = (await _doctor(config))[f"federation sibling@{sibling}"]
    assert not check.ok
    assert "refuses this node's federation key" in check.message
    assert "same federation key" in check.hint
    assert server.stats.refused == 1


async def test_without_a_readable_key_members_are_only_dialled(
    tmp_path: Path, address: str, endpoint: tuple[FederationServer, str, str]
) -> None:
    server, _key, parent = endpoint
    missing = tmp_path / "no-such.key"
    config = _config(tmp_path, address, key_file=str(missing), parents=[parent])
    checks = await _doctor(config)
    assert not checks["federation key"].ok
    assert str(missing) in checks["federation key"].message
    dialled = checks[f"federation parent@{parent}"]
    assert dialled.ok
    assert "reachable (TCP)" in dialled.message
    # No unsigned request: the member logs no refusal for a doctor run.
    assert server.stats.requests == 0
    assert server.stats.refused == 0


async def test_the_agents_own_endpoint_is_checked_when_it_runs(
    tmp_path: Path, address: str, endpoint: tuple[FederationServer, str, str]
) -> None:
    _server, key, mine = endpoint
    host, port = mine.rsplit(":", 1)
    config = _config(tmp_path, address, key=key, listen=host, port=int(port))
    serving = (await _doctor(config, running=True))["federation endpoint"]
    assert serving.ok, serving
    assert "accepts the key" in serving.message
    # Not running: the endpoint is the port check's (free or held), not probed.
    assert "federation endpoint" not in await _doctor(config)
    # Running, but nothing serves the endpoint (started before [federation] was set).
    idle = _config(tmp_path, address, key=key, listen=address, port=free_port(address))
    silent = (await _doctor(idle, running=True))["federation endpoint"]
    assert not silent.ok
    assert "connection refused" in silent.message
    assert "restart" in silent.hint
    other = _config(tmp_path, address, key=secrets.token_hex(32), listen=host, port=int(port))
    refused = (await _doctor(other, running=True))["federation endpoint"]
    assert not refused.ok
    assert "refuses the configured federation key" in refused.message


def test_the_key_file_is_checked_like_the_site_key(tmp_path: Path, address: str) -> None:
    key = secrets.token_hex(32)
    path = _key_file(tmp_path, key)
    path.chmod(0o644)
    check = check_federation(_config(tmp_path, address, key_file=str(path)))[0]
    assert not check.ok
    assert "can read or change the federation key" in check.message
    assert check.hint == f"chmod 0600 {path}"
    path.chmod(0o600)
    assert check_federation(_config(tmp_path, address, key_file=str(path)))[0].ok
    # The agent refuses a federation key equal to its site key: so does doctor.
    site = {"key_file": str(_key_file(tmp_path, key, "site.key")), "peers": ["127.0.0.9"]}
    same = check_federation(_config(tmp_path, address, site, key_file=str(path)))[0]
    assert not same.ok
    assert "equals the site key" in same.message


def test_run_checks_adds_the_federation_port_and_checks(tmp_path: Path, address: str) -> None:
    # Free on every address, not only ours: the listen = "*" case below checks 0.0.0.0:port.
    port = free_port("0.0.0.0")  # noqa: S104 (bound and closed at once)
    config = _config(tmp_path, address, key=secrets.token_hex(32), port=port)
    names = [c.name for c in run_checks(config)]
    assert f"port tcp/{port}" in names
    assert names[-1] == "federation key"
    everywhere = _config(tmp_path, address, key=secrets.token_hex(32), listen="*", port=port)
    port_check = {c.name: c for c in run_checks(everywhere)}[f"port tcp/{port}"]
    assert port_check.ok, port_check
    assert "federation.port" in port_check.message
