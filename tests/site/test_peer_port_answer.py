"""What a connect to a member's peer port says of its process (:func:`peer_port_answer`), over
real sockets: accepted by a listener, also a SIGSTOPped one (its kernel completes the
handshake: a paused seeder lives); refused once nothing listens; nothing at all from an
address its frames did not come from."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import trio

from frumitcache.site._probe import peer_port_answer
from frumitcache.testing.net import loopback_address

LISTENER = """
import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


async def test_a_listening_port_is_accepted_and_a_closed_one_refused() -> None:
    address = loopback_address()
    listener = trio.socket.socket()
    await listener.bind((address, 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    source = (address, 3143)
    assert await peer_port_answer(address, port, source, timeout_s=2.0) is True
    listener.close()
    assert await peer_port_answer(address, port, source, timeout_s=2.0) is False


async def test_a_paused_process_still_answers_a_connect() -> None:
    address = loopback_address()
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", LISTENER, address], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                line += await child.stdout.receive_some(64)
        port = int(line)
        os.kill(child.pid, signal.SIGSTOP)
        assert await peer_port_answer(address, port, (address, 1), timeout_s=2.0) is True
        child.kill()  # SIGKILL reaches a stopped process; its socket goes with it
        await child.wait()
        assert await peer_port_answer(address, port, (address, 1), timeout_s=2.0) is False
    finally:
        child.kill()
        with trio.CancelScope(shield=True):
            await child.wait()
            if child.stdout is not None:
                await child.stdout.aclose()


async def test_only_the_address_its_frames_came_from_is_probed() -> None:
    address = loopback_address()
    with socket.socket() as closed:
        closed.bind((address, 0))
        port = closed.getsockname()[1]
    other = "127.0.0.1" if address != "127.0.0.1" else "127.0.0.2"
    assert await peer_port_answer(address, port, (other, 3143), timeout_s=2.0) is None
    assert await peer_port_answer(address, port, None, timeout_s=2.0) is None
    assert await peer_port_answer(address, port, (address, 3143), timeout_s=2.0) is False
