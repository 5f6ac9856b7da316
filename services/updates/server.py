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
from typing import Any

import anyio

from mtproto.tl.api.functions.updates import GetDifference, GetState
from mtproto.tl.api.types.updates import TypeDifference, TypeState
from mtproto.tl.internal.functions import push as push_fn
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import TLFunction
from services.common import db, service
from services.common import redis as redis_
from services.common.config import (
    DataConfig,
    ShardConfig,
    UpdatesConfig,
    data_config,
    shard_config,
    updates_config,
)
from services.common.rpc import RpcServer
from services.updates import difference, presence, push
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
    redis = redis_.connect(data.redis_url)
    pusher = push.Pusher(shards, main_pool)

    async def get_state(deps: Updates, ctx: rpc.Context, q: GetState) -> TypeState:
        state = await difference.get_state(deps, ctx, q)
        pusher.client_at(ctx.user_id or 0, state.pts)
        return state

    async def get_difference(deps: Updates, ctx: rpc.Context, q: GetDifference) -> TypeDifference:
        answer = await difference.get_difference(deps, ctx, q)
        state = getattr(answer, "state", None) or getattr(answer, "intermediate_state", None)
        if state is not None:
            pusher.client_at(ctx.user_id or 0, state.pts)
        return answer

    # The pusher hears what getState and getDifference tell a client: it pushes from there (push.client_at).
    methods: dict[type[TLFunction[Any]], difference.Method] = {**METHODS, GetState: get_state,
                                                              GetDifference: get_difference}
    handlers = {**service.rpc_handlers("updates", deps, methods, log),
                **service.rpc_handlers("updates", pusher, push.METHODS, log),
                **service.rpc_handlers("updates", presence.Presence(pusher, redis), presence.METHODS, log)}
    server = RpcServer("updates", handlers, {push_fn.Attach.CONSTRUCTOR_ID: pusher.attach})
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
            await redis.aclose()
            await main_pool.close()


def run() -> None:
    service.run("updates", main, updates_config, shard_config, data_config)
