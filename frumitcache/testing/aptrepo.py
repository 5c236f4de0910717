"""A signed Debian repository built on the spot, and real apt-get clients (tests and bench).

The repository is made of real packages (``dpkg-deb --build``), indexed with
``apt-ftparchive`` (by-hash on) and signed with a throw-away gpg key. Each :class:`AptClient`
has its own state, cache and sources, and talks to a proxy either as ``Acquire::http::Proxy``
or in the URL-prefix form. Needs the Debian tools in :data:`TOOLS`; no pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trio

TOOLS = ("apt-get", "apt-ftparchive", "dpkg-deb", "gpg", "xz", "gzip")
# name -> (size of an incompressible payload, versions published over time)
PACKAGES = {"pkga": 300_000, "pkgb": 2_000, "pkgc": 1_200_000}


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=True, capture_output=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


@dataclass
class RepoBuilder:
    """Builds and republishes the repository under ``root/debian``."""

    work: Path
    gnupghome: Path
    keyring: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.gnupghome)}

    def close(self) -> None:
        """Stop the gpg-agent of the throw-away home (by its home, never by name)."""
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env=self.env(),
            capture_output=True,
            timeout=10,
            check=False,
        )

    def deb(self, name: str, version: str, size: int) -> Path:
        """The .deb of ``name`` at ``version`` (built once per session, then copied)."""
        out = self.work / "debs" / f"{name}_{version}_all.deb"
        if out.exists():
            return out
        tree = self.work / "trees" / f"{name}-{version}"
        (tree / "DEBIAN").mkdir(parents=True)
        (tree / "usr/share" / name).mkdir(parents=True)
        (tree / "DEBIAN/control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
            f"Maintainer: frumitcache tests <tests@invalid>\nDescription: test package {name}\n"
        )
        seed = hashlib.sha256(f"{name}-{version}".encode()).digest()
        blob = bytearray()
        while len(blob) < size:
            seed = hashlib.sha256(seed).digest()
            blob += seed * 8  # cheap, deterministic, barely compressible is not needed (-Znone)
        (tree / "usr/share" / name / "blob").write_bytes(bytes(blob[:size]))
        out.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-Znone", "--root-owner-group", "--build", str(tree), str(out)])
        return out

    def publish(
        self, root: Path, versions: dict[str, str], sizes: dict[str, int] | None = None
    ) -> None:
        """(Re)publish ``root/debian`` with these package versions, signed."""
        archive = root / "debian"
        pool = archive / "pool/main"
        pool.mkdir(parents=True, exist_ok=True)
        for name, version in versions.items():
            src = self.deb(name, version, (sizes or PACKAGES)[name])
            shutil.copy(src, pool / src.name)
            for old in pool.glob(f"{name}_*_all.deb"):
                if old.name != src.name:
                    old.unlink()
        dist = archive / "dists/stable"
        binary = dist / "main/binary-amd64"
        binary.mkdir(parents=True, exist_ok=True)
        packages = run(["apt-ftparchive", "packages", "pool"], cwd=archive).stdout
        (binary / "Packages").write_bytes(packages)
        for suffix, tool in ((".gz", "gzip"), (".xz", "xz")):
            (binary / f"Packages{suffix}").write_bytes(
                run([tool, "-c", "-9"], input=packages).stdout
            )
        release = run(
            [
                "apt-ftparchive",
                "-o",
                "APT::FTPArchive::DoByHash=1",
                "-o",
                # Keep earlier by-hash files, as real archives do for a while.
                "APT::FTPArchive::By-Hash-Keep=10",
                "-o",
                "APT::FTPArchive::Release::Origin=frumitcache-tests",
                "-o",
                "APT::FTPArchive::Release::Suite=stable",
                "-o",
                "APT::FTPArchive::Release::Codename=stable",
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64",
                "-o",
                "APT::FTPArchive::Release::Components=main",
                "release",
                "dists/stable",
            ],
            cwd=archive,
        ).stdout
        for name in ("Release", "InRelease", "Release.gpg"):
            (dist / name).unlink(missing_ok=True)
        (dist / "Release").write_bytes(release)
        gpg = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
        run(
            [*gpg, "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release")],
            env=self.env(),
        )
        run(
            [
                *gpg,
                "--detach-sign",
                "--armor",
                "-o",
                str(dist / "Release.gpg"),
                str(dist / "Release"),
            ],
            env=self.env(),
        )


def new_repo_builder(work: Path) -> RepoBuilder:
    """A builder with a fresh throw-away signing key under ``work`` (tests and bench)."""
    gnupghome = work / "gnupg"
    gnupghome.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupghome)}
    run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "frumitcache tests <tests@invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
    )
    keyring = work / "test-key.gpg"
    keyring.write_bytes(run(["gpg", "--batch", "--export"], env=env).stdout)
    return RepoBuilder(work, gnupghome, keyring)


@dataclass
class AptClient:
    """One apt with its own state, cache and sources, pointed at the proxy."""

    home: Path
    conf: Path
    archive_url: str  # as written in sources.list

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["APT_CONFIG"] = str(self.conf)
        env["LC_ALL"] = "C"
        return env

    async def run(self, *args: str, limit_s: float = 60) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(limit_s):
            return await trio.run_process(
                ["apt-get", "-q", *args],
                cwd=self.home / "downloads",
                env=self.env(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    def downloaded(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.home / "downloads").glob("*.deb")}

    def candidate(self, name: str) -> str:
        out = subprocess.run(
            ["apt-cache", "policy", name],
            env=self.env(),
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout.decode()
        for line in out.splitlines():
            if "Candidate:" in line:
                return line.split(":", 1)[1].strip()
        return ""


def make_client(
    home: Path,
    keyring: Path,
    archive_url: str,
    proxy: str | None,
    extra: dict[str, str] | None = None,
) -> AptClient:
    for sub in ("state/lists/partial", "cache/archives/partial", "downloads", "etc"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "state/status").write_text("")
    (home / "etc/sources.list").write_text(f"deb [signed-by={keyring}] {archive_url} stable main\n")
    options = {
        "Dir::State": str(home / "state"),
        "Dir::State::status": str(home / "state/status"),
        "Dir::Cache": str(home / "cache"),
        "Dir::Etc::SourceList": str(home / "etc/sources.list"),
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::Etc::Parts": "/dev/null",
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": "/dev/null",
        "Dir::Etc::Trusted": "/dev/null",
        "Dir::Etc::TrustedParts": "/dev/null",
        "Dir::Log": str(home / "log"),
        "Debug::NoLocking": "1",
        "APT::Sandbox::User": "root",
        "APT::Architecture": "amd64",
        "APT::Architectures": "amd64",
        "Acquire::Languages": "none",
        "Acquire::Retries": "0",
        "Acquire::http::Proxy": proxy or "DIRECT",
        # apt looks up DNS SRV records for the hosts it connects to; tests talk to loopback
        # addresses only and must send nothing to the machine's resolver.
        "Acquire::EnableSrvRecords": "false",
        **(extra or {}),
    }
    conf = home / "apt.conf"
    conf.write_text("".join(f'{k} "{v}";\n' for k, v in options.items()))
    return AptClient(home, conf, archive_url)
