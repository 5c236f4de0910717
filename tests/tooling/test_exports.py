"""Every package's public surface is explicit: ``__all__`` lists it, each name resolves, and
none is private. Packages whose tests live elsewhere pin their lists there
(tests/{library,origin,site,store,swarm}/test_exports.py; apt, content and oci beside their
tests); the ones pinned here have no test directory of their own or are small enough to pin
beside the rule.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import frumitcache

# Packages of modules used by path (test doubles), not a surface of re-exported names.
NO_SURFACE = {"testing"}

PACKAGES = sorted(m.name for m in pkgutil.iter_modules(frumitcache.__path__) if m.ispkg)

PINNED = {
    "federation": [
        "FederationServer",
        "FederationServerStats",
        "FederationTransport",
        "Link",
        "RateFloor",
        "Role",
        "SiblingSlots",
        "object_target",
        "parse_target",
        "sibling_ask",
        "takes",
    ],
    "agent": ["Agent", "AgentInfo", "ContentService", "Notifier"],
    "cli": ["main"],
    "client": [
        "AgentClient",
        "PrefetchHandle",
        "PullOutcome",
        "PullStream",
        "ask_blocking",
        "check_url",
        "default_download_dir",
        "default_socket",
        "parse_sha256",
        "pull_into_blocking",
    ],
    "control": [
        "RECVMSG_ARGS",
        "CacheListRequest",
        "CacheListing",
        "Data",
        "Decoder",
        "EstimateReply",
        "EstimateRequest",
        "Failed",
        "FileData",
        "GcReply",
        "GcRequest",
        "ImportReply",
        "ImportRequest",
        "LocateReply",
        "LocateRequest",
        "Message",
        "MessageStream",
        "PinReply",
        "PinRequest",
        "PrefetchReply",
        "PrefetchRequest",
        "Pull",
        "PullDone",
        "PullFiles",
        "PullStarted",
        "SiteReply",
        "SiteRequest",
        "Status",
        "StatusRequest",
        "VerifyReply",
        "VerifyRequest",
        "encode",
        "take_descriptors",
    ],
    "doctor": [
        "Check",
        "ServiceUser",
        "check_apt",
        "check_control_socket",
        "check_directory",
        "check_federation",
        "check_key_file",
        "check_ports",
        "default_service_user",
        "run_checks",
    ],
    "config": [
        "AptConfig",
        "Config",
        "ControlConfig",
        "FederationConfig",
        "GiB",
        "KiB",
        "LogConfig",
        "MiB",
        "NodeConfig",
        "OciConfig",
        "OriginConfig",
        "REGISTRY_NAME",
        "Registry",
        "Section",
        "SiteConfig",
        "StoreConfig",
        "SwarmConfig",
        "config_from_mapping",
        "default_socket_path",
        "default_state_path",
        "default_store_path",
        "describe",
        "dump_toml",
        "example_toml",
        "find_config_file",
        "load_config",
        "opt",
        "parse_quantity",
        "parse_registries",
        "split_member",
        "with_overrides",
    ],
}


@pytest.mark.parametrize("name", [p for p in PACKAGES if p not in NO_SURFACE])
def test_package_surface_is_explicit(name: str) -> None:
    package = importlib.import_module(f"frumitcache.{name}")
    exported = package.__all__
    assert len(set(exported)) == len(exported), "a name is listed twice"
    for item in exported:
        assert not item.startswith("_"), f"{item}: private names are not exported"
        assert hasattr(package, item), f"{item} is in __all__ but not in the package"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_surface(name: str) -> None:
    package = importlib.import_module(f"frumitcache.{name}")
    assert sorted(package.__all__) == sorted(PINNED[name])


def test_every_package_is_known() -> None:
    """A new package gets an ``__all__`` (and a pin) or is named in NO_SURFACE."""
    assert set(PINNED) <= set(PACKAGES)
    assert set(PACKAGES) >= NO_SURFACE
