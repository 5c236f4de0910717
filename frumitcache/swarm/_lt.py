"""libtorrent plumbing of the swarm: the session's settings and address filters, one chunk
torrent's record, waiting for a download to finish and letting it seed on from the store.

:class:`~frumitcache.swarm.Swarm` decides what to seed and fetch; this module is how libtorrent
is told (see shared/LIBTORRENT.md for the measured reasons behind each setting).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libtorrent as lt
import trio

from frumitcache.config import SwarmConfig
from frumitcache.errors import PeerError

# Whole address ranges, for ip_filter rules (not addresses anything binds to).
_V4_FIRST, _V4_LAST = str(ipaddress.IPv4Address(0)), "255.255.255.255"
_V6_FIRST, _V6_LAST = str(ipaddress.IPv6Address(0)), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

_ALERTS = (
    lt.alert.category_t.status_notification
    | lt.alert.category_t.error_notification
    | lt.alert.category_t.storage_notification
    | lt.alert.category_t.peer_notification
    | lt.alert.category_t.ip_block_notification
)


@dataclass(frozen=True, slots=True)
class ChunkStatistics:
    uploaded: int
    downloaded: int
    seeding: bool


@dataclass(frozen=True, slots=True)
class SwarmStatistics:
    """Payload bytes moved by this node's session since it started."""

    uploaded: int
    downloaded: int
    chunks: dict[bytes, ChunkStatistics]
    hash_failures: int
    #: Peers libtorrent banned for sending data that failed its hash check.
    banned_peers: tuple[str, ...]
    #: Chunks whose store file failed a hash check while being seeded (bit rot or tampering).
    corrupt_chunks: tuple[bytes, ...]


@dataclass(eq=False)
class Torrent:
    """One chunk's torrent in the session; the events are set by the alert pump."""

    digest: bytes
    handle: Any
    seeding: bool
    finished: trio.Event = field(default_factory=trio.Event)
    flushed: trio.Event = field(default_factory=trio.Event)
    removed: trio.Event = field(default_factory=trio.Event)
    #: Set when libtorrent answered a ``rename_file`` (``error`` says if it failed).
    renamed: trio.Event = field(default_factory=trio.Event)
    error: str = ""
    retiring: bool = False
    #: trio time the download's verified bytes were last seen to grow (by wait_finished).
    progressed_at: float = field(default_factory=trio.current_time)

    def release(self) -> None:
        """The session is gone: nobody waits on this torrent any more."""
        self.removed.set()
        self.finished.set()
        self.flushed.set()
        self.renamed.set()


def session_settings(address: str, port: int, config: SwarmConfig) -> dict[str, Any]:
    """The settings pack of a closed-LAN session (see the module docstring for the why)."""
    host = f"[{address}]" if ":" in address else address
    return {
        "listen_interfaces": f"{host}:{port}",
        "outgoing_interfaces": address,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        # A dial made before the other side added the torrent must be retried soon.
        "min_reconnect_time": 1,
        "peer_connect_timeout": 3,
        "active_downloads": -1,
        "active_seeds": -1,
        "active_limit": -1,
        "active_checking": -1,
        # Every member is trusted: unchoke all at once. The default 8 slots are shared by all
        # chunk torrents, so interested peers waited for the 15 s rechoke.
        "unchoke_slots_limit": -1,
        "unchoke_interval": 1,
        "max_queued_disk_bytes": config.max_queued_disk_bytes,
        "upload_rate_limit": config.upload_rate,
        "download_rate_limit": config.download_rate,
        "alert_mask": int(_ALERTS),
        "alert_queue_size": 10000,
        "user_agent": "frumitcache",
        "smooth_connects": False,
        "connection_speed": 200,
        # Dial in plaintext: by default every dial opens with the obfuscated handshake (a
        # 768-bit Diffie-Hellman exchange, then RC4) only to settle on plaintext, once per
        # chunk torrent per peer. It hides nothing here (the chunk hashes and the site's
        # admission do the work), and a DH costs a Pi 1 far more than this box. Incoming stays
        # pe_enabled so a member that still dials obfuscated is answered.
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
    }


def peer_class_filter() -> Any:
    """Every address in the global peer class: without this, libtorrent exempts LAN (and
    loopback) peers from every rate limit."""
    f = lt.ip_filter()
    gid = 1 << int(lt.session.global_peer_class_id)
    f.add_rule(_V4_FIRST, _V4_LAST, gid)
    f.add_rule(_V6_FIRST, _V6_LAST, gid)
    return f


def member_filter(members: Iterable[str] | None, own: str) -> Any:
    """The IP filter admitting only ``members`` and this node (``None``: everyone)."""
    f = lt.ip_filter()
    if members is not None:
        f.add_rule(_V4_FIRST, _V4_LAST, 1)
        f.add_rule(_V6_FIRST, _V6_LAST, 1)
        for ip in {*members, own}:
            f.add_rule(ip, ip, 0)
    return f


def add_params(data: bytes, save_path: Path, flags: int) -> Any:
    """The add_torrent_params of a chunk torrent (``data``: its bencoded metadata)."""
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(data)
    atp.save_path = str(save_path)
    # No PEX: peers are dialled only as the catalogue says (this keeps fetchers off the
    # seeder for chunks not assigned to them).
    atp.flags = (
        (int(atp.flags) | flags | int(lt.torrent_flags.disable_pex))
        & ~int(lt.torrent_flags.auto_managed)
        & ~int(lt.torrent_flags.paused)
    )
    return atp


def drain(sock: socket.socket) -> None:
    """Empty the alert pump's wake-up socket (non-blocking)."""
    with contextlib.suppress(BlockingIOError):
        while sock.recv(4096):
            pass


def unlink_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    # Two stats of a local file: cheaper than a worker-thread hop on a Pi.
    return a.samefile(b)


async def seed_on(t: Torrent, download: Path, path: Path) -> bool:
    """Seed on with a finished download's torrent from ``path``, the store's name of the
    file it downloaded to; ``False`` (nothing changed) when ``path`` is another file.

    libtorrent's ``rename_file`` onto a second name of the same file moves nothing (POSIX
    rename between hard links of one file is a no-op): reads go on from ``path``, and the
    torrent's peers stay connected. Its pieces were verified as they came (and the caller
    read the file back); libtorrent does not hash them again on upload, as in seed mode."""
    try:
        if not _same_file(download, path):
            return False
        t.handle.rename_file(0, str(path))
    except (OSError, RuntimeError):
        return False
    with trio.move_on_after(10):
        await t.renamed.wait()
    t.seeding = t.renamed.is_set() and not t.error
    return t.seeding


async def wait_finished(
    t: Torrent, dial: Callable[[bytes], None], stall_timeout: float, *, sample_s: float = 1.0
) -> None:
    """Until ``t`` finished downloading (the alert pump sets ``t.finished``).

    Its holders are dialled once here (:meth:`Swarm.add_holders` dials new ones itself) and
    again only after a ``sample_s`` period in which no byte arrived (libtorrent stops
    retrying a peer after a few failed dials): a download that moves makes no dial. Every
    ``sample_s`` the verified bytes are sampled (``t.progressed_at``, the stall check).
    :class:`PeerError` once no byte arrived for ``stall_timeout`` seconds, or on an error."""
    done_bytes = 0
    last_progress = trio.current_time()
    dial(t.digest)
    while not t.finished.is_set():
        with trio.move_on_after(sample_s):
            await t.finished.wait()
        if t.finished.is_set():
            break
        now = trio.current_time()
        s = t.handle.status()
        if int(s.total_wanted_done) != done_bytes:
            done_bytes = int(s.total_wanted_done)
            last_progress = t.progressed_at = now
        elif now - last_progress > stall_timeout:
            raise PeerError(
                f"chunk {t.digest.hex()}: no progress from any holder "
                f"for {math.ceil(stall_timeout)} s"
            )
        else:
            dial(t.digest)
    if t.error:
        raise PeerError(f"chunk {t.digest.hex()}: {t.error}")
