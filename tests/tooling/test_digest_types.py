"""Inside the package a chunk or object digest is one type: the raw 32-byte SHA-256, ``bytes``.

Hex belongs to the outer borders (URLs, JSON, file names, logs, the CLI and the client's
result records), converted once in the module that reads or writes that format
(``frumitcache._digest.parse_digest``). This test reads every module of the packages inside
those borders and fails on a parameter, field or attribute named like a digest (``digest``,
``digests``, ``sha256``, ``chunk_digest``, ...) whose annotation is not ``bytes`` (or a
container of it), or that admits ``str`` -- e.g. a swarm method going back to ``digest: str``.
It reads source (any depth, private names included), so it costs a few milliseconds.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "frumitcache"

#: The packages inside the borders. Outside them, on purpose: apt (Packages files and by-hash
#: URLs spell SHA-256 in hex), oci (``sha256:<hex>`` is the registry's wire form), client,
#: cli, control and sync (the user's side), ``_results`` (what the client hands its user).
INSIDE = ["agent", "content", "federation", "origin", "site", "store", "swarm"]

#: Names that hold a digest (or several).
DIGEST_NAME = re.compile(r"^_?(?:[a-z0-9]+_)*(?:digest|digests|sha256)$")


def _allowed(name: str, annotation: str) -> bool:
    if annotation in ("int", "bool"):
        return True  # a count or a flag about digests (``max_digests``), not one
    if name.startswith("key_or_"):
        return annotation == "str | bytes"  # a store key (str) or a digest (bytes)
    return "bytes" in annotation and not re.search(r"\bstr\b", annotation)


def offenders(source: str) -> list[str]:
    """``line name: annotation`` for every digest-named parameter, field, attribute or
    function result in ``source`` not typed as bytes."""
    found = []

    def check(line: int, name: str, annotation: ast.expr | None) -> None:
        text = ast.unparse(annotation) if annotation is not None else "<unannotated>"
        if DIGEST_NAME.match(name) and not _allowed(name, text):
            found.append(f"{line} {name}: {text}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                check(arg.lineno, arg.arg, arg.annotation)
            if node.returns is not None and node.name.lstrip("_") in ("digest", "digests"):
                check(node.lineno, node.name, node.returns)  # ``def digests(self) -> ...``
        elif isinstance(node, ast.AnnAssign):
            target = node.target
            if isinstance(target, ast.Name):
                check(node.lineno, target.id, node.annotation)
            elif isinstance(target, ast.Attribute):
                check(node.lineno, target.attr, node.annotation)
    return found


def test_the_checker_finds_what_it_must() -> None:
    # A test that cannot fail is a defect: the rule's own cases.
    assert offenders("def f(digest: str) -> None: ...")
    assert offenders("async def seed(self, digest: bytes | str) -> None: ...")
    assert offenders("def f(*, chunk_digest: str) -> None: ...")
    assert offenders("def f(digests: list[str]) -> None: ...")
    assert offenders("def f(digests: dict[str, int]) -> None: ...")
    assert offenders("def f(expected_sha256: str | None) -> None: ...")
    assert offenders("def f(digest) -> None: ...")  # unannotated
    assert offenders("class ChunkRef:\n    digest: str\n")
    assert offenders("class A:\n    def __init__(self) -> None:\n        self._digest: str = ''\n")
    assert offenders("def digests(self) -> list[str]: ...")
    assert offenders("def f(key_or_digest: str) -> None: ...")
    assert not offenders("def f(digest: bytes, digests: list[bytes]) -> None: ...")
    assert not offenders("def f(sha256: bytes | None, chunks: dict[str, int]) -> None: ...")
    assert not offenders("def f(max_digests: int, is_digest: bool) -> None: ...")
    assert not offenders("def f(key_or_digest: str | bytes) -> None: ...")
    assert not offenders("class ChunkRef:\n    digest: bytes\n    size: int\n")
    assert not offenders("def digests(self) -> list[bytes]: ...")
    assert not offenders("def digest_of_name(name: str) -> bytes | None: ...")


@pytest.mark.parametrize("package", INSIDE)
def test_digests_are_bytes_inside_the_package(package: str) -> None:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        found += [f"{path.relative_to(ROOT)}:{o}" for o in offenders(path.read_text())]
    assert not found, "digests inside the package are bytes (hex only at the borders):\n" + (
        "\n".join(found)
    )


def test_the_swarm_surface_is_covered() -> None:
    """The swarm's exported classes and functions take digests by these names, so the rule
    above sees them (a rename to something it does not match would slip past)."""
    import inspect

    import frumitcache.swarm as swarm

    named = set()
    for name in swarm.__all__:
        obj = getattr(swarm, name)
        members = [obj] + [m for _, m in inspect.getmembers(obj, inspect.isfunction)]
        for member in members:
            if callable(member) and not isinstance(member, type):
                named |= {p for p in inspect.signature(member).parameters if DIGEST_NAME.match(p)}
    assert {"digest"} <= named
    for fn in (swarm.Swarm.seed, swarm.Swarm.fetch_chunk, swarm.HttpChunkClient.fetch):
        assert inspect.signature(fn).parameters["digest"].annotation == "bytes"
    assert swarm.ChunkRef.__annotations__["digest"] == "bytes"
