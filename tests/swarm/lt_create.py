"""Run by the tests under any Python with libtorrent: creates a chunk torrent the libtorrent way.

argv: PATH PIECE_SIZE STYLE (2.0: file_storage + add_files; 2.1: create_file_entry).
Prints the libtorrent version, the bencoded info dict and the bencoded piece layers, in hex.
"""

import os
import sys

import libtorrent as lt

path, piece, style = sys.argv[1], int(sys.argv[2]), sys.argv[3]
name = os.path.basename(path)
flags = lt.create_torrent.v2_only | lt.create_torrent.no_attributes
if style == "2.1":
    ct = lt.create_torrent([lt.create_file_entry(name, os.path.getsize(path))], piece, flags=flags)
else:
    fs = lt.file_storage()
    lt.add_files(fs, path, flags=lt.create_torrent.no_attributes)
    ct = lt.create_torrent(fs, piece, flags=flags)
if hasattr(ct, "set_creation_date"):
    ct.set_creation_date(0)
lt.set_piece_hashes(ct, os.path.dirname(path))
entry = ct.generate()
layers = entry.get(b"piece layers", {})
print(lt.__version__, lt.bencode(entry[b"info"]).hex(), lt.bencode(layers).hex())
