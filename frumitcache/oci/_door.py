"""The registry door as the agent starts it: one ``await nursery.start(serve_registry, ...)``.

Loads ``oci.credentials_file`` (if any), registers the Bearer token hook for door ``oci`` on the
content source (on a site only the seeder's hook signs upstream requests), and serves the mirror
until cancelled, reporting the bound ``(host, port)``.

A port that cannot be bound (in use, no such address) is logged as ``oci.unavailable`` and
reported as ``None``: the registry door is off, and the agent's other doors go on serving.
"""

from __future__ import annotations

import trio

from frumitcache._log import get_logger
from frumitcache.config import OciConfig
from frumitcache.content import ContentSource
from frumitcache.oci._auth import Credentials, load_credentials
from frumitcache.oci._authhook import RegistryAuth, TokenGet
from frumitcache.oci._metrics import RegistryMetrics
from frumitcache.oci._server import RegistryMirror
from frumitcache.oci._source import RegistryContent

log = get_logger("oci")


async def serve_registry(
    config: OciConfig,
    source: ContentSource,
    token_get: TokenGet,
    *,
    metrics: RegistryMetrics | None = None,
    task_status: trio.TaskStatus[tuple[str, int] | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    credentials: dict[str, Credentials] = {}
    if config.credentials_file:
        credentials = await trio.to_thread.run_sync(load_credentials, config.credentials_file)
    mirror = RegistryMirror(config, RegistryContent(source), metrics=metrics)
    auth = RegistryAuth(mirror.registries, token_get, credentials=credentials)
    mirror.auth = auth
    source.set_upstream_auth("oci", auth)
    log.info(
        "registry mirror",
        registries=",".join(mirror.registries),
        credentials=f"{len(credentials)} registries" if credentials else "none",
    )
    try:
        listeners = await trio.open_tcp_listeners(config.port, host=config.listen)
    except OSError as exc:
        log.error(
            "oci.unavailable",
            address=f"{config.listen}:{config.port}",
            error=exc.strerror or str(exc),
            detail="registry mirror off; the agent's other doors serve on "
            "(change oci.listen / oci.port, or oci.enabled = false)",
        )
        task_status.started(None)
        return
    await mirror.serve(listeners, task_status=task_status)
