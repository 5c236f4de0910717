"""The signed test repository builder of tests/apt, shared with the agent-level apt tests."""

from tests.apt.conftest import repo_builder

__all__ = ["repo_builder"]
