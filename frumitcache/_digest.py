"""Chunk and object digests: inside the package, always the raw 32-byte SHA-256 (``bytes``).

Hex is for the outer borders only: URLs (``/chunk/<hex>``), JSON and msgpack fields whose format
says hex, file names, logs and CLI output. The one module that reads such a format turns its
hex into a digest with :func:`parse_digest`, which refuses anything but 64 lower-case hex
characters with an error that names what it got; writing is ``digest.hex()``.
"""

from __future__ import annotations

from frumitcache.errors import ProtocolError

#: Length of a SHA-256 digest in bytes.
DIGEST_LEN = 32

_HEX = frozenset("0123456789abcdef")


def is_hex_digest(text: str) -> bool:
    """Whether ``text`` is a SHA-256 in lower-case hex (64 characters)."""
    return len(text) == 2 * DIGEST_LEN and set(text) <= _HEX


def parse_digest(text: str, what: str = "digest") -> bytes:
    """The digest ``text`` spells in lower-case hex; :class:`ProtocolError` (naming ``what``
    and the text) for anything else."""
    if not is_hex_digest(text):
        raise ProtocolError(f"{what}: not a SHA-256 in lower-case hex: {text[:80]!r}")
    return bytes.fromhex(text)
