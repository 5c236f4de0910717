"""The faults of the shaped federation benchmark (:mod:`bench.federation`): its flags' parsers
(pure), SIGKILLing the core's seeder at a share of the object the origin has sent, and the
agents' uplink counters summed per site (where each site's bytes came from)."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from typing import Any

import trio

from bench._netfed import ShapedFederation, wait_origin_sent
from frumitcache.client import AgentClient
from frumitcache.config import parse_quantity
from frumitcache.testing.agents import AgentProcess


def parse_fraction(text: str) -> float:
    """``--kill-parent-seeder-at``: a share of F strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(f"expected a fraction between 0 and 1 (exclusive), got {text!r}")
    return value


def parse_slow_link(text: str) -> tuple[int, int]:
    """``--slow-link EDGE=RATE`` (edges count from 1) as ``(site index, bytes/s)``."""
    edge, sep, rate = text.partition("=")
    if not sep or not edge.strip().isdigit() or int(edge) < 1:
        raise ValueError(f"expected EDGE=RATE with EDGE 1, 2, ... such as 2=1Mbit, got {text!r}")
    bytes_s = parse_quantity(rate.strip(), "bytes/s")
    if bytes_s <= 0:
        raise ValueError(f"a slow link needs a positive rate, got {text!r}")
    return int(edge), bytes_s


def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` for an agent config section: VALUE as a TOML value (6.0, 500000, true),
    else as text (``2Mbit``, which the agent's loader reads as a quantity)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key.isidentifier():
        raise ValueError(f"expected KEY=VALUE such as min_rate=2Mbit, got {text!r}")
    return key, _value(raw)


def parse_section_setting(text: str) -> tuple[str, str, Any]:
    """``SECTION.KEY=VALUE`` (``site.member_forget_s=6``) as ``(section, key, value)``."""
    dotted, sep, raw = text.partition("=")
    section, dot, key = dotted.strip().partition(".")
    if not sep or not dot or not section.isidentifier() or not key.isidentifier():
        raise ValueError(f"expected SECTION.KEY=VALUE such as log.level=debug, got {text!r}")
    return section, key, _value(raw.strip())


def _value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def name_of(agent: AgentProcess) -> str:
    return str(agent.settings["node"]["name"])


async def seeder_of(agents: Sequence[AgentProcess], patience_s: float = 30.0) -> AgentProcess:
    """The agent that every live agent of one site names as its seeder (waits for them to
    agree, at most ``patience_s``)."""
    with trio.fail_after(patience_s):
        while True:
            live = [a for a in agents if a.proc is not None and a.proc.poll() is None]
            named = {(await a.site_status()).get("seeder") for a in live}
            if len(named) == 1 and None not in named:
                seeder = named.pop()
                return next(a for a in agents if name_of(a) == seeder)
            await trio.sleep(0.2)


async def kill_at(
    fed: ShapedFederation,
    victim: AgentProcess,
    url: str,
    n: int,
    start: float,
    out: dict[str, Any],
) -> None:
    """SIGKILL ``victim`` (the seeder) once the origin has sent ``n`` bytes of ``url``; fills
    ``out`` with the node, the origin's count when the watcher saw it, the time since
    ``start`` and the chunks each member held then by the seeder's catalogue (asked just
    before the kill: what the site can resume after). Nothing if the mark never came within
    10 minutes."""
    path = "/" + url.split("/", 3)[3]
    sent = await wait_origin_sent(fed, path, n, timeout_s=600)
    if sent is None:
        return
    try:
        where = await AgentClient(victim.socket).locate(url)
        held: dict[str, int] | None = {h.node: h.chunks for h in where.holders}
    except Exception:  # a figure for the report only: the kill must land regardless
        held = None
    victim.kill()
    at = round(trio.current_time() - start, 2)
    out.update(node=name_of(victim), at_origin_bytes=sent, at_s=at, chunks_held=held)


async def uplink_by_site(sites: Sequence[Sequence[AgentProcess]]) -> list[dict[str, int]]:
    """Per site, the live agents' uplink counters summed: ``origin_bytes`` (fetched from the
    origin) and ``federation_bytes`` (from parents and siblings), as ``status`` shows them."""
    out = []
    for agents in sites:
        total = {"origin_bytes": 0, "federation_bytes": 0}
        for agent in agents:
            if agent.proc is None or agent.proc.poll() is not None:
                continue  # a killed agent's counters died with it
            counters = (await AgentClient(agent.socket).status()).origin
            for key in total:
                total[key] += int(counters.get(key, 0))
        out.append(total)
    return out
