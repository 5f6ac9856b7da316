"""The auth service process: wiring of config, Postgres, Redis, migrations, internal RPC and /metrics (asyncio).

``python -m services.auth`` reads ``MTLAB_AUTH_*``, ``MTLAB_POSTGRES_DSN`` and ``MTLAB_REDIS_URL``, applies
``services/auth/migrations`` (a no-op once applied), then serves:

- internal RPC (services/common/rpc.py) on ``rpc_port``: every method of ``handlers.METHODS`` as a plain call,
  ``keys.watch`` as a stream (``changes.py``);
- ``/metrics`` and ``/healthz`` on ``metrics_port``: healthy while both Postgres and Redis answer.

A query arrives as the client's own TL bytes (the gateway does not decode it); ``rpc_handler`` decodes it,
runs the handler, and serializes the answer. A handler's ``RpcError`` goes back as is; Postgres or Redis being
unreachable becomes ``500 STORAGE_UNAVAILABLE`` (any 500 tells a client to try again later); anything else is a
bug, logged with its trace id, and answered ``500 INTERNAL``. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from prometheus_client import Counter, Histogram

from mtproto.tl.internal.functions import keys as keys_fn
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import INT, VECTOR_HEADER, TLDecodeError, TLFunction, TLObject, write_bool
from services.auth.changes import KeyChanges
from services.auth.codes import LoginCodes
from services.auth.handlers import METHODS, Auth
from services.common import db, logs
from services.common import redis as redis_
from services.common.config import AuthConfig, ConfigError, DataConfig, auth_config, data_config
from services.common.http import serve_http
from services.common.migrations import migrate
from services.common.rpc import Handler, RpcError, RpcServer

log = logging.getLogger("mtlab.auth")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

RPC_SECONDS = Histogram(
    "mtlab_auth_rpc_seconds", "Time to answer an internal RPC, by method", ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RPC_TOTAL = Counter("mtlab_auth_rpc_total", "Internal RPCs answered, by method and outcome (ok or the error name)",
                    ["method", "outcome"])

#: Errors that mean "a dependency is unreachable", not "this request is wrong".
STORAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, redis_.RedisError,
)


def serialize(result: TLObject | list[Any] | bool) -> bytes:
    """A handler's answer as TL bytes: an object, a ``Vector<T>`` of objects, or a ``Bool``."""
    if isinstance(result, bool):
        out = bytearray()
        write_bool(out, result)
        return bytes(out)
    if isinstance(result, list):
        return VECTOR_HEADER + INT.pack(len(result)) + b"".join(item.to_bytes() for item in result)
    return result.to_bytes()


def rpc_handler(auth: Auth, cls: type[TLFunction[Any]],
                fn: Callable[[Auth, rpc.Context, Any], Awaitable[TLObject | list[Any] | bool]]) -> Handler:
    name = cls.TL_NAME

    async def handle(ctx: rpc.Context, query: bytes) -> bytes:
        started = time.perf_counter()
        outcome = "ok"
        try:
            try:
                request = cls.from_bytes(query)
            except TLDecodeError:
                raise RpcError(400, "INPUT_FETCH_ERROR") from None  # Telegram's name for undecodable parameters
            return serialize(await fn(auth, ctx, request))
        except RpcError as exc:
            outcome = re.sub(r"\d+", "X", exc.message)  # FLOOD_WAIT_37 -> FLOOD_WAIT_X: a bounded label set
            raise
        except STORAGE_ERRORS as exc:
            outcome = "STORAGE_UNAVAILABLE"
            log.warning("%s (trace %x): storage unreachable: %s: %s", name, ctx.trace_id, type(exc).__name__, exc)
            raise RpcError(500, "STORAGE_UNAVAILABLE") from exc
        except Exception:
            outcome = "INTERNAL"
            log.exception("%s (trace %x) failed", name, ctx.trace_id)
            raise
        finally:
            elapsed = time.perf_counter() - started
            RPC_SECONDS.labels(name).observe(elapsed)
            RPC_TOTAL.labels(name, outcome).inc()
            log.debug("%s trace=%x key=%x -> %s in %.1f ms", name, ctx.trace_id, ctx.auth_key_id, outcome,
                      elapsed * 1000)

    return handle


def rpc_server(auth: Auth) -> RpcServer:
    handlers = {cls.CONSTRUCTOR_ID: rpc_handler(auth, cls, fn) for cls, fn in METHODS.items()}
    return RpcServer("auth", handlers, {keys_fn.Watch.CONSTRUCTOR_ID: auth.changes.watch})


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
        auth = Auth(config, pool, codes, KeyChanges(redis))

        async def healthy() -> bool:
            postgres, cache = await db.ping(pool), await redis_.ping(redis)
            if not (postgres and cache):
                log.warning("unhealthy: postgres %s, redis %s", "up" if postgres else "DOWN", "up" if cache else "DOWN")
            return postgres and cache

        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(auth.changes.listen)
                tg.start_soon(serve_http, config.host, config.metrics_port, healthy)
                port = await tg.start(rpc_server(auth).serve, config.host, config.rpc_port)
                print(f"mtlab auth: internal RPC on {config.host}:{port}, "
                      f"metrics on http://{config.host}:{config.metrics_port}/metrics", flush=True)
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    break
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await pool.close()
            await redis.aclose()


def run() -> None:
    logs.setup("auth")
    try:
        config, data = auth_config(), data_config()
    except ConfigError as exc:
        sys.exit(f"mtlab auth: {exc}")
    anyio.run(main, config, data, backend="asyncio")
