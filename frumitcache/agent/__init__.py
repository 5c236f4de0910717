"""The agent: wires store, origin, swarm, site and the front doors into one trio nursery, and
serves the local control API (msgpack over a Unix socket) that the CLI and library use.

:class:`ContentService` is the engine behind the content seam (its ``source`` is the
:class:`frumitcache.content.ContentSource` the front doors use); a one-node assembly (store,
origin fetcher, one door) can run on it without the rest of the agent (tests, benchmarks).
:class:`Notifier` speaks systemd's notify protocol for ``frumitcache agent``."""

from frumitcache.agent._agent import Agent, AgentInfo
from frumitcache.agent._content import ContentService
from frumitcache.agent._systemd import Notifier

__all__ = ["Agent", "AgentInfo", "ContentService", "Notifier"]
