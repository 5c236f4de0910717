"""Deterministic chunk torrents: our pure-Python merkle root and info dict against libtorrent.

The same bytes must give the same info-hash on libtorrent 2.1 (create_file_entry) and 2.0
(file_storage + add_files; Debian's python3-libtorrent 2.0.8 under /usr/bin/python3).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import subprocess
import sys
from pathlib import Path

import libtorrent as lt
import pytest

from frumitcache.errors import ProtocolError
from frumitcache.swarm._merkle import BLOCK, MerkleHasher, merkle_tree, piece_size_for
from frumitcache.swarm._torrent import (
    bencode,
    chunk_torrent,
    digest_of_name,
    site_mac,
    torrent_name,
    torrent_of_tree,
)

HERE = Path(__file__).parent
SIZES = [1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 1_000_000, 4 * 1024 * 1024, 5_000_000]
SYSTEM_PYTHON = "/usr/bin/python3"


def _chunk_file(tmp_path: Path, size: int) -> tuple[Path, bytes, bytes]:
    data = random.Random(size).randbytes(size)
    digest = hashlib.sha256(data).digest()
    path = tmp_path / digest.hex()  # the torrent's file name, as in the store
    path.write_bytes(data)
    return path, data, digest


def _libtorrent_create(python: str, path: Path, piece: int, style: str) -> tuple[str, bytes, bytes]:
    out = subprocess.run(
        [python, str(HERE / "lt_create.py"), str(path), str(piece), style],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return out[0], bytes.fromhex(out[1]), bytes.fromhex(out[2])


def _system_libtorrent_20() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return None
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import libtorrent; print(libtorrent.__version__)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def test_piece_size_is_a_power_of_two_with_at_most_32_pieces() -> None:
    for size in [*SIZES, 64 * 1024 * 1024]:
        piece = piece_size_for(size)
        assert piece >= BLOCK
        assert piece & (piece - 1) == 0
        assert -(-size // piece) <= 32


def test_hasher_slicing_does_not_matter() -> None:
    data = random.Random(1).randbytes(300_000)
    whole = merkle_tree(data)
    h = MerkleHasher(whole.piece_size)
    for i in range(0, len(data), 7_777):
        h.update(data[i : i + 7_777])
    assert h.finish() == whole


@pytest.mark.parametrize("size", SIZES)
def test_root_and_info_equal_libtorrent_21(tmp_path: Path, size: int) -> None:
    if not lt.__version__.startswith("2.1"):
        pytest.skip(f"this Python has libtorrent {lt.__version__}; the 2.0 side is checked below")
    path, data, digest = _chunk_file(tmp_path, size)
    tree = merkle_tree(data)
    ours = torrent_of_tree(digest, tree)
    for style in ("2.1", "2.0"):  # 2.1 still has the 2.0 API (deprecated)
        version, info, layers = _libtorrent_create(sys.executable, path, ours.piece_size, style)
        assert version.startswith("2.1"), version
        assert info == ours.info, style
        assert layers == (bencode({tree.root: tree.piece_layer}) if tree.piece_layer else b"de")
    # libtorrent parses what a leecher and a seeder add, to the same v2 info-hash.
    for blob in (ours.leecher_bytes(), ours.seeder_bytes(tree.piece_layer)):
        ti = lt.torrent_info(blob)
        assert bytes(ti.info_hashes().v2.to_bytes()) == ours.info_hash
        assert ti.name() == digest.hex() == ours.name


@pytest.mark.parametrize("size", [1, 3 * BLOCK + 5, 5_000_000])
def test_same_info_hash_on_libtorrent_20(tmp_path: Path, size: int) -> None:
    version = _system_libtorrent_20()
    if version is None:
        pytest.skip(f"{SYSTEM_PYTHON} has no libtorrent (apt-get install python3-libtorrent)")
    path, data, digest = _chunk_file(tmp_path, size)
    tree = merkle_tree(data)
    ours = torrent_of_tree(digest, tree)
    got, info, layers = _libtorrent_create(SYSTEM_PYTHON, path, ours.piece_size, "2.0")
    assert got.startswith("2.0"), got
    assert hashlib.sha256(info).digest() == ours.info_hash
    assert info == ours.info
    assert layers == (bencode({tree.root: tree.piece_layer}) if tree.piece_layer else b"de")


def test_torrent_is_independent_of_directory_and_mtime(tmp_path: Path) -> None:
    path, data, digest = _chunk_file(tmp_path, 100_000)
    piece = piece_size_for(len(data))
    _, first, _ = _libtorrent_create(sys.executable, path, piece, "2.0")
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = other / digest.hex()
    moved.write_bytes(data)
    os.utime(moved, (12345, 12345))
    moved.chmod(0o755)
    _, second, _ = _libtorrent_create(sys.executable, moved, piece, "2.0")
    assert first == second == chunk_torrent(digest, len(data), merkle_tree(data).root).info


def test_bad_inputs_are_rejected() -> None:
    root = bytes(32)
    for bad in (b"short", b"a" * 64, "a" * 64, "ABC"):  # a digest is 32 raw bytes, never hex
        with pytest.raises(ProtocolError):
            chunk_torrent(bad, 10, root)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        chunk_torrent(b"a" * 32, 0, root)
    with pytest.raises(ProtocolError):
        chunk_torrent(b"a" * 32, 10, b"short")
    t = chunk_torrent(b"a" * 32, 5_000_000, root)
    with pytest.raises(ProtocolError):
        t.seeder_bytes(b"x" * 31)


def _with_site_mac(info: bytes, mac: bytes) -> bytes:
    # "site mac" sorts after every other info key: canonical bencoding appends it.
    assert info.endswith(b"e")
    return info[:-1] + b"8:site mac32:" + mac + b"e"


@pytest.mark.parametrize("python", [sys.executable, SYSTEM_PYTHON])
def test_keyed_torrent_is_libtorrents_info_plus_the_site_mac(tmp_path: Path, python: str) -> None:
    """A site-keyed torrent (issue 16, finding 7) stays deterministic on 2.0 and 2.1: the
    info dict libtorrent makes plus one key; libtorrent parses it to our info-hash."""
    if python == SYSTEM_PYTHON and _system_libtorrent_20() is None:
        pytest.skip(f"{SYSTEM_PYTHON} has no libtorrent (apt-get install python3-libtorrent)")
    path, data, digest = _chunk_file(tmp_path, 3 * BLOCK + 5)
    tree = merkle_tree(data)
    mac = site_mac(b"k" * 32, digest)
    # The mac still spells the digest in hex, as before digests were bytes inside: members of
    # one site running either version name every chunk's torrent alike.
    old = hmac.new(b"k" * 32, b"frumitcache chunk torrent\n" + digest.hex().encode(), "sha256")
    assert mac == old.digest()
    ours = torrent_of_tree(digest, tree, mac=mac)
    assert ours.info_hash != torrent_of_tree(digest, tree).info_hash
    other = site_mac(b"j" * 32, digest)
    assert ours.info_hash != torrent_of_tree(digest, tree, mac=other).info_hash
    _, info, _ = _libtorrent_create(python, path, ours.piece_size, "2.0")
    assert _with_site_mac(info, mac) == ours.info
    ti = lt.torrent_info(ours.leecher_bytes())
    assert bytes(ti.info_hashes().v2.to_bytes()) == ours.info_hash


def test_torrent_name_is_the_digest_in_hex_and_back() -> None:
    """The one place a torrent's name (libtorrent reports it in alerts) meets a digest."""
    digest = hashlib.sha256(b"name").digest()
    assert torrent_name(digest) == digest.hex()
    assert digest_of_name(digest.hex()) == digest
    for other in ("", "x", digest.hex().upper(), digest.hex()[:-1], digest.hex() + "0", "zz" * 32):
        assert digest_of_name(other) is None
    with pytest.raises(ProtocolError):
        torrent_name(digest.hex())  # type: ignore[arg-type]
