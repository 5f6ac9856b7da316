"""The message service process: config, the shard layout, internal RPC, the outbox sweeper and /metrics (asyncio).

``python -m services.messages`` reads ``MTLAB_MESSAGES_*``, ``MTLAB_SHARD_*``, ``MTLAB_POSTGRES_DSN`` and
``MTLAB_REDIS_URL``; prepares the shard layout (``shard_db.prepare``: the map in the main database, every
physical shard migrated; a no-op once done); then serves:

- internal RPC (services/common/rpc.py) on ``rpc_port``: every method of ``METHODS``, and sendMedia/uploadMedia
  (media.py), which call the media service at ``media_host``:``media_port``;
- the outbox sweeper: every ``outbox_interval`` seconds, the cross-shard changes a request left behind
  (outbox.py);
- ``/metrics`` and ``/healthz`` on ``metrics_port``: healthy while the main database and every physical shard
  answer.

SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import anyio

from services.common import db, service
from services.common import redis as redis_
from services.common.config import (
    DataConfig,
    MessagesConfig,
    ShardConfig,
    data_config,
    messages_config,
    shard_config,
)
from services.common.rpc import RpcClient, RpcServer
from services.messages import channels, contacts, groups, handlers, media, outbox, secret
from services.messages.handlers import Messages
from shard_db import Shards, prepare

log = logging.getLogger("mtlab.messages")

#: Every method this service answers; channels.py takes over the messages.* methods whose peer may be a channel.
METHODS = handlers.METHODS | contacts.METHODS | groups.METHODS | channels.METHODS | secret.METHODS


async def sweeper(deps: Messages, interval: float, batch: int) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            applied = await outbox.sweep(deps, older_than=interval, batch=batch)
        except Exception as exc:
            log.warning("outbox sweep failed: %s: %s", type(exc).__name__, exc)
            continue
        if applied:
            log.info("outbox sweep applied %d rows left behind", applied)


async def main(config: MessagesConfig, shard_cfg: ShardConfig, data: DataConfig) -> None:
    try:
        shard_map = await prepare(data.postgres_dsn, shard_cfg, progress=lambda text: log.info("shards: %s", text))
        main_pool = await db.create_pool(data.postgres_dsn, max_size=config.pool_size, reset=False)
    except Exception as exc:  # the service cannot run without its databases: say why and stop
        sys.exit(f"mtlab messages: cannot prepare the shards on {data.postgres_dsn}: {type(exc).__name__}: {exc}")
    shards = await Shards.open(data.postgres_dsn, shard_cfg, txn_retries=config.txn_retries)
    redis = redis_.connect(data.redis_url)
    log.info("%d logical shards on %d databases", shard_map.logical, len(shard_map.dsns))
    deps = Messages(config, shards, main_pool, redis)
    try:
        async def healthy() -> bool:
            return await db.ping(main_pool) and await shards.healthy()

        async with contextlib.AsyncExitStack() as clients:
            # messages.sendMedia/uploadMedia (media.py) hand files to the media service over internal RPC.
            media_client = None if not config.media_host else await clients.enter_async_context(
                RpcClient("media", config.media_host, config.media_port))
            server = RpcServer("messages", service.rpc_handlers("messages", deps, METHODS, log)
                               | service.rpc_handlers("messages", media.MediaLink(deps, media_client), media.METHODS,
                                                      log))
            await service.serve("messages", server, host=config.host, rpc_port=config.rpc_port,
                                metrics_port=config.metrics_port, healthy=healthy,
                                background=[lambda: sweeper(deps, config.outbox_interval, config.outbox_batch)],
                                log=log)
    finally:
        with anyio.CancelScope(shield=True):
            await shards.close()
            await main_pool.close()
            await redis.aclose()


def run() -> None:
    service.run("messages", main, messages_config, shard_config, data_config)
