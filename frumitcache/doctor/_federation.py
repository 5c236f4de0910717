"""``frumitcache doctor``'s federation checks, run when ``[federation]`` has a key:

- ``federation key``       the key file is readable by the service only (as the site key) and
  the key differs from the site key (the agent refuses to start otherwise);
- ``federation endpoint``  with the agent running: its endpoint (``federation.listen``, port
  ``federation.port``) answers a request signed with the key;
- ``federation parent@host:port`` / ``sibling@...``  each configured member answers a request
  signed with the key.

The probe is one signed ``GET /federation/v1/object`` that names no object. An endpoint holding
the same key answers 400 (not a federation request) before any content is opened, so the probe
fetches nothing; one with another key (or a clock too far off) answers 403 marked
``X-Frumit-Federation``, the mark a child's links read too; anything else is not a frumitcache
federation endpoint. When the key cannot be read here, a member is only dialled (TCP): an
unsigned request would be logged as a refusal on the member. Standard library only
(``http.client``), like the rest of doctor.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frumitcache._signing import HEADER as AUTH_HEADER
from frumitcache._signing import sign
from frumitcache.config import Config, split_member
from frumitcache.doctor._access import Check, ServiceUser, check_secret_file

#: The federation's object path and refusal mark (``frumitcache.federation._wire``; a test pins
#: them equal: doctor does not import the federation, which needs httpx).
PROBE_PATH = "/federation/v1/object"
REFUSED_HEADER = "x-frumit-federation"


@dataclass(frozen=True, slots=True)
class Probe:
    """What a federation member answered: ``status`` (None: no HTTP answer, or only dialled),
    ``refused`` (the federation's refusal mark was on it), ``error`` (why there was none)."""

    status: int | None
    refused: bool = False
    error: str = ""


def probe_member(
    host: str,
    port: int,
    key: bytes | None,
    timeout_s: float,
    *,
    clock: Callable[[], float] = time.time,
) -> Probe:
    """One signed probe of ``host:port`` (see the module docstring); ``key`` None: dial only."""
    if key is None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            return Probe(None, error=_why(exc, timeout_s))
        return Probe(None)
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    auth = sign(key, b"GET", PROBE_PATH.encode(), clock()).decode()
    try:
        conn.request("GET", PROBE_PATH, headers={AUTH_HEADER.decode(): auth})
        response = conn.getresponse()
        return Probe(response.status, response.getheader(REFUSED_HEADER) is not None)
    except http.client.HTTPException as exc:
        return Probe(None, error=f"no HTTP answer ({type(exc).__name__})")
    except OSError as exc:
        return Probe(None, error=_why(exc, timeout_s))
    finally:
        conn.close()


def _why(exc: OSError, timeout_s: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return exc.strerror or str(exc) or type(exc).__name__


def check_federation(
    config: Config, user: ServiceUser | None = None, *, agent_running: bool = False
) -> list[Check]:
    """The federation checks for ``config`` (none when federation is off)."""
    fed = config.federation
    if not fed.enabled:
        return []
    key_check, key = _check_key(config, user)
    checks = [key_check]
    timeout_s = fed.connect_timeout_s
    if agent_running:
        listen = fed.listen or config.node.address
        host = config.node.address if listen == "*" else listen
        checks.append(_endpoint_check(host, fed.port, probe_member(host, fed.port, key, timeout_s)))
    for role, members in (("sibling", fed.siblings), ("parent", fed.parents)):
        for member in members:
            host, port = split_member(member)
            probe = probe_member(host, port, key, timeout_s)
            checks.append(_member_check(role, host, port, probe))
    return checks


def _check_key(config: Config, user: ServiceUser | None) -> tuple[Check, bytes | None]:
    """The key check, and the key when this process can read it (to sign the probes)."""
    fed = config.federation
    name = "federation key"
    if fed.key:
        check, key = Check(name, True, "federation.key is set in the config"), fed.key.encode()
    else:
        path = Path(fed.key_file).expanduser()
        check = check_secret_file(name, "federation.key_file", path, user)
        try:
            key = path.read_bytes().strip()
        except OSError:
            return check, None
    site_file = config.site.key_file
    if check.ok and site_file and (config.site.peers or config.site.discovery):
        try:
            same = Path(site_file).expanduser().read_bytes().strip() == key
        except OSError:
            same = False  # the site key check says why
        if same:
            check = Check(
                name,
                False,
                "the federation key equals the site key: the agent refuses to start",
                "give the federation its own key: openssl rand -hex 32 (on every agent of "
                "every federated site)",
            )
    return check, key


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoint_check(host: str, port: int, probe: Probe) -> Check:
    name = "federation endpoint"
    where = _where(host, port)
    if probe.status == 400:
        return Check(name, True, f"the agent serves it on {where} and accepts the key")
    if probe.status is None and not probe.error:
        return Check(name, True, f"the agent listens on {where} (the key was not tried)")
    if probe.refused:
        return Check(
            name,
            False,
            f"the agent on {where} refuses the configured federation key",
            "the agent runs with another key: systemctl restart frumitcache",
        )
    if probe.status is None:
        return Check(
            name,
            False,
            f"the agent runs but {where} does not answer: {probe.error}",
            "restart the agent to apply [federation] (systemctl restart frumitcache); "
            "journalctl -u frumitcache says why federation.listen/port could not be bound",
        )
    return Check(
        name,
        False,
        f"{where} answers HTTP {probe.status}: not this agent's federation endpoint",
        "another service holds federation.port? see the port check",
    )


def _member_check(role: str, host: str, port: int, probe: Probe) -> Check:
    where = _where(host, port)
    name = f"federation {role}@{where}"
    if probe.status == 400:
        return Check(name, True, "accepts this node's federation key")
    if probe.status is None and not probe.error:
        return Check(
            name,
            True,
            "reachable (TCP); the key was not tried, as it cannot be read here",
        )
    if probe.refused:
        return Check(
            name,
            False,
            "refuses this node's federation key",
            "every agent of every federated site needs the same federation key, and clocks "
            "within site.max_clock_skew_s of each other (NTP)",
        )
    if probe.status is None:
        return Check(
            name,
            False,
            probe.error,
            f"is an agent with [federation] running there, and port {port} open between the "
            "sites (VPN, firewall)?",
        )
    return Check(
        name,
        False,
        f"answers HTTP {probe.status}: not a frumitcache federation endpoint",
        f"check federation.{role}s: the endpoint is the member's federation.port (3147)",
    )
