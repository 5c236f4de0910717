"""No package reaches into another package's private modules or names (STYLE.md 11).

A package's ``__init__`` is its surface; ``frumitcache.<pkg>._module`` is for the package itself.
This test reads every module's imports (at any depth, including inside functions) and fails on
``from frumitcache.<other>._x import ...``, ``import frumitcache.<other>._x`` or a private name
taken from another package. The floors at the root (``frumitcache._log``, ``_rate``,
``_sendfile``, ``_signing``, ``_digest``, ``_results``, ``_version``) are the root package's shared
internals and allowed everywhere. When this fails: export the name from the owning package's
``__init__`` (and pin it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "frumitcache"


def cross_package_private_imports(source: str, package: str | None) -> list[str]:
    """``module[:name]`` for every private import from another package in ``source``, a module
    of ``package`` (``None``: a module at the root)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imports = [(node.module, [alias.name for alias in node.names])]
        elif isinstance(node, ast.Import):
            imports = [(alias.name, []) for alias in node.names]
        else:
            continue
        for module, names in imports:
            parts = module.split(".")
            if parts[0] != "frumitcache" or len(parts) < 2:
                continue
            owner = parts[1]
            if owner == package or (len(parts) == 2 and owner.startswith("_")):
                continue  # its own package, or a floor at the root
            if any(p.startswith("_") for p in parts[2:]):
                found.append(module)
            found += [f"{module}:{n}" for n in names if n.startswith("_")]
    return found


def test_the_checker_finds_what_it_must() -> None:
    # A test that cannot fail is a defect: the rule's own cases.
    assert cross_package_private_imports("from frumitcache.swarm._auth import sign", "agent")
    assert cross_package_private_imports("import frumitcache.store._index", "cli")
    assert cross_package_private_imports("from frumitcache.store import _index", "cli")
    inside = "def f():\n    from frumitcache.agent._systemd import Notifier\n"
    assert cross_package_private_imports(inside, "cli")
    assert not cross_package_private_imports("from frumitcache.swarm._auth import sign", "swarm")
    assert not cross_package_private_imports("from frumitcache._log import get_logger", "site")
    assert not cross_package_private_imports("from frumitcache.swarm import Swarm", "agent")


def test_no_package_imports_another_packages_privates() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = rel.parts[0] if len(rel.parts) > 1 else None
        for found in cross_package_private_imports(path.read_text(), package):
            offenders.append(f"frumitcache/{rel}: {found}")
    assert not offenders, "\n".join(offenders)
