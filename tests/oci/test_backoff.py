"""A registry that cannot be reached is backed off per registry: a burst of client requests
makes a bounded number of connection attempts (counted on a real listener that accepts and
drops, standing between the agent and a real HTTP test origin), held tags are served meanwhile,
misses are answered with the spec's 404 at once, and once the registry is back (and the backoff
has passed) it is asked again and serves."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.registry import OCI_INDEX

from ._mirror import mirror

pytestmark = pytest.mark.slow

BACKOFF_S = 2.0
RETRIES = 2
TAG = "/v2/team/app/manifests/v1"


class Gate:
    """A TCP listener in front of the origin: forwards while ``up``, else accepts and drops
    (every connection it accepts is one attempt of the agent's uplink client); ``silent``:
    accepts and never answers (a registry that hangs: the client's timeout ends it)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.up = True
        self.silent = False
        self.dropped = 0
        self._open: set[trio.CancelScope] = set()

    def down(self) -> None:
        """Drop new connections, and cut the open ones (the agent keeps them alive)."""
        self.up = False
        for scope in self._open:
            scope.cancel()

    def hang(self) -> None:
        """Answer nothing on new connections, and cut the open ones."""
        self.silent = True
        for scope in self._open:
            scope.cancel()

    async def serve(self, address: str, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host=address)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._one, listeners)

    async def _one(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                self.dropped += 1
                return
            if self.silent:
                self.dropped += 1
                with contextlib.suppress(trio.BrokenResourceError):
                    while await client.receive_some(65536):  # until the client gives up
                        pass
                return
            server = await trio.open_tcp_stream(*self.upstream)
            async with server, trio.open_nursery() as nursery:
                self._open.add(nursery.cancel_scope)
                nursery.start_soon(self._pipe, client, server, nursery)
                nursery.start_soon(self._pipe, server, client, nursery)
            self._open.discard(nursery.cancel_scope)

    @staticmethod
    async def _pipe(a: trio.SocketStream, b: trio.SocketStream, nursery: trio.Nursery) -> None:
        try:
            while data := await a.receive_some(65536):
                await b.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel()


async def test_unreachable_registry_is_backed_off_then_asked_again(
    origin: OriginServer, nursery: trio.Nursery, tmp_path: Path
) -> None:
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    origin.add(TAG, index, content_type=OCI_INDEX)
    blob = b"layer bytes " * 1000
    blob_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    blob_path = f"/v2/team/app/blobs/{blob_digest}"
    origin.add(blob_path, blob)
    target = urlsplit(origin.url("/"))
    assert target.hostname is not None
    assert target.port is not None
    gate = Gate((target.hostname, target.port))
    gate_address = loopback_address()
    port = await nursery.start(gate.serve, gate_address)
    host = f"{gate_address}:{port}"
    oci = {
        "tag_window_s": 0.5,
        "unreachable_backoff_s": BACKOFF_S,
        "unreachable_backoff_max_s": BACKOFF_S,
    }
    settings = {"retries": RETRIES, "connect_timeout_s": 2.0}
    async with mirror(tmp_path, host, oci=oci, origin_settings=settings, timeout_s=30) as m:
        assert (await m.get(TAG)).status_code == 200  # held from now on
        gate.down()
        await trio.sleep(1.0)  # past the tag window: the tag is due again

        answers: list[tuple[str, int]] = []

        async def one(path: str) -> None:
            answers.append((path, (await m.get(path)).status_code))

        started = trio.current_time()
        for _round in range(3):
            async with trio.open_nursery() as burst:
                for _ in range(10):
                    burst.start_soon(one, TAG)
                    burst.start_soon(one, blob_path)
        elapsed = trio.current_time() - started
        # Held: the tag; a miss: the blob, answered with the spec's 404 (containerd goes on
        # to its next host).
        assert {(p, s) for p, s in answers} == {(TAG, 200), (blob_path, 404)}
        # One admitted fetch per backoff period at most (plus the first), each making at
        # most 1 + RETRIES connections: not one attempt (or six) per request.
        periods = 1 + math.ceil(elapsed / BACKOFF_S)
        assert 1 <= gate.dropped <= (1 + RETRIES) * periods, (gate.dropped, elapsed)
        assert gate.dropped < len(answers)
        status = await AgentClient(m.agent.socket).status()
        assert status.origin["backed_off"] > 0, status.origin

        # The registry is back: asked again once the backoff has passed, and it serves.
        gate.up = True
        with trio.fail_after(BACKOFF_S * 10):
            while (answer := await m.get(blob_path)).status_code != 200:  # noqa: ASYNC110 - polls a real server
                await trio.sleep(0.2)
        assert answer.content == blob
        assert (await m.get(TAG)).status_code == 200
        backoff_lines = [line for line in m.agent.log().splitlines() if "fetch.backoff" in line]
        assert backoff_lines, m.agent.log()
        assert "Traceback" not in m.agent.log()
