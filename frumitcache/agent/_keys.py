"""The site key: the shared secret that admits a node to its site.

Read from ``site.key_file``; with none configured, a key is generated once in the node's state
directory, which suits a one-node site only (members of a real site must share one key).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from frumitcache.config import Config
from frumitcache.errors import ConfigError

MIN_KEY_BYTES = 16


def load_site_key(config: Config) -> bytes:
    if config.site.key_file:
        path = Path(config.site.key_file).expanduser()
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"site.key_file: cannot read {path}: {exc.strerror or exc}") from None
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"site.key_file: {path} holds {len(key)} bytes; a site key needs at least "
                f"{MIN_KEY_BYTES} (e.g. `head -c 32 /dev/urandom | base64 > {path}`)"
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
