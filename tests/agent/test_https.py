"""HTTPS repositories through real agents: real TLS origin, real apt-get, real CONNECT tunnels.

The origin is the real test server speaking TLS with a server certificate for its loopback IP,
signed by a throw-away CA made with the ``openssl`` CLI in the test. Agents trust that CA
through ``SSL_CERT_FILE`` in their environment (the origin fetcher's transport honours it).

- apt-cacher-ng's remapping (``http://HTTPS///host:port/...``), both as an absolute-form
  request through ``Acquire::http::Proxy`` and in the URL-prefix form: apt gets the packages,
  the agent fetched them over TLS and cached them (the origin serves each .deb once);
- through a 2-agent site: the client's agent is not the seeder, the seeder does the TLS fetch;
- CONNECT to an allow-listed host tunnels TLS end to end (not cached, counted as uplink bytes);
  CONNECT elsewhere is refused with 403;
- an origin certificate the agent does not trust: 502 with a clear body, nothing cached.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.aptrepo import PACKAGES, AptClient, RepoBuilder, make_client
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer, server_ssl_context
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder

pytestmark = pytest.mark.slow

ALL = tuple(sorted(PACKAGES))
APT_PORT = 3142


# --- certificates --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tls:
    """A throw-away CA and a server certificate for ``address`` signed by it."""

    address: str  # the origin's loopback IP, the certificate's subjectAltName
    ca: Path  # the CA certificate (PEM): what a client must trust
    cert: Path  # the server certificate (PEM)
    key: Path  # its private key (PEM)

    def server_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.cert, self.key)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (certificate, key) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", f"/CN=frumitcache test CA {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path], address: str) -> Tls:
    """A server certificate for the IP ``address`` (subjectAltName IP:...), signed by ``ca``."""
    ca_cert, ca_key = ca
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        f"subjectAltName=IP:{address}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={address}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        cwd=directory,
    )  # fmt: skip
    return Tls(address, ca_cert, cert, key)


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    directory = tmp_path / "tls"
    return make_server_cert(directory, make_ca(directory, "ca"), loopback_address())


# --- helpers -------------------------------------------------------------------------------


async def tls_origin(
    nursery: trio.Nursery, tls: Tls, root: Path, context: ssl.SSLContext | None = None
) -> OriginServer:
    """The test origin serving ``root`` over TLS on the certificate's address."""
    server = OriginServer(root)

    async def serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await server.serve(
            tls.address, ssl_context=context or tls.server_context(), task_status=task_status
        )

    await nursery.start(serve)
    return server


def apt_settings(authority: str) -> dict[str, dict[str, object]]:
    return {
        "apt": {
            "enabled": True,
            "port": APT_PORT,
            "allowed_hosts": [authority],
            "connect_allowed_hosts": [authority],
        },
        "origin": {"connect_timeout_s": 5.0, "read_timeout_s": 10.0, "retries": 1},
    }


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "hash sum mismatch" not in out.lower(), out
    return out


async def raw_request(address: str, request: bytes) -> tuple[int, bytes]:
    """Send one request to the proxy on a fresh connection; (status, rest of the answer)."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(address, APT_PORT)
        async with stream:
            await stream.send_all(request)
            answer = bytearray()
            while chunk := await stream.receive_some(65536):
                answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), body


async def get(address: str, target: str) -> tuple[int, bytes]:
    return await raw_request(
        address, f"GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
    )


async def metrics(address: str) -> dict[str, float]:
    status, body = await get(address, "/metrics")
    assert status == 200, body
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def pool_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "debian/pool/main").glob("*.deb")}


async def update_and_download(client: AptClient) -> None:
    with trio.fail_after(120):
        ok(await client.run("update"))
        ok(await client.run("download", *ALL))


# --- tests ---------------------------------------------------------------------------------


async def test_https_remapping_fetches_over_tls_and_caches(
    repo_builder: RepoBuilder, tls: Tls, tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "origin"
    repo_builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin = await tls_origin(nursery, tls, root)
    authority = f"{tls.address}:{origin.port}"
    agent = AgentProcess(
        tmp_path / "agent",
        address=loopback_address(),
        settings=apt_settings(authority),
        env={"SSL_CERT_FILE": str(tls.ca)},
    )
    try:
        await agent.start()
        # Absolute form through Acquire::http::Proxy: GET http://HTTPS///host:port/debian/...
        through_proxy = make_client(
            tmp_path / "client-proxy",
            repo_builder.keyring,
            f"http://HTTPS///{authority}/debian",
            f"http://{agent.address}:{APT_PORT}",
        )
        await update_and_download(through_proxy)
        want = pool_files(root)
        assert through_proxy.downloaded() == want
        for name in want:
            assert origin.stats.requests[f"/debian/pool/main/{name}"] == 1, origin.stats.requests
        after_first = await metrics(agent.address)
        assert after_first['frumitcache_apt_bytes_served_total{source="uplink"}'] >= sum(
            len(data) for data in want.values()
        )

        # URL-prefix form, no proxy setting: GET /HTTPS///host:port/debian/... names the same
        # upstream URLs, so the .debs come from the agent's store.
        prefixed = make_client(
            tmp_path / "client-prefix",
            repo_builder.keyring,
            f"http://{agent.address}:{APT_PORT}/HTTPS///{authority}/debian",
            None,
        )
        await update_and_download(prefixed)
        assert prefixed.downloaded() == want
        for name in want:
            assert origin.stats.requests[f"/debian/pool/main/{name}"] == 1, origin.stats.requests
        after_second = await metrics(agent.address)
        assert after_second["frumitcache_apt_cache_hits_total"] >= len(want)
        assert after_second['frumitcache_apt_bytes_served_total{source="local"}'] >= sum(
            len(data) for data in want.values()
        )
        store = (await AgentClient(agent.socket).status()).store
        assert store["objects"] >= len(want), store
        # An origin 404 over TLS stays a 404 (with the agent's strict exception groups on old
        # trio, an error before the fetch started once came out as a 500).
        missing = f"http://HTTPS///{authority}/debian/pool/main/nothere_1.0_all.deb"
        status, body = await get(agent.address, missing)
        assert status == 404, body
        assert f"https://{authority}/debian/pool/main/nothere_1.0_all.deb" in body.decode()
        # Every request reached the origin over TLS: the origin speaks nothing else.
        assert origin.tls
        assert origin.stats.total_requests > 0
    finally:
        agent.kill()


async def test_connect_tunnels_tls_end_to_end_and_refuses_other_hosts(
    tls: Tls, tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "origin"
    (root / "files").mkdir(parents=True)
    data = bytes(range(256)) * 4096  # 1 MiB
    (root / "files/blob.bin").write_bytes(data)
    origin = await tls_origin(nursery, tls, root)
    authority = f"{tls.address}:{origin.port}"
    agent = AgentProcess(
        tmp_path / "agent", address=loopback_address(), settings=apt_settings(authority)
    )
    try:
        await agent.start()
        # The client, not the agent, checks the origin's certificate: the tunnel is opaque.
        client_ctx = ssl.create_default_context(cafile=str(tls.ca))
        transport = httpx.AsyncHTTPTransport(
            proxy=httpx.Proxy(f"http://{agent.address}:{APT_PORT}"), verify=client_ctx
        )
        with trio.fail_after(30):
            async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
                for _ in range(2):
                    response = await client.get(origin.url("/files/blob.bin"))
                    assert response.status_code == 200
                    assert response.content == data
        # Not cached: the origin answered both requests itself.
        assert origin.stats.requests["/files/blob.bin"] == 2
        seen = await metrics(agent.address)
        assert seen['frumitcache_apt_requests_total{method="CONNECT",status="200"}'] >= 1
        assert seen["frumitcache_apt_connect_tunnels_total"] >= 1
        assert seen["frumitcache_apt_connect_bytes_total"] >= 2 * len(data)
        assert seen['frumitcache_apt_bytes_served_total{source="uplink"}'] >= 2 * len(data)
        assert seen["frumitcache_apt_cache_hits_total"] == 0
        store = (await AgentClient(agent.socket).status()).store
        assert store["objects"] == store["partial_objects"] == 0, store

        # A host (here: a port) not on apt.connect_allowed_hosts is refused before any byte.
        other = f"{tls.address}:{origin.port + 1}"
        status, body = await raw_request(
            agent.address, f"CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n".encode()
        )
        assert status == 403, body
        assert b"apt.connect_allowed_hosts" in body
        seen = await metrics(agent.address)
        assert seen['frumitcache_apt_requests_total{method="CONNECT",status="403"}'] == 1
    finally:
        agent.kill()


async def test_untrusted_origin_certificate_is_a_502_and_nothing_is_cached(
    repo_builder: RepoBuilder, tls: Tls, tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "origin"
    repo_builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin = await tls_origin(nursery, tls, root)
    authority = f"{tls.address}:{origin.port}"
    # The agent trusts another throw-away CA only, not the one that signed the origin's cert.
    other_ca, _ = make_ca(tmp_path / "other-ca", "other")
    agent = AgentProcess(
        tmp_path / "agent",
        address=loopback_address(),
        settings=apt_settings(authority),
        env={"SSL_CERT_FILE": str(other_ca)},
    )
    try:
        await agent.start()
        deb = next(iter(pool_files(root)))
        target = f"http://HTTPS///{authority}/debian/pool/main/{deb}"
        for _ in range(2):  # the second time too: no copy was kept
            status, body = await get(agent.address, target)
            assert status == 502, body
            text = body.decode().lower()
            assert "certificate" in text, body
            assert f"https://{authority}/debian/pool/main/{deb}" in body.decode()
        client = make_client(
            tmp_path / "client",
            repo_builder.keyring,
            f"http://HTTPS///{authority}/debian",
            f"http://{agent.address}:{APT_PORT}",
        )
        with trio.fail_after(60):
            update = await client.run("update")
        out = (update.stdout + update.stderr).decode(errors="replace")
        assert "502" in out, out
        # The TLS handshake failed, so no HTTP request ever reached the origin.
        assert origin.stats.total_requests == 0
        seen = await metrics(agent.address)
        assert seen["frumitcache_apt_cache_hits_total"] == 0
        assert seen.get('frumitcache_apt_bytes_served_total{source="uplink"}', 0) == 0
        store = (await AgentClient(agent.socket).status()).store
        assert store["objects"] == store["partial_objects"] == store["bytes_used"] == 0, store
    finally:
        agent.kill()


async def test_site_client_at_a_non_seeder_gets_https_packages_fetched_by_the_seeder(
    repo_builder: RepoBuilder, tls: Tls, tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "origin"
    repo_builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin = await tls_origin(nursery, tls, root)
    authority = f"{tls.address}:{origin.port}"
    site = LoopbackSite(
        tmp_path / "site", 2, settings=apt_settings(authority), env={"SSL_CERT_FILE": str(tls.ca)}
    )
    try:
        await site.start()
        seeder = await wait_for_seeder(site)
        member = next(a for a in site.agents if a.settings["node"]["name"] != seeder)
        client = make_client(
            tmp_path / "client",
            repo_builder.keyring,
            f"http://HTTPS///{authority}/debian",
            f"http://{member.address}:{APT_PORT}",
        )
        await update_and_download(client)
        want = pool_files(root)
        assert client.downloaded() == want
        for name in want:
            assert origin.stats.requests[f"/debian/pool/main/{name}"] == 1, origin.stats.requests
        # The seeder's origin fetcher did the TLS fetches; the member's never reached the origin.
        fetched = {
            agent.settings["node"]["name"]: (await AgentClient(agent.socket).status()).origin
            for agent in site.agents
        }
        assert fetched[seeder]["bytes_received"] >= sum(map(len, want.values())), fetched
        assert fetched[member.settings["node"]["name"]].get("bytes_received", 0) == 0, fetched
    finally:
        site.kill()


async def test_origin_process_serves_https_with_tls_cert_and_key(tls: Tls, tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www/hello.txt").write_bytes(b"hello over TLS\n")
    argv = [
        sys.executable, "-m", "frumitcache.testing.origin", "--address", tls.address,
        "--port", "0", "--dir", str(tmp_path / "www"),
        "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        with trio.fail_after(30):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            port = json.loads(line)["port"]
            verify = ssl.create_default_context(cafile=str(tls.ca))
            async with httpx.AsyncClient(verify=verify, trust_env=False) as client:
                response = await client.get(f"https://{tls.address}:{port}/hello.txt")
                stats = (await client.get(f"https://{tls.address}:{port}/_stats")).json()
            # A client that does not trust the CA fails the handshake.
            async with httpx.AsyncClient(trust_env=False) as untrusting:
                with pytest.raises(httpx.ConnectError):
                    await untrusting.get(f"https://{tls.address}:{port}/hello.txt")
        assert response.status_code == 200
        assert response.content == b"hello over TLS\n"
        assert stats["requests"] == {"/hello.txt": 1}
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
