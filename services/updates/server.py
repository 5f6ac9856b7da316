"""The updates service process (asyncio): updates.getState, getDifference and getChannelDifference over internal RPC.

``python -m services.updates`` reads ``MTLAB_UPDATES_*``, ``MTLAB_SHARD_*``, ``MTLAB_POSTGRES_DSN``; opens the shard
map the message service prepared (the supervisor starts that service first), then serves internal RPC and
``/metrics`` + ``/healthz`` (healthy while the main database and every physical shard answer). It only reads:
the logs it serves are written by the message service. SIGINT/SIGTERM stop it.

Live push (``push.py``): the gateways attach a ``push.attach`` stream and register their users; the notes the
message service publishes on Redis after each commit become pushes on those streams. Redis away: pushes stop (the
clients' getDifference still works) and resume, with a resync, once it is back.
"""

from __future__ import annotations

import logging
import sys

import anyio

from mtproto.tl.internal.functions import push as push_fn
from services.common import db, service
from services.common.config import (
    DataConfig,
    ShardConfig,
    UpdatesConfig,
    data_config,
    shard_config,
    updates_config,
)
from services.updates import push
from services.updates.difference import METHODS, Updates
from shard_db import Shards

log = logging.getLogger("mtlab.updates")


async def main(config: UpdatesConfig, shard_cfg: ShardConfig, data: DataConfig) -> None:
    try:
        shards = await Shards.open(data.postgres_dsn, shard_cfg)
        main_pool = await db.create_pool(data.postgres_dsn, max_size=config.pool_size, reset=False)
    except Exception as exc:  # the service cannot run without its databases: say why and stop
        sys.exit(f"mtlab updates: cannot open the shard map on {data.postgres_dsn}: {type(exc).__name__}: {exc}")
    deps = Updates(config, shards, main_pool)
    pusher = push.Pusher(shards, main_pool)
    server = service.rpc_server("updates", deps, METHODS, log, streams={push_fn.Attach.CONSTRUCTOR_ID: pusher.attach})
    server.handlers = {**server.handlers, **{
        cls.CONSTRUCTOR_ID: service.rpc_handler("updates", pusher, cls, fn, log) for cls, fn in push.METHODS.items()}}
    try:
        async def healthy() -> bool:
            return await db.ping(main_pool) and await shards.healthy()

        async def listen() -> None:
            await pusher.listen(data.redis_url)

        async def workers() -> None:
            await pusher.run(config.push_workers)

        await service.serve("updates", server, host=config.host, rpc_port=config.rpc_port,
                            metrics_port=config.metrics_port, healthy=healthy, background=(listen, workers), log=log)
    finally:
        with anyio.CancelScope(shield=True):
            await shards.close()
            await main_pool.close()


def run() -> None:
    service.run("updates", main, updates_config, shard_config, data_config)
