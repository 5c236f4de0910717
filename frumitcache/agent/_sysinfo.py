"""What a node tells its site about itself: board model, RAM, free disk, link speed.

Read from /proc and /sys where Linux has them; a value that cannot be read is 0 or "" rather
than an error, since the figures only rank seeder candidates and inform the scheduler.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from frumitcache.config import Config
from frumitcache.site import MemberInfo, member_from_config


def board_model() -> str:
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            continue
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def ram_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def free_disk_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def link_mbit() -> int:
    """The fastest up link's speed in Mbit/s (0 when unknown: loopback, Wi-Fi, containers)."""
    best = 0
    try:
        interfaces = list(Path("/sys/class/net").iterdir())
    except OSError:
        return 0
    for iface in interfaces:
        if iface.name == "lo":
            continue
        try:
            if (iface / "operstate").read_text().strip() != "up":
                continue
            best = max(best, int((iface / "speed").read_text().strip()))
        except (OSError, ValueError):
            continue
    return best


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def local_member(
    config: Config, node_id: str, store_root: Path, *, peer_port: int, swarm_port: int
) -> MemberInfo:
    """What this node advertises: its config, with what it did not set measured here."""
    member = member_from_config(
        config,
        node_id=node_id,
        ram_bytes=ram_bytes(),
        free_disk_bytes=free_disk_bytes(store_root),
    )
    return dataclasses.replace(
        member,
        peer_port=peer_port,
        swarm_port=swarm_port,
        model=member.model or board_model(),
        link_mbit=member.link_mbit or link_mbit(),
        load=load_average(),
    )
