"""A signed Debian repository built in the test, a one-node agent, and real apt-get clients.

The repository is made of real packages (``dpkg-deb --build``), indexed with
``apt-ftparchive`` (by-hash on) and signed with a throw-away gpg key; the test origin serves it
on a loopback address. Each :class:`AptClient` has its own state, cache and sources, and
talks to the proxy either as ``Acquire::http::Proxy`` or in the URL-prefix form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from frumitcache.agent import ContentService
from frumitcache.apt import AptProxy, HashBook
from frumitcache.config import AptConfig, OriginConfig
from frumitcache.content import ContentSource
from frumitcache.testing.aptrepo import (
    AptClient,
    RepoBuilder,
    make_client,
    new_repo_builder,
)
from frumitcache.testing.aptrepo import missing_tools as _missing_tools
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer


@pytest.fixture(scope="session")
def repo_builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepoBuilder]:
    missing = _missing_tools()
    if missing:
        pytest.skip(
            f"needs {', '.join(missing)} (install apt-utils dpkg-dev gnupg xz-utils as root)"
        )
    builder = new_repo_builder(tmp_path_factory.mktemp("aptrepo"))
    try:
        yield builder
    finally:
        builder.close()


@dataclass
class OneNode:
    """A one-node agent (store + fetcher + content service + AptProxy) and its test origin."""

    root: Path  # what the origin serves
    builder: RepoBuilder
    tmp: Path
    nursery: trio.Nursery
    origin: OriginServer = field(init=False)
    origin_addr: str = field(init=False)
    origin_port: int = 0
    proxy: AptProxy = field(init=False)
    proxy_addr: tuple[str, int] = ("", 0)
    store: object = None
    source: ContentSource = field(init=False)
    _origin_scope: trio.CancelScope | None = None
    _clients: int = 0
    clock_offset: float = 0.0

    def clock(self) -> float:
        return trio.current_time() + self.clock_offset

    def pass_the_window(self) -> None:
        """Move the source's clock past the index window."""
        self.clock_offset += WINDOW_S + 1

    @property
    def origin_authority(self) -> str:
        return f"{self.origin_addr}:{self.origin_port}"

    async def start_origin(self) -> None:
        self.origin = OriginServer(self.root)

        async def serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                self._origin_scope = scope
                await self.origin.serve(self.origin_addr, self.origin_port, task_status=task_status)

        self.origin_port = await self.nursery.start(serve)

    def stop_origin(self) -> None:
        assert self._origin_scope is not None
        self._origin_scope.cancel()

    def client(
        self, *, prefix_form: bool = False, options: dict[str, str] | None = None
    ) -> AptClient:
        self._clients += 1
        home = self.tmp / f"client{self._clients}"
        host, port = self.proxy_addr
        if prefix_form:
            url, proxy = f"http://{host}:{port}/{self.origin_authority}/debian", None
        else:
            url, proxy = f"http://{self.origin_authority}/debian", f"http://{host}:{port}"
        return make_client(home, self.builder.keyring, url, proxy, options)


# The index window, on a clock the tests move (real time never ends it mid-test).
WINDOW_S = 600.0


@pytest.fixture
async def one_node(repo_builder: RepoBuilder, tmp_path: Path) -> AsyncIterator[OneNode]:
    from frumitcache.origin import OriginFetcher
    from frumitcache.store import Store

    root = tmp_path / "origin"
    repo_builder.publish(root, {"pkga": "1.0", "pkgb": "1.0", "pkgc": "1.0"})
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=64 * 1024)
    hashes = HashBook(tmp_path / "apt-hashes.sqlite")
    fetcher = OriginFetcher(
        OriginConfig(
            connect_timeout_s=2, read_timeout_s=5, retries=1, allow=["127.0.0.0/8:*", "[::1]:*"]
        ),
        store,
    )
    try:
        async with trio.open_nursery() as nursery:
            node = OneNode(root, repo_builder, tmp_path, nursery)
            node.origin_addr = loopback_address()
            await node.start_origin()
            config = AptConfig(
                port=0,
                listen=loopback_address(),
                allowed_hosts=[node.origin_authority],
                index_window_s=WINDOW_S,
            )
            node.store = store
            content = ContentService(
                store, fetcher, nursery, index_window_s=WINDOW_S, clock=node.clock
            )
            node.source = content.source
            node.proxy = AptProxy(config, node.source, hashes=hashes)
            node.proxy_addr = await nursery.start(node.proxy.serve)
            yield node
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        hashes.close()
        store.close()
