"""One emulated Pi of :mod:`bench.carrier`: a bare libtorrent session with the agent's settings
pack, and nothing else of the agent (no trio, store, control plane or clients).

    python -m bench._carrier_node --address A --port P --save DIR --torrents DIR \
        --control DIR [--seed] [--peers A:P,...]

It adds every ``*.torrent`` of ``--torrents`` (``--seed``: the files are in ``--save``, in seed
mode, as an agent seeds its store; ``--super-seed`` on top), prints ``{"ready": ...}`` and waits
for ``<control>/go``. Then a fetcher dials every peer for every torrent (as an agent dials its
catalogue; with ``--assigned K/M`` the holder only for the torrents assigned to it, as an
agent's member dials the seeder only for its assigned chunks), prints
``{"finished_at": ...}`` (``time.monotonic()``, one clock for the whole machine) when each
torrent has finished, and seeds on until ``<control>/stop``. Last it prints its CPU seconds
since the go (``resource.getrusage``: every thread of the process), bytes sent and received,
its peak RSS and, for a fetcher, the SHA-256 of what it holds, hashed after the CPU figure
was taken and the session closed (its disk threads have written everything then).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import libtorrent as lt

from frumitcache.config import SwarmConfig
from frumitcache.swarm._lt import add_params, peer_class_filter, session_settings

_POLL_S = 0.1


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peers(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, text.split(",")):
        host, _, port = item.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def _wait_for(path: Path, poll_s: float) -> None:
    while not path.exists():
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--save", type=Path, required=True)
    parser.add_argument("--torrents", type=Path, required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--seed", action="store_true")
    parser.add_argument("--peers", default="")
    parser.add_argument("--super-seed", action="store_true", help="the holder super-seeds")
    parser.add_argument("--unchoke", type=int, default=0, help="unchoke slots (0: the agent's)")
    parser.add_argument(
        "--assigned", default="",
        help="K/M: dial the holder (the first of --peers) only for torrents t with t %% M == K; "
        "every other peer for all of them",
    )  # fmt: skip
    args = parser.parse_args(argv)

    settings: Any = session_settings(args.address, args.port, SwarmConfig())
    if args.unchoke:
        settings["unchoke_slots_limit"] = args.unchoke
    ses = lt.session(settings)
    ses.set_peer_class_filter(peer_class_filter())
    files = sorted(args.torrents.glob("*.torrent"))
    flags = int(lt.torrent_flags.seed_mode) if args.seed else 0
    if args.seed and args.super_seed:
        flags |= int(lt.torrent_flags.super_seeding)
    datas = [f.read_bytes() for f in files]
    names = [lt.torrent_info(data).name() for data in datas]
    handles = [ses.add_torrent(add_params(data, args.save, flags)) for data in datas]
    _say(ready=len(handles))

    _wait_for(args.control / "go", 0.01)
    cpu0 = _cpu_s()
    if not args.seed:
        peers = _peers(args.peers)
        mine, of = (int(x) for x in args.assigned.split("/")) if args.assigned else (0, 1)
        for t, h in enumerate(handles):
            skip_holder = bool(args.assigned) and t % of != mine
            for peer in peers[1:] if skip_holder else peers:
                h.connect_peer(peer)
    waiting = set() if args.seed else set(handles)
    if not waiting:
        _say(finished_at=time.monotonic())
    stop = args.control / "stop"
    while not stop.exists():
        ses.wait_for_alert(int(_POLL_S * 1000))
        for alert in ses.pop_alerts():
            if waiting and isinstance(alert, lt.torrent_finished_alert):
                waiting.discard(alert.handle)
                if not waiting:
                    _say(finished_at=time.monotonic())
    cpu = _cpu_s() - cpu0
    sent = sum(h.status().total_payload_upload for h in handles)
    received = sum(h.status().total_payload_download for h in handles)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest = ""
    finished = not args.seed and not waiting
    # The session's end waits for its disk threads: libtorrent 2.1 writes pieces back after
    # it reports them finished, so the files are whole only then.
    waiting.clear()
    del handles
    del ses
    if finished:
        sha = hashlib.sha256()
        for name in names:  # the torrents' order is the object's (files sort by index)
            with (args.save / name).open("rb") as f:
                while block := f.read(1 << 20):
                    sha.update(block)
        digest = sha.hexdigest()
    _say(cpu_s=cpu, sent=sent, received=received, peak_rss_mb=peak_mb, sha256=digest)


if __name__ == "__main__":
    main()
