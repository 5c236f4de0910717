"""The agent: wires store, origin, swarm, site and the front doors into one trio nursery, and
serves the local control API (msgpack over a Unix socket) that the CLI and library use."""

from frumitcache.agent._agent import Agent, AgentInfo

__all__ = ["Agent", "AgentInfo"]
