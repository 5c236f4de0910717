"""The container-pull herd (``python -m bench.herd --shaped --scenario oci``): N Pis pull one
image (``--size`` bytes in 3 layers and a small base) at once with real ``skopeo``, from a real
``docker-registry`` behind the shaped uplink, for three systems side by side:

* ``frumitcache``: an agent per Pi (one site), each Pi pulling through its own registry mirror
  (``<pi>:3146/lab.example/...``);
* ``central``: one ``docker-registry`` in proxy mode (a pull-through cache) on Pi 0, every Pi
  pulling through it;
* ``direct``: every Pi pulls from the upstream registry itself.

Per system one row (as the file herd's): ``bytes`` (the image: every blob a pull needs),
``uplink_bytes`` (body bytes the upstream registry sent, from its access log), ``uplink_ratio``,
``manifest_gets`` / ``manifest_heads`` (upstream manifest requests), ``t_last_s`` (the last
Pi's pull), ``t_bound_s`` (:func:`bench._report.lower_bound` of the image's bytes, as for a file
herd), ``bound_ratio``, ``verified`` (every Pi's layout holds exactly the image's blobs); for
frumitcache also ``site_manifest_gets_spared`` (the seeder's figure) and each Pi's own.
The image building, the client and the upstream figures are :mod:`bench.oci`'s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from bench._report import lower_bound
from bench._systems import Frumitcache, NotRunnable
from bench._testbed import Host, Testbed, wait_listening
from bench.oci import NAME, PREFIX, build_image, image_bytes, pull_argv, upstream_figures, verified
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import REGISTRY_ENV, Layout, RegistryProcess, skopeo_push

if TYPE_CHECKING:
    from bench.herd import Run

REGISTRY_PORT = 5000
LAYERS = 3


class Upstream:
    """The upstream registry on the origin host (behind the uplink), the image pushed to it."""

    def __init__(self, bed: Testbed, work: Path, size: int) -> None:
        self.layout: Layout = build_image(work, size, LAYERS)
        self.image = image_bytes(self.layout)
        # Pushed from this namespace into the registry's storage, which the namespaced
        # registry then serves (skopeo needs no namespace of its own that way).
        staging = RegistryProcess(work / "upstream", loopback_address(), REGISTRY_PORT)
        staging.start()
        try:
            skopeo_push(self.layout.path, "v1", f"{staging.host}/{NAME}:v1")
        finally:
            staging.stop()
        self.registry = RegistryProcess(work / "upstream", bed.origin_host.address, REGISTRY_PORT)
        start_registry(bed, bed.origin_host, self.registry)

    @property
    def host(self) -> str:
        return self.registry.host


def start_registry(bed: Testbed, host: Host, registry: RegistryProcess) -> None:
    """``docker-registry`` on ``host`` (its namespace, its cgroup if a Pi), owned by ``bed``."""
    argv = registry.argv()
    with registry.log_path.open("ab") as log:
        registry.proc = bed.spawn(
            host,
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **REGISTRY_ENV},
        )
    wait_listening(host, registry.port, registry.proc, 20.0)


async def _herd(run: Run, sources: list[str], out: Path, layout: Layout) -> dict[str, Any]:
    from bench.herd import wait_exit

    bed = run.bed
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any task starts
    times: list[float | None] = [None] * bed.nodes
    procs: list[subprocess.Popen[bytes]] = []
    t0 = trio.current_time()

    async def client(i: int) -> None:
        if await wait_exit(procs[i]) == 0:
            times[i] = trio.current_time() - t0

    limit = run.limit_s(run.size)
    with trio.move_on_after(limit) as scope:
        async with trio.open_nursery() as nursery:
            for i, source in enumerate(sources):
                with (out / f"pi{i}.err").open("wb") as err:
                    argv = [*bed.pis[i].prefix, *pull_argv(source, out / f"pi{i}")]
                    procs.append(bed.spawn_argv(argv, stderr=err, pi=i))
            for i in range(bed.nodes):
                nursery.start_soon(client, i)
    for proc in procs:
        bed.kill(proc)
    good = [verified(out / f"pi{i}", layout) for i in range(bed.nodes)]
    done = [t for t, ok in zip(times, good, strict=True) if t is not None and ok]
    errors = {
        f"pi{i}": (out / f"pi{i}.err").read_text(errors="replace").strip()[-300:]
        for i in range(bed.nodes)
        if times[i] is None
    }
    shutil.rmtree(out, ignore_errors=True)
    return {
        "t_last_s": max(done) if len(done) == bed.nodes else None,
        "times_s": times,
        "verified": all(good),
        "completed": len(done),
        "live_nodes": bed.nodes,
        **({"errors": errors} if errors else {}),
        **({"notes": [f"timed out after {limit:.0f} s"]} if scope.cancelled_caught else {}),
    }


async def _spared(system: Frumitcache) -> dict[str, Any]:
    """The site's manifest GETs spared (the seeder's figure) and each Pi's own count."""
    statuses = await system.statuses()
    site = None
    own: list[int] = []
    for status in statuses:
        counters = status.oci_counters or {}
        own.append(int(counters.get("manifest_gets_spared", 0)))
        if "site_manifest_gets_spared" in counters and status.site.get("seeder") == status.node:
            site = int(counters["site_manifest_gets_spared"])
    return {"site_manifest_gets_spared": site, "manifest_gets_spared_per_pi": own}


async def oci_row(run: Run, name: str) -> dict[str, Any]:
    """One system's container-pull herd; see the module docstring."""
    bed = run.bed
    row = run.base_row("oci", name)
    if bed.mode != "shaped":
        raise NotRunnable("the registry herd needs --shaped (loopback: python -m bench.oci)")
    if run.oci is None:
        run.log("oci: building the image and the upstream registry ...")
        run.oci = await trio.to_thread.run_sync(Upstream, bed, run.work / "oci", run.size)
    up: Upstream = run.oci
    work = run.work / "systems" / f"oci-{name}"
    start = len(up.registry.requests())
    system: Frumitcache | None = None
    central: RegistryProcess | None = None
    try:
        if name == "frumitcache":
            system = Frumitcache(bed, work)
            system.extra = {
                "oci": {
                    "enabled": True,
                    "listen": "0.0.0.0",  # noqa: S104 - inside the Pi's own namespace
                    "registries": [f"{PREFIX}=http://{up.host}"],
                    "allowed_hosts": [f"{up.registry.address}:*"],
                }
            }
            await system.start()
            sources = [f"{pi.address}:3146/{PREFIX}/{NAME}:v1" for pi in bed.pis]
        elif name == "central":
            pi0 = bed.pis[0]
            central = RegistryProcess(
                work / "central", pi0.address, REGISTRY_PORT, proxy_remote=f"http://{up.host}"
            )
            await trio.to_thread.run_sync(start_registry, bed, pi0, central)
            sources = [f"{central.host}/{NAME}:v1"] * bed.nodes
        else:
            sources = [f"{up.host}/{NAME}:v1"] * bed.nodes
        cpu_before = system.cpu() if system else 0.0
        budget_before = run.budget_before()
        herd = await _herd(run, sources, work / "out", up.layout)
        figures = upstream_figures(up.registry, start, up.image)
        bound = lower_bound(up.image, bed.nodes, bed.rates)
        t_last = herd["t_last_s"]
        row.update(
            bytes=up.image,
            layers=LAYERS + 1,  # and the small shared base layer
            **figures,
            t_bound_s=bound,
            bound_ratio=(t_last / bound) if t_last is not None and bound else None,
            **herd,
            **run.budget_figures(budget_before, herd["completed"] * up.image),
        )
        if system is not None:
            row.update(await _spared(system))
            row.update(max_rss_mb=system.max_rss_mb(), cpu_s=system.cpu() - cpu_before)
            if system.notes():
                row.setdefault("notes", []).extend(system.notes())
        return row
    finally:
        with trio.CancelScope(shield=True):
            if system is not None:
                await system.stop()
        if central is not None and central.proc is not None:
            bed.kill(central.proc)
        if not run.args.keep:
            shutil.rmtree(work, ignore_errors=True)
