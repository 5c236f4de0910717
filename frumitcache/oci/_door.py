"""The registry door as the agent starts it: one ``await nursery.start(serve_registry, ...)``.

Loads ``oci.credentials_file`` (if any), registers the Bearer token hook for door ``oci`` on the
content source (on a site only the seeder's hook signs upstream requests), and serves the mirror
until cancelled, reporting the bound ``(host, port)``.
"""

from __future__ import annotations

import trio

from frumitcache._log import get_logger
from frumitcache.config import OciConfig
from frumitcache.content import ContentSource
from frumitcache.oci._auth import Credentials, load_credentials
from frumitcache.oci._authhook import RegistryAuth, TokenGet
from frumitcache.oci._server import RegistryMirror
from frumitcache.oci._source import RegistryContent

log = get_logger("oci")


async def serve_registry(
    config: OciConfig,
    source: ContentSource,
    token_get: TokenGet,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    credentials: dict[str, Credentials] = {}
    if config.credentials_file:
        credentials = await trio.to_thread.run_sync(load_credentials, config.credentials_file)
    mirror = RegistryMirror(config, RegistryContent(source))
    auth = RegistryAuth(mirror.registries, token_get, credentials=credentials)
    mirror.auth = auth
    source.set_upstream_auth("oci", auth)
    log.info(
        "registry mirror",
        registries=",".join(mirror.registries),
        credentials=f"{len(credentials)} registries" if credentials else "none",
    )
    await mirror.serve(task_status=task_status)
