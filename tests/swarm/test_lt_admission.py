"""The libtorrent port only serves key holders (issue 16, finding 7).

Hostile case named here: a keyless libtorrent session bound to a *member's own address* (so
the IP filter admits it), knowing the chunk's digest, size and pieces root, dials the holder.
It gets nothing; the same raw session given the site key's torrent does get the chunk (the
control that shows the setup can download at all).
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
from frumitcache.swarm._lt import session_settings
from frumitcache.swarm._torrent import site_mac
from frumitcache.testing.net import loopback_address
from tests.swarm.holding import seeding_holder

MiB = 1024 * 1024


def _add(ses: Any, blob: bytes, save: Path) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(blob)
    atp.save_path = str(save)
    atp.flags = int(atp.flags) & ~int(lt.torrent_flags.auto_managed) & ~int(lt.torrent_flags.paused)
    return ses.add_torrent(atp)


async def test_keyless_session_on_a_member_address_gets_nothing(tmp_path: Path) -> None:
    key = os.urandom(32)
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).digest()
    root = merkle_tree(data).root
    member = loopback_address()
    raw: Any = None
    with trio.fail_after(60):
        async with seeding_holder(tmp_path / "holder", data, digest, key, [member]) as holder:
            params: Any = session_settings(
                member, 0, SwarmConfig()
            )  # a dict: the stubs want a pack
            raw = lt.session(params)
            peer = (holder.address, holder.listen_port)
            keyless = _add(
                raw, chunk_torrent(digest, len(data), root).leecher_bytes(), tmp_path / "keyless"
            )
            keyed = _add(
                raw,
                chunk_torrent(digest, len(data), root, mac=site_mac(key, digest)).leecher_bytes(),
                tmp_path / "keyed",
            )
            # Control: with the key's torrent the same session, same address, gets the chunk.
            while not keyed.status().is_seeding:
                for h in (keyless, keyed):
                    h.connect_peer(peer)
                await trio.sleep(0.2)
            # Keyless: the holder has no torrent of that info-hash; it never sent a byte.
            for _ in range(10):
                keyless.connect_peer(peer)
                await trio.sleep(0.2)
            st = keyless.status()
            assert st.total_wanted_done == 0, st.total_wanted_done
            assert not st.is_seeding
            assert not (tmp_path / "keyless" / digest.hex()).exists() or not any(
                (tmp_path / "keyless" / digest.hex()).read_bytes()
            )
    del raw


async def test_filter_is_default_deny_from_the_start(tmp_path: Path) -> None:
    """No window after start in which the port admits anyone: until members are named, a
    session on another address gets nothing even with the key's torrent."""
    key = os.urandom(32)
    data = os.urandom(256 * 1024)
    digest = hashlib.sha256(data).digest()
    root = merkle_tree(data).root
    raw: Any = None
    with trio.fail_after(60):
        # No members named: the site has not spoken yet.
        async with seeding_holder(tmp_path / "holder", data, digest, key, None) as holder:
            params: Any = session_settings(loopback_address(), 0, SwarmConfig())
            raw = lt.session(params)
            peer = (holder.address, holder.listen_port)
            h = _add(
                raw,
                chunk_torrent(digest, len(data), root, mac=site_mac(key, digest)).leecher_bytes(),
                tmp_path,
            )
            for _ in range(15):
                h.connect_peer(peer)
                await trio.sleep(0.2)
            assert h.status().total_wanted_done == 0
    del raw
