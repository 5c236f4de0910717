"""``[swarm]``: the libtorrent session and how chunks are spread between members."""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config._field import MiB, Section, check_port, opt
from frumitcache.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SwarmConfig(Section):
    port: int = opt(3145, "TCP port of the libtorrent session.")
    small_chunk_bytes: int = opt(
        1 * MiB,
        "Chunks up to this size are pulled over the peer HTTP port instead of "
        "libtorrent (a libtorrent dial costs about a second; bench.swarm --threshold: with "
        "5 fetchers on 100 Mbit ports HTTP was faster up to 4 MiB).",
        "bytes",
    )
    upload_rate: int = opt(0, "Swarm upload limit; 0 means unlimited.", "bytes/s")
    download_rate: int = opt(0, "Swarm download limit; 0 means unlimited.", "bytes/s")
    max_queued_disk_bytes: int = opt(
        4 * MiB, "libtorrent write cache bound (keeps the agent's memory Pi-sized).", "bytes"
    )
    super_seeding: bool = opt(
        True,
        "Seeder hands each chunk out once so its port carries about one copy: each "
        "fetcher dials the seeder only for the chunks assigned to it (or stalled), and fetchers "
        "trade the rest. (libtorrent's own super-seeding is not used: it delays every torrent "
        "by 10 s.)",
    )
    seeder_grace_s: float = opt(
        3.0,
        "A chunk that made no progress for this long may be fetched from the seeder by "
        "any fetcher, unless its assigned fetcher says it is fetching it. A member the "
        "seeder says pulls the object alone (nobody else asked for it) does not wait.",
        "s",
    )
    assigned_grace_s: float = opt(
        20.0,
        "The same while the chunk's assigned fetcher says it is fetching it (asked every "
        "2 s): its copy from a busy seeder takes seconds, and widening sooner makes the "
        "seeder's port carry chunks twice.",
        "s",
    )
    stall_timeout_s: float = opt(
        20.0, "A libtorrent fetch with no progress for this long falls back to peer HTTP.", "s"
    )
    answer_timeout_s: float = opt(
        5.0,
        "A holder that sends no answer to a chunk request (its head, or the next body "
        "bytes) for this long is skipped for a back-off (5 s, doubling) and the next holder "
        "asked: a frozen Pi stays a member until member_timeout_s, and each chunk waited "
        "the whole-chunk bound (30 s) on it.",
        "s",
    )
    parallel_chunks: int = opt(
        8,
        "Chunks of one object fetched at once (each libtorrent chunk pays a connect tick, "
        "so a few in flight hide it; more costs memory).",
    )

    def check(self) -> None:
        check_port("swarm.port", self.port)
        if not self.answer_timeout_s > 0:
            raise ConfigError("swarm.answer_timeout_s: must be positive")
