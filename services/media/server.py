"""The media service process (asyncio): upload.*, media.attach, the sweeper, /metrics.

``python -m services.media`` reads ``MTLAB_MEDIA_*``, ``MTLAB_POSTGRES_DSN`` (``MTLAB_REDIS_URL`` is not used);
migrates the main database (its tables are ``shard_db/migrations/main/005_media.sql``, applied with the other
main-database migrations under the same advisory lock, so it may start before or after the message service);
opens the blob store (``MTLAB_MEDIA_DIR``, default ``<data dir>/media``), deleting what a crash left in its
``tmp/``; then serves:

- internal RPC on ``rpc_port``: ``upload.saveFilePart``, ``saveBigFilePart``, ``getFile``, ``getFileHashes`` (the
  gateways route ``upload.*`` here) and ``media.attach`` (the message service's);
- the sweeper (sweep.py), every ``sweep_interval`` seconds: expired uploads, files no message carries any more
  (release.py), orphaned blobs;
- ``/metrics`` and ``/healthz`` on ``metrics_port``: healthy while the main database answers and the store is
  writable.

It calls the message service at ``messages_host``:``messages_port`` (files.memberOf: may a channel's member read
its file; files.inUse: the release), reconnecting until it answers; without one, a channel's file is read only by
its readers by name and nothing is released.

SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import anyio

from services.common import db, service
from services.common.config import DataConfig, MediaConfig, data_config, media_config
from services.common.migrations import migrate
from services.common.rpc import RpcClient
from services.media import sweep
from services.media.blobs import LocalBlobs
from services.media.handlers import METHODS, Media
from shard_db.layout import MAIN_MIGRATIONS

log = logging.getLogger("mtlab.media")


async def main(config: MediaConfig, data: DataConfig) -> None:
    try:
        pool = await db.create_pool(data.postgres_dsn, max_size=config.pool_size, reset=False)
        await migrate(pool, MAIN_MIGRATIONS, namespace="shard_map")
    except Exception as exc:  # the service cannot run without its database: say why and stop
        sys.exit(f"mtlab media: cannot open the main database {data.postgres_dsn}: {type(exc).__name__}: {exc}")
    blobs = LocalBlobs(config.storage_dir)
    try:
        removed = blobs.open()
    except OSError as exc:
        sys.exit(f"mtlab media: cannot use the blob store {config.storage_dir}: {exc}")
    if removed:
        log.info("removed %d temp files an interrupted assembly left", removed)
    log.info("blob store in %s", config.storage_dir)
    deps = Media(config, pool, blobs)
    try:
        async def healthy() -> bool:
            return await db.ping(pool) and os.access(blobs.blobs, os.W_OK)

        async def sweeper() -> None:
            await sweep.run(deps)

        async with contextlib.AsyncExitStack() as clients:
            if config.messages_host:
                deps.messages = await clients.enter_async_context(
                    RpcClient("messages", config.messages_host, config.messages_port))
            await service.serve("media", service.rpc_server("media", deps, METHODS, log), host=config.host,
                                rpc_port=config.rpc_port, metrics_port=config.metrics_port, healthy=healthy,
                                background=[sweeper], log=log)
    finally:
        with anyio.CancelScope(shield=True):
            await pool.close()


def run() -> None:
    service.run("media", main, media_config, data_config)
