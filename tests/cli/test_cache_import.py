"""``frumitcache cache import`` reads regular files only and never follows a symlink out of the
folder it is given (issue 16 finding 10): a link to a secret named ``x.deb`` must not end up in
the store, where the site could fetch it by digest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import trio

from frumitcache.testing.agents import AgentProcess
from tests.cli.test_commands import cli


async def test_import_skips_symlinks_and_special_files(agent: AgentProcess, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "y.deb").write_bytes(b"outside the folder")
    folder = tmp_path / "archives"
    folder.mkdir()
    real = b"a real package" * 100
    (folder / "real.deb").write_bytes(real)
    (folder / "x.deb").symlink_to(secret)  # the attack of the finding
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(folder / "fifo.deb")  # would block a reader that opened it blindly

    with trio.fail_after(60):
        result = await cli(agent, "cache", "import", str(folder), "--json")
        report = json.loads(result.stdout)
        listing = json.loads((await cli(agent, "cache", "ls", "--json")).stdout)
    assert report["imported"] == 1, report
    assert report["failed"] == 2, report  # the link and the fifo, each named
    assert any("x.deb" in e and "symbolic link" in e for e in report["errors"]), report
    assert any("fifo.deb" in e and "regular file" in e for e in report["errors"]), report
    stored = {o["digest"] for o in listing["objects"]}
    assert stored == {hashlib.sha256(real).hexdigest()}, listing
