"""The auth service process: wiring of config, Postgres, Redis, migrations, internal RPC and /metrics (asyncio).

``python -m services.auth`` reads ``MTLAB_AUTH_*``, ``MTLAB_POSTGRES_DSN`` and ``MTLAB_REDIS_URL``, applies
``services/auth/migrations`` (a no-op once applied), then serves:

- internal RPC (services/common/rpc.py) on ``rpc_port``: every method of ``handlers.METHODS`` as a plain call,
  ``keys.watch`` as a stream (``changes.py``);
- ``/metrics`` and ``/healthz`` on ``metrics_port``: healthy while both Postgres and Redis answer.

A query arrives as the client's own TL bytes (the gateway does not decode it); services/common/service.py decodes
it, runs the handler, serializes the answer and counts it (``mtlab_auth_rpc_*``). A handler's ``RpcError`` goes
back as is; Postgres or Redis being unreachable becomes ``500 STORAGE_UNAVAILABLE`` (any 500 tells a client to try
again later); anything else is a bug, logged with its trace id, and answered ``500 INTERNAL``. SIGINT/SIGTERM stop
it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

from mtproto.tl.internal.functions import keys as keys_fn
from services.auth.changes import KeyChanges
from services.auth.codes import LoginCodes
from services.auth.handlers import METHODS, Auth
from services.common import db, service
from services.common import redis as redis_
from services.common.config import AuthConfig, DataConfig, auth_config, data_config
from services.common.migrations import migrate
from services.common.rpc import RpcServer

log = logging.getLogger("mtlab.auth")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

def rpc_server(auth: Auth) -> RpcServer:
    return service.rpc_server("auth", auth, METHODS, log, streams={keys_fn.Watch.CONSTRUCTOR_ID: auth.changes.watch})


async def main(config: AuthConfig, data: DataConfig) -> None:
    try:
        pool = await db.create_pool(data.postgres_dsn, max_size=config.pool_size)
    except Exception as exc:  # whatever it is, the service cannot run without its database: say why and stop
        sys.exit(f"mtlab auth: cannot reach Postgres at {data.postgres_dsn}: {exc}")
    redis = redis_.connect(data.redis_url)
    try:
        applied = await migrate(pool, MIGRATIONS, namespace="auth")
        log.info("migrations: %s", ", ".join(applied) if applied else "up to date")
        codes = LoginCodes(redis, ttl=config.code_ttl, attempts=config.code_attempts, length=config.code_length)
        auth = Auth(config, pool, codes, KeyChanges(redis), redis=redis)

        async def healthy() -> bool:
            postgres, cache = await db.ping(pool), await redis_.ping(redis)
            if not (postgres and cache):
                log.warning("unhealthy: postgres %s, redis %s", "up" if postgres else "DOWN", "up" if cache else "DOWN")
            return postgres and cache

        await service.serve("auth", rpc_server(auth), host=config.host, rpc_port=config.rpc_port,
                            metrics_port=config.metrics_port, healthy=healthy, background=[auth.changes.listen],
                            log=log)
    finally:
        with anyio.CancelScope(shield=True):
            await pool.close()
            await redis.aclose()


def run() -> None:
    service.run("auth", main, auth_config, data_config)
