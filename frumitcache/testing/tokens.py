"""A Docker-registry token service for tests: the realm of a :class:`RegistryProcess` with token
auth, signing RS256 JWTs with a throw-away key made by ``openssl`` (no Python crypto needed).

The registry trusts the self-signed certificate (``cert``) as its root bundle and finds it in
each token's ``x5c`` header. Anonymous requests get ``pull`` on repositories under
``public/``; a request with the Basic credentials ``user``/``password`` gets pull and push on
everything. ``fail_with`` makes the service answer that status instead (403, 429, ...);
``token_lifetime_s`` is the JWT's real ``exp`` while ``expires_in`` is what the answer claims,
so a test can hand out tokens that die early. Every request is recorded (``requests``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ISSUER = "frumitcache-test"
SERVICE = "test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    scope: str
    authorized: bool  # the right Basic credentials came with it
    had_credentials: bool


class TokenService:
    def __init__(self, root: Path, address: str, *, user: str, password: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "token.key"
        self.cert = root / "token.crt"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=frumitcache-test-token", "-keyout", str(self.key),
                "-out", str(self.cert),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
        self._x5c = base64.b64encode(der).decode()
        self.user, self.password = user, password
        self.address = address
        self.requests: list[TokenRequest] = []
        self.fail_with: int | None = None
        self.token_lifetime_s = 300
        self.expires_in = 300
        self._server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://{self.address}:{self._server.server_address[1]}/token"

    def sign(self, claims: dict[str, object]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64(signature)}"

    def _grant(self, scope: str, authorized: bool) -> list[dict[str, object]]:
        parts = scope.split(":")
        if len(parts) != 3 or parts[0] != "repository":
            return []
        name, actions = parts[1], parts[2].split(",")
        if authorized:
            return [{"type": "repository", "name": name, "actions": actions}]
        if name.startswith("public/"):
            return [{"type": "repository", "name": name, "actions": ["pull"]}]
        return []

    def _answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        query = parse_qs(urlsplit(path).query)
        scopes = query.get("scope", [])
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        authorized = authorization == expected
        self.requests.append(TokenRequest(" ".join(scopes), authorized, authorization is not None))
        if self.fail_with is not None:
            return self.fail_with, b'{"details": "refused by the test"}'
        if authorization is not None and not authorized:
            return 401, b'{"details": "bad credentials"}'
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": self.user if authorized else "",
            "aud": SERVICE,
            "exp": now + self.token_lifetime_s,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [g for s in scopes for g in self._grant(s, authorized)],
        }
        body = {"token": self.sign(claims), "expires_in": self.expires_in}
        return 200, json.dumps(body).encode()

    def start(self) -> None:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = service._answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.address, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
