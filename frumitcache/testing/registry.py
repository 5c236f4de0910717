"""A real container registry for tests: Debian's ``docker-registry`` (CNCF distribution) on a
loopback address, and OCI image layouts built here and pushed to it with real ``skopeo``.

:func:`build_layout` writes an OCI layout holding a multi-arch index (amd64, arm64, arm/v7,
arm/v6 by default), each platform with its own config and several gzip'd tar layers (one layer
shared by all of them, as base layers are). :class:`RegistryProcess` runs the registry with its
storage in a temporary directory, optionally with token auth (its realm served by the test). The
registry counts nothing itself; :class:`CountingProxy` in the tests does that where needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/1\.[01]" (?P<status>\d{3}) (?P<bytes>\d+|-)'
)
PLATFORMS = (("amd64", ""), ("arm64", ""), ("arm", "v7"), ("arm", "v6"))
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def tools_missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(name: str, payload: bytes) -> bytes:
    """A deterministic gzip'd tar holding one file (mtime 0, no owner names)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


@dataclass
class Layout:
    """What :func:`build_layout` wrote: digests by role, every blob's bytes by digest."""

    path: Path
    index_digest: str
    manifests: dict[str, str]  # "arm/v7" → manifest digest
    layers: dict[str, list[str]]  # "arm/v7" → layer digests
    blobs: dict[str, bytes] = field(default_factory=dict)
    tag: str = ""


def build_layout(
    path: Path,
    tag: str,
    *,
    shared: bytes,
    per_platform: int = 2,
    layer_size: int = 64 * 1024,
    platforms: tuple[tuple[str, str], ...] = PLATFORMS,
    seed: bytes = b"",
    fast_random: bool = False,
) -> Layout:
    """An OCI layout at ``path`` with ``tag`` naming a multi-arch index. Each platform gets the
    ``shared`` base layer plus ``per_platform`` layers of its own (pseudo-random, so gzip does
    not shrink them; ``fast_random``: from os.urandom, for big layers)."""
    blobs_dir = path / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    out = Layout(path, "", {}, {}, tag=tag)

    def put(data: bytes) -> dict[str, object]:
        digest = _sha(data)
        (blobs_dir / digest[7:]).write_bytes(data)
        out.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    base = put(layer("base.bin", shared))
    entries = []
    for arch, variant in platforms:
        key = f"{arch}/{variant}" if variant else arch
        own = []
        for i in range(per_platform):
            payload = (
                os.urandom(layer_size)
                if fast_random
                else _stream(seed + f"{key}/{i}".encode(), layer_size)
            )
            own.append(put(layer(f"{arch}{variant}-{i}.bin", payload)))
        layers = [base, *own]
        config = {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_sha(b"") for _ in layers]},
        }
        if variant:
            config["variant"] = variant
        cfg = put(json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **cfg},
            "layers": [{"mediaType": OCI_LAYER, **d} for d in layers],
        }
        m = put(json.dumps(manifest, sort_keys=True).encode())
        platform = {
            "architecture": arch,
            "os": "linux",
            **({"variant": variant} if variant else {}),
        }
        entries.append({"mediaType": OCI_MANIFEST, **m, "platform": platform})
        out.manifests[key] = str(m["digest"])
        out.layers[key] = [str(d["digest"]) for d in layers]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    idx = put(json.dumps(index, sort_keys=True).encode())
    out.index_digest = str(idx["digest"])
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_INDEX,
                **idx,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(top))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return out


def _stream(seed: bytes, size: int) -> bytes:
    """``size`` pseudo-random bytes from ``seed`` (SHA-256 in counter mode: incompressible)."""
    parts = []
    block = hashlib.sha256(seed).digest()
    for i in range((size + 31) // 32):
        parts.append(hashlib.sha256(block + i.to_bytes(8, "big")).digest())
    return b"".join(parts)[:size]


def skopeo_push(layout: Path, tag: str, dest: str, *, creds: str | None = None) -> None:
    """``skopeo copy --all`` of the layout's ``tag`` to ``docker://dest`` (plain http);
    ``creds`` ("user:password") for a registry with token auth."""
    subprocess.run(
        [
            "skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
            *(["--dest-creds", creds] if creds else []),
            "--preserve-digests", f"oci:{layout}:{tag}", f"docker://{dest}",
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


#: What docker-registry needs in its environment besides the caller's (no tracing exporter).
REGISTRY_ENV = {"OTEL_TRACES_EXPORTER": "none"}


class RegistryProcess:
    """``docker-registry serve`` on ``address:port`` with its storage under ``root``.

    ``token_realm`` turns on token auth: the registry then wants a JWT signed by the key whose
    certificate is ``token_cert`` (issuer ``frumitcache-test``, service ``test-registry``).
    ``proxy_remote`` makes it a pull-through cache of that registry (a central mirror)."""

    def __init__(
        self,
        root: Path,
        address: str,
        port: int,
        *,
        token_realm: str | None = None,
        token_cert: Path | None = None,
        proxy_remote: str | None = None,
    ) -> None:
        self.root = root
        self.proxy_remote = proxy_remote  # a pull-through cache of this registry URL
        self.address = address
        self.port = port
        self.token_realm = token_realm
        self.token_cert = token_cert
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "http:",
            f"  addr: {self.host}",
        ]
        if self.proxy_remote is not None:
            lines += ["proxy:", f"  remoteurl: {self.proxy_remote}"]
        if self.token_realm is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token_realm}",
                "    service: test-registry",
                "    issuer: frumitcache-test",
                f"    rootcertbundle: {self.token_cert}",
            ]
        return "\n".join(lines) + "\n"

    def argv(self) -> list[str]:
        """Write the config; the command that serves it (for a caller that starts it itself,
        in a network namespace: log to :attr:`log_path`, set :attr:`proc`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(self._config())
        return ["docker-registry", "serve", str(config)]

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def start(self) -> None:
        argv = self.argv()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **REGISTRY_ENV}
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401 with token auth: it is up
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start within 20 s")

    def requests(self) -> list[tuple[str, str, int]]:
        """Every request the registry served so far: (method, path, status), from its access
        log — the ground truth of what crossed the "uplink"."""
        return [
            (m["method"], m["path"], int(m["status"])) for m in _ACCESS.finditer(self.log_text())
        ]

    def bytes_sent(self, path: str) -> int:
        """Body bytes the registry wrote for GETs of ``path`` (query ignored), aborted ones too."""
        return sum(
            int(m["bytes"]) if m["bytes"] != "-" else 0
            for m in _ACCESS.finditer(self.log_text())
            if m["method"] == "GET" and m["path"].split("?")[0] == path
        )

    def bytes_sent_since(self, start: int) -> int:
        """Body bytes of every GET from entry ``start`` of the access log on."""
        found = list(_ACCESS.finditer(self.log_text()))[start:]
        return sum(int(m["bytes"]) for m in found if m["method"] == "GET" and m["bytes"] != "-")

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
