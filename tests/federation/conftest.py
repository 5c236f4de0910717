"""Fixtures shared with other areas: the signed test repository builder of tests/apt (for the
agent-level apt tests), and of tests/oci the registry with an image pushed by skopeo and the
registry behind a token service."""

from tests.apt.conftest import repo_builder
from tests.oci.conftest import pushed
from tests.oci.test_token_auth import auth

__all__ = ["auth", "pushed", "repo_builder"]
