"""The plain HTTP client of the ``direct`` and ``central`` systems: one GET into a file.

    python -m bench._fetch URL -o FILE [--proxy http://HOST:PORT] [--sha256 HEX]

Standard library only, so it starts in a few tens of milliseconds like curl would. Through a
proxy it sends the absolute-form request line, as apt and curl do with an HTTP proxy. The file
appears (by rename) only when the body arrived whole and, with ``--sha256``, hashed right; the
exit status says so (0 ok, 1 failed).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit


def fetch(url: str, output: Path, proxy: str | None, sha256: str | None) -> int:
    target = urlsplit(url)
    via = urlsplit(proxy) if proxy else target
    conn = http.client.HTTPConnection(via.hostname or "", via.port or 80, timeout=60)
    path = url if proxy else (target.path or "/")
    conn.request("GET", path, headers={"Host": target.netloc})
    response = conn.getresponse()
    if response.status != 200:
        sys.stderr.write(f"{url}: HTTP {response.status}\n")
        return 1
    tmp = output.with_name(f".{output.name}.part")
    digest = hashlib.sha256()
    got = 0
    with tmp.open("wb") as out:
        while block := response.read(1 << 18):
            out.write(block)
            digest.update(block)
            got += len(block)
    expected = response.getheader("Content-Length")
    if expected is not None and int(expected) != got:
        sys.stderr.write(f"{url}: {got} bytes, Content-Length said {expected}\n")
        tmp.unlink(missing_ok=True)
        return 1
    if sha256 is not None and digest.hexdigest() != sha256:
        sys.stderr.write(f"{url}: SHA-256 {digest.hexdigest()}, expected {sha256}\n")
        tmp.unlink(missing_ok=True)
        return 1
    os.replace(tmp, output)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one GET into a file")
    parser.add_argument("url")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--proxy")
    parser.add_argument("--sha256")
    args = parser.parse_args(argv)
    try:
        return fetch(args.url, args.output, args.proxy, args.sha256)
    except (OSError, http.client.HTTPException) as exc:
        sys.stderr.write(f"{args.url}: {exc!r}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
