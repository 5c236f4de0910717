"""Kernel limits that a LAN of many network namespaces outgrows: raised for a run, restored.

Every namespace shares one kernel, and two of its limits are the kernel's, not a namespace's,
so N Pis in namespaces hit them where N real Pis, each with its own kernel, would not:

- the per-CPU receive backlog (``net.core.netdev_max_backlog``, 1,000): each multicast or
  neighbour-discovery frame on the bridge becomes one packet per Pi in the sending CPU's
  backlog, so a 100-Pi bridge dropped frames in bursts (thousands per run in
  ``/proc/net/softnet_stat``) that a switch with a queue per port would have delivered;
- the neighbour tables (ARP and NDP; ``gc_thresh3`` = 1,024 entries for the whole kernel):
  each Pi keeps an entry per peer it talks to, N (N - 1) in all. Measured on this kernel with
  45 namespaces sending each other one IPv6 datagram: 1,024 entries resolved of 1,980, then
  "neighbor table overflow" and ``sendto`` failing with EINVAL, so a Pi could not reach some
  peers until garbage collection freed an entry. A real Pi holds ~N entries.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc/sys/net")


def wanted(nodes: int, root: Path = PROC) -> dict[Path, int]:
    """The values a LAN of ``nodes`` namespaces needs (300 backlog packets per Pi; room in
    each neighbour table for every Pi's ULA, link-local and IPv4 peers, twice over)."""
    pairs = nodes * nodes
    out = {root / "core" / "netdev_max_backlog": 300 * nodes}
    for family in ("ipv4", "ipv6"):
        for n, times in ((1, 2), (2, 4), (3, 8)):
            out[root / family / "neigh" / "default" / f"gc_thresh{n}"] = times * pairs
    return out


def raise_limits(nodes: int, root: Path = PROC) -> dict[Path, int]:
    """Raise each limit below what ``nodes`` Pis need; the old values of those raised (for
    :func:`restore`). A site of 3 Pis fits the defaults: nothing changes."""
    want = wanted(nodes, root)
    old = {path: now for path, now in ((p, int(p.read_text())) for p in want) if want[path] > now}
    # The kernel keeps gc_thresh1 <= 2 <= 3: raise the largest first, lower it last.
    for path in sorted(old, key=lambda p: p.name, reverse=True):
        path.write_text(f"{want[path]}\n")
    return old


def restore(old: dict[Path, int]) -> None:
    for path in sorted(old, key=lambda p: p.name):
        path.write_text(f"{old[path]}\n")
