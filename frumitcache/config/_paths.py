"""Where the agent keeps its files when the config leaves a path empty: per user, or the
system places when running as root."""

from __future__ import annotations

import os
from pathlib import Path


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_store_path() -> Path:
    """Where the store lives when ``store.path`` is empty."""
    if _is_root():
        return Path("/var/cache/frumitcache")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frumitcache"


def default_state_path() -> Path:
    """Where small state (site key, node id) lives when ``node.state_dir`` is empty."""
    if _is_root():
        return Path("/var/lib/frumitcache")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "frumitcache"


def default_socket_path() -> Path:
    """Where the control socket lives when ``control.socket`` is empty."""
    if _is_root():
        return Path("/run/frumitcache/agent.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "frumitcache" / "agent.sock"
    return default_state_path() / "agent.sock"
