"""Chunk torrents are dialled in plaintext (issue 11): no obfuscated handshake, no DH per dial.

Each chunk is its own torrent, so a member dials every fellow member once per chunk; by
libtorrent's default each dial opened with the obfuscated handshake (768-bit Diffie-Hellman,
then RC4) only to settle on plaintext. The sessions here are real libtorrent sessions built
from the agent's own settings pack; what travelled is read from ``peer_info`` flags while the
chunk moves (a download rate limit keeps the connection open long enough to look at it).

Mixed site (hostile to an upgrade): a member that still dials obfuscated (libtorrent's default
policy) is answered by a new holder, and an older holder (default policy) answers a new
member's plaintext dial.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import libtorrent as lt
import trio

from frumitcache.config import SwarmConfig
from frumitcache.swarm import chunk_torrent, merkle_tree
from frumitcache.swarm._lt import peer_class_filter, session_settings
from frumitcache.swarm._torrent import site_mac, torrent_of_tree
from frumitcache.testing.net import loopback_address
from tests.swarm.holding import seeding_holder

MiB = 1024 * 1024
_ENCRYPTED = int(lt.peer_info.rc4_encrypted) | int(lt.peer_info.plaintext_encrypted)
# 1 MiB at 256 KiB/s: the connection lives ~4 s, plenty of 50 ms looks.
_SLOW = SwarmConfig(download_rate=256 * 1024)
# A connection still dialling or handshaking has not settled its encryption yet.
_OPENING = int(lt.peer_info.connecting) | int(lt.peer_info.handshake)


def _settings(address: str, *, old: bool = False) -> Any:
    params: Any = session_settings(address, 0, _SLOW)
    if old:
        # An agent from before this change: libtorrent's default policies.
        del params["out_enc_policy"], params["in_enc_policy"]
    return params


def _session(params: Any) -> Any:
    ses = lt.session(params)
    ses.set_peer_class_filter(peer_class_filter())  # else LAN peers skip the rate limit
    return ses


def _add(ses: Any, blob: bytes, save: Path, flags: int = 0) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(blob)
    atp.save_path = str(save)
    atp.flags = (int(atp.flags) | flags) & ~int(lt.torrent_flags.auto_managed)
    atp.flags &= ~int(lt.torrent_flags.paused)
    return ses.add_torrent(atp)


async def _pull(handle: Any, peer: tuple[str, int]) -> set[int]:
    """Dial ``peer`` until the chunk is complete; the flags of every connection seen
    past its handshake."""
    seen: set[int] = set()
    with trio.fail_after(60):
        while not handle.status().is_seeding:
            if not handle.get_peer_info():
                handle.connect_peer(peer)
            seen.update(f for p in handle.get_peer_info() if not (f := int(p.flags)) & _OPENING)
            await trio.sleep(0.05)
    return seen


def _chunk() -> tuple[bytes, bytes]:
    data = os.urandom(MiB)
    return data, hashlib.sha256(data).digest()


def test_the_settings_pack_dials_plaintext_and_answers_both() -> None:
    params: Any = session_settings(loopback_address(), 0, SwarmConfig())
    assert params["out_enc_policy"] == int(lt.enc_policy.disabled)
    assert params["in_enc_policy"] == int(lt.enc_policy.enabled)
    live = lt.session(params).get_settings()
    assert live["out_enc_policy"] == int(lt.enc_policy.disabled)
    assert live["in_enc_policy"] == int(lt.enc_policy.enabled)


async def _from_new_holder(tmp_path: Path, *, old_dialer: bool) -> set[int]:
    key = os.urandom(32)
    data, digest = _chunk()
    member = loopback_address()
    raw: Any = None
    with trio.fail_after(90):
        async with seeding_holder(tmp_path / "holder", data, digest, key, [member]) as holder:
            raw = _session(_settings(member, old=old_dialer))
            ct = chunk_torrent(digest, len(data), merkle_tree(data).root, mac=site_mac(key, digest))
            h = _add(raw, ct.leecher_bytes(), tmp_path / "member")
            seen = await _pull(h, (holder.address, holder.listen_port))
    del raw
    assert (tmp_path / "member" / digest.hex()).read_bytes() == data
    assert seen, "never saw the connection"
    return seen


async def test_a_member_pulls_a_chunk_from_a_holder_in_plaintext(tmp_path: Path) -> None:
    seen = await _from_new_holder(tmp_path, old_dialer=False)
    assert all(f & _ENCRYPTED == 0 for f in seen), [hex(f) for f in seen]


async def test_a_member_that_still_obfuscates_is_answered(tmp_path: Path) -> None:
    seen = await _from_new_holder(tmp_path, old_dialer=True)
    # The old member's obfuscated handshake was accepted, and settled on plaintext payload.
    assert all(f & int(lt.peer_info.plaintext_encrypted) for f in seen), [hex(f) for f in seen]
    assert all(f & int(lt.peer_info.rc4_encrypted) == 0 for f in seen)


async def test_an_older_holder_answers_a_plaintext_dial(tmp_path: Path) -> None:
    data, digest = _chunk()
    tree = merkle_tree(data)
    (tmp_path / "holder").mkdir()
    (tmp_path / "holder" / digest.hex()).write_bytes(data)
    holder_address, member = loopback_address(), loopback_address()
    old = _session(_settings(holder_address, old=True))
    new = _session(_settings(member))
    seeder_bytes = torrent_of_tree(digest, tree).seeder_bytes(tree.piece_layer)
    _add(old, seeder_bytes, tmp_path / "holder", int(lt.torrent_flags.seed_mode))
    h = _add(new, torrent_of_tree(digest, tree).leecher_bytes(), tmp_path / "member")
    seen = await _pull(h, (holder_address, old.listen_port()))
    assert (tmp_path / "member" / digest.hex()).read_bytes() == data
    assert seen, "never saw the connection"
    assert all(f & _ENCRYPTED == 0 for f in seen), [hex(f) for f in seen]
    del old, new
