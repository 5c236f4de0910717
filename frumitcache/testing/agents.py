"""Real agent processes for tests and benchmarks.

:class:`AgentProcess` writes a config file, starts ``python -m frumitcache agent`` as a child
process with its own loopback address (its apt and registry doors listen there), store and
control socket, waits until its banner says it serves, and stops it by pid: SIGTERM for a
clean stop, SIGKILL for a crash. Output goes to
files in the node's directory so a failing test can show the agent's log. The child's
environment is this process's plus ``env`` (say ``SSL_CERT_FILE`` for a test CA); ``args``
are added to its command line, and ``prefix`` goes before it (``ip netns exec NS``: the pid
is then that of ``ip``, which execs the agent in place).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from frumitcache.client import AgentClient
from frumitcache.config import dump_toml

READY_LINE = "stop with Ctrl-C"
LOOPBACK_ORIGINS = ["*", "127.0.0.0/8:*", "[::1]:*"]  # origin.allow of test agents


class AgentProcess:
    """One agent child process; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        address: str,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.args = list(args)  # extra command-line arguments (e.g. --set apt.port=N)
        self.prefix = list(prefix)  # a command that runs the agent (ip netns exec NS)
        self.env = dict(env or {})  # extra environment of the child (e.g. SSL_CERT_FILE)
        self.address = address
        self.socket = directory / "agent.sock"
        self.store = directory / "store"
        self.config_path = directory / "frumitcache.toml"
        self.stdout_path = directory / "agent.out"
        self.stderr_path = directory / "agent.log"
        config: dict[str, dict[str, Any]] = {
            "node": {
                "address": address,
                "name": f"node-{address}",
                "state_dir": str(directory / "state"),
            },
            "store": {"path": str(self.store)},
            "control": {"socket": str(self.socket)},
            "apt": {"enabled": False, "listen": address},
            # Each agent's registry mirror on its own address (the port is the default): test
            # agents on one machine never race for one oci.port.
            "oci": {"listen": address},
            # Test origins live on loopback, which a pattern such as "*" never reaches: the
            # harness names loopback explicitly (tests of the allow-list override this).
            "origin": {"allow": LOOPBACK_ORIGINS},
        }
        for section, values in (settings or {}).items():
            config.setdefault(section, {}).update(values)
        self.settings = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def banner(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    async def start(self, *, patience_s: float = 30.0) -> None:
        """Start the process and wait until it serves (its banner is printed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(dump_toml(self.settings))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FRUMITCACHE_CONFIG", None)
        env.update(self.env)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            # Popen, not trio's process API: fixtures and finally blocks must be able to kill
            # and reap the agent synchronously, whatever state the trio run is in.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    *self.prefix,
                    sys.executable,
                    "-m",
                    "frumitcache",
                    "agent",
                    "--config",
                    str(self.config_path),
                    *self.args,
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        with trio.move_on_after(patience_s):
            while READY_LINE not in self.banner():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"agent exited with {self.proc.returncode}\n{self.log()}")
                await trio.sleep(0.05)
            return
        self.kill()
        raise RuntimeError(f"agent not ready after {patience_s}s\n{self.log()}")

    async def wait(self, *, patience_s: float = 30.0) -> int:
        assert self.proc is not None
        with trio.move_on_after(patience_s):
            while self.proc.poll() is None:  # noqa: ASYNC110 - polling a child process
                await trio.sleep(0.05)
            return self.proc.returncode
        raise RuntimeError(f"agent {self.pid} did not exit within {patience_s}s\n{self.log()}")

    async def stop(self, sig: int = signal.SIGTERM, *, patience_s: float = 30.0) -> int:
        """Send ``sig`` (SIGTERM: clean stop) and wait for the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return await self.wait(patience_s=patience_s)
        except RuntimeError:
            self.kill()
            raise

    async def pull(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        """``frumitcache pull ARGS`` against this agent's socket (a real client process);
        the caller checks the exit code."""
        return await trio.run_process(
            [sys.executable, "-m", "frumitcache", "pull", *args, "--socket", str(self.socket)],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )

    async def site_status(self) -> dict[str, Any]:
        """The ``site`` part of this agent's status."""
        return (await AgentClient(self.socket).status()).site

    def kill(self) -> None:
        """SIGKILL by pid: a crash or power cut, as far as the agent can tell."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
