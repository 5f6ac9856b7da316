"""What every asyncio service does with a query: decode it, run its handler, serialize the answer, count it.

A service lists its methods as ``{TL function class: handler}``; ``rpc_server`` turns that into the internal
RPC server's table of constructor id -> bytes handler. Each call is decoded with the function's own class (an
undecodable query is ``400 INPUT_FETCH_ERROR``, Telegram's name for it), the handler gets its dependencies, the
caller's ``rpc.Context`` and the request, and returns a TL object, a list (a ``Vector``) or a bool. A handler's
``RpcError`` goes back as it is; a dependency that is unreachable (Postgres, Redis, a shard) becomes
``500 STORAGE_UNAVAILABLE``, which tells a client to try again later; anything else is a bug, logged with the
trace id, and answered ``500 INTERNAL``. Every outcome is counted under ``mtlab_<service>_rpc_*``.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import asyncpg
from prometheus_client import Counter, Histogram

from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import INT, LONG, VECTOR_HEADER, TLDecodeError, TLFunction, TLObject, write_bool
from services.common import redis as redis_
from services.common.config import ConfigError
from services.common.http import serve_http
from services.common.logs import setup as setup_logs
from services.common.memory import tune_allocator
from services.common.rpc import Handler, RpcError, RpcServer, StreamHandler, error_label

D = TypeVar("D")
Result = TLObject | list[Any] | bool
Method = Callable[[D, rpc.Context, Any], Awaitable[Result]]

#: Errors that mean "a dependency is unreachable", not "this request is wrong".
STORAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, redis_.RedisError,
)

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_metrics: dict[str, tuple[Histogram, Counter]] = {}


def _metrics_for(service: str) -> tuple[Histogram, Counter]:
    if service not in _metrics:
        _metrics[service] = (
            Histogram(f"mtlab_{service}_rpc_seconds", "Time to answer an internal RPC, by method", ["method"],
                      buckets=_BUCKETS),
            Counter(f"mtlab_{service}_rpc_total",
                    "Internal RPCs answered, by method and outcome (ok or the error name)", ["method", "outcome"]),
        )
    return _metrics[service]


def serialize(result: Result) -> bytes:
    """A handler's answer as TL bytes: an object, a ``Vector<T>`` of objects or of ints (written as longs: the
    API's bare vectors of numbers are ``Vector<long>``, e.g. messages.receivedQueue), or a ``Bool``."""
    if isinstance(result, bool):
        out = bytearray()
        write_bool(out, result)
        return bytes(out)
    if isinstance(result, list):
        return VECTOR_HEADER + INT.pack(len(result)) + b"".join(
            LONG.pack(item) if isinstance(item, int) else item.to_bytes() for item in result)
    return result.to_bytes()


def rpc_handler(service: str, deps: D, cls: type[TLFunction[Any]], fn: Method[D],
                log: logging.Logger) -> Handler:
    """The bytes-in, bytes-out handler the RPC server calls for ``cls``."""
    name = cls.TL_NAME
    seconds, total = _metrics_for(service)

    async def handle(ctx: rpc.Context, query: bytes) -> bytes:
        started = time.perf_counter()
        outcome = "ok"
        try:
            try:
                request = cls.from_bytes(query)
            except TLDecodeError:
                raise RpcError(400, "INPUT_FETCH_ERROR") from None
            return serialize(await fn(deps, ctx, request))
        except RpcError as exc:
            outcome = error_label(exc.message)
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
            seconds.labels(name).observe(elapsed)
            total.labels(name, outcome).inc()
            log.debug("%s trace=%x user=%s -> %s in %.1f ms", name, ctx.trace_id, ctx.user_id, outcome,
                      elapsed * 1000)

    return handle


def rpc_handlers(service: str, deps: D, methods: Mapping[type[TLFunction[Any]], Method[D]],
                 log: logging.Logger) -> dict[int, Handler]:
    """The RPC server's table (constructor id -> handler) for ``methods``, each called with ``deps``."""
    return {cls.CONSTRUCTOR_ID: rpc_handler(service, deps, cls, fn, log) for cls, fn in methods.items()}


def rpc_server(service: str, deps: D, methods: Mapping[type[TLFunction[Any]], Method[D]], log: logging.Logger,
               streams: Mapping[int, StreamHandler] | None = None) -> RpcServer:
    return RpcServer(service, rpc_handlers(service, deps, methods, log), dict(streams or {}))


Task = Callable[[], Coroutine[Any, Any, None]]


async def serve(service: str, server: RpcServer, *, host: str, rpc_port: int, metrics_port: int,
                healthy: Callable[[], Awaitable[bool]], background: Sequence[Task] = (), log: logging.Logger) -> None:
    """Run a service until SIGINT or SIGTERM: its internal RPC server, ``/metrics`` + ``/healthz``, and its
    ``background`` tasks; print the line ``mtlab <service>: internal RPC on host:port ...`` once it listens (the
    supervisor and the tests wait for it)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            for task in background:
                tg.start_soon(task)
            tg.start_soon(serve_http, host, metrics_port, healthy)
            port = await tg.start(server.serve, host, rpc_port)
            print(f"mtlab {service}: internal RPC on {host}:{port}, metrics on http://{host}:{metrics_port}/metrics",
                  flush=True)
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                break
            tg.cancel_scope.cancel()


def run(service: str, main: Callable[..., Awaitable[None]], *configs: Callable[[], Any]) -> None:
    """``python -m services.<service>``: logging set up, each config read (a bad ``MTLAB_*`` value stops the
    process with a message naming it), then ``main(*configs)`` on asyncio, with the C allocator tuned for big
    buffers (services/common/memory.py)."""
    setup_logs(service)
    tune_allocator()
    try:
        values = [read() for read in configs]
    except ConfigError as exc:
        sys.exit(f"mtlab {service}: {exc}")
    anyio.run(main, *values, backend="asyncio")
