"""The site key: the shared secret that admits a node to its site.

Read from ``site.key_file``; with none configured, a key is generated once in the node's state
directory, which suits a one-node site only (members of a real site must share one key).

A key file others can read is no secret: a world-readable one is refused, a group-readable one
is started with a warning (the group must not be the control socket's, whose members are
ordinary users). A key of less than 16 bytes of material (after hex or base64 decoding, as
``openssl rand -hex|-base64`` writes them) is refused.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from pathlib import Path

from frumitcache._log import get_logger
from frumitcache.config import Config
from frumitcache.errors import ConfigError

MIN_KEY_BYTES = 16

log = get_logger("agent")
_HEX = re.compile(rb"[0-9a-fA-F]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")


def key_material(key: bytes) -> int:
    """Bytes of secret in ``key``: hex and base64 texts count what they encode."""
    if _HEX.fullmatch(key) and len(key) % 2 == 0:
        return len(key) // 2
    if _BASE64.fullmatch(key) and len(key) % 4 == 0:
        try:
            return len(base64.b64decode(key.replace(b"-", b"+").replace(b"_", b"/"), validate=True))
        except (binascii.Error, ValueError):
            pass
    return len(key)


def _check_mode(path: Path, mode: int, name: str = "site.key_file") -> None:
    if mode & stat.S_IROTH:
        raise ConfigError(
            f"{name}: {path} is readable by every user (mode {stat.S_IMODE(mode):04o}); "
            f"make it readable by the agent's user only: chmod 0600 {path}"
        )
    if mode & stat.S_IRGRP:
        log.warning(
            "key.group-readable",
            path=str(path),
            mode=f"{stat.S_IMODE(mode):04o}",
            detail=f"members of the file's group hold the {name.split('.')[0]} key; chmod 0600 it",
        )


def load_site_key(config: Config) -> bytes:
    if config.site.key_file:
        path = Path(config.site.key_file).expanduser()
        try:
            with path.open("rb") as f:
                _check_mode(path, os.fstat(f.fileno()).st_mode)
                key = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"site.key_file: cannot read {path}: {exc.strerror or exc}") from None
        if key_material(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"site.key_file: {path} holds {key_material(key)} bytes of key; a site key "
                f"needs at least {MIN_KEY_BYTES} (e.g. `openssl rand -base64 32 > {path}`)"
            )
        return key
    path = config.state_path / "site.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return key


def load_federation_key(config: Config) -> bytes:
    """The federation key (``federation.key`` or ``federation.key_file``), checked like a site
    key and refused when it equals this node's site key: a site's compromise must not open the
    federation, nor the federation a site."""
    fed = config.federation
    if fed.key:
        key = fed.key.encode()
    else:
        path = Path(fed.key_file).expanduser()
        try:
            with path.open("rb") as f:
                _check_mode(path, os.fstat(f.fileno()).st_mode, "federation.key_file")
                key = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"federation.key_file: cannot read {path}: {exc.strerror or exc}"
            ) from None
        if key_material(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"federation.key_file: {path} holds {key_material(key)} bytes of key; it needs "
                f"at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32 > {path}`)"
            )
    if (config.site.peers or config.site.discovery) and key == load_site_key(config):
        raise ConfigError("federation key: must differ from the site key (site.key_file)")
    return key
