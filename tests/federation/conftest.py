"""Fixtures shared with other areas: the signed test repository builder of tests/apt (for the
agent-level apt tests) and the registry with an image pushed by skopeo of tests/oci."""

from tests.apt.conftest import repo_builder
from tests.oci.conftest import pushed

__all__ = ["pushed", "repo_builder"]
