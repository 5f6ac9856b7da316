"""Postgres for the services: the asyncpg pool and named, retried transactions.

Every piece of database work is one *named transaction* (Synapse's ``runInteraction(desc, fn)``):

    user = await run_txn(pool, "auth.sign_up", lambda con: store.create_user(con, ...))

``fn(con)`` runs inside one transaction on one pooled connection. When Postgres aborts the transaction
because it cannot be serialized (SQLSTATE 40001, ``SerializationError``) or to break a deadlock (40P01,
``DeadlockDetectedError``), nothing of it was committed, so it is safe to run ``fn`` again from the start: that
is the only error retried, ``retries`` times at most, after a short randomized pause (two transactions that
collided must not collide again in lockstep). Any other error rolls back and propagates at once.

``fn`` must therefore do nothing but database work: no RPC, no Redis, no sending, since those would happen
once per attempt. The name labels the metrics and the debug log, so a DBA student sees which transaction is
slow or keeps retrying. asyncpg is asyncio-only: this module serves the asyncio services, never the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar

import asyncpg
from prometheus_client import Counter, Histogram

if TYPE_CHECKING:  # asyncpg's classes are generic in its type stubs only
    from asyncpg.pool import PoolConnectionProxy

    #: What ``fn`` receives: a pooled connection inside an open transaction.
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    from asyncpg.pool import Pool
    from asyncpg.pool import PoolConnectionProxy as Connection

log = logging.getLogger("mtlab.db")
Isolation = Literal["read_committed", "repeatable_read", "serializable"]
T = TypeVar("T")

#: The two errors after which the whole transaction may simply run again (nothing of it was committed).
RETRYABLE: tuple[type[Exception], ...] = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)

# Shared by every service that uses Postgres; Prometheus' job label tells the services apart, the txn label
# (by convention "<service>.<what>") tells the transactions apart.
TXN_SECONDS = Histogram(
    "mtlab_db_txn_seconds", "Named transactions: time from the first attempt to commit or failure, retries included",
    ["txn"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
TXN_RETRIES = Counter("mtlab_db_txn_retries_total", "Named transactions run again after 40001/40P01", ["txn", "reason"])
TXN_ERRORS = Counter("mtlab_db_txn_errors_total", "Named transactions that failed (rolled back, error raised)",
                     ["txn"])


async def _keep(con: asyncpg.Connection) -> None:
    """The pool's reset on release, cut down to what matters (see ``create_pool``): a connection handed back
    inside a transaction (its task was cancelled mid-way) is rolled back, locally known, without a round trip
    otherwise."""
    if con.is_in_transaction():
        await con.execute("ROLLBACK")


async def create_pool(dsn: str, *, max_size: int = 10, reset: bool = True) -> Pool:
    """A pool on ``dsn``; raises when the server cannot be reached (a service refuses to start without it).

    ``reset=False`` skips asyncpg's reset of a connection on its way back to the pool (``RESET ALL``,
    ``UNLISTEN *``, ``pg_advisory_unlock_all()``...): one round trip per transaction saved, right for a pool whose
    users never change session state (every service transaction: ``run_txn`` and ``Shards.txn``). A pool whose
    users take session-level locks or ``SET`` things (migrations) keeps the reset."""
    # timeout: a connection attempt to a server that is down fails after 5 s instead of asyncpg's 60.
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, command_timeout=30, timeout=5,
                                     reset=None if reset else _keep)
    if pool is None:  # only for an uninitialised pool; create_pool initialises, but the stubs allow None
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


def _pause(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: doubling from 5 ms, capped, with full jitter."""
    return random.uniform(0, min(0.005 * 2**attempt, 0.5))  # noqa: S311 - spreading retries, not secrecy


_BEGIN = {"read_committed": "BEGIN ISOLATION LEVEL READ COMMITTED", "repeatable_read":
          "BEGIN ISOLATION LEVEL REPEATABLE READ", "serializable": "BEGIN ISOLATION LEVEL SERIALIZABLE"}


async def _attempt(pool: Pool, fn: Callable[[Connection], Awaitable[T]], isolation: Isolation, prelude: str) -> T:
    if not prelude:
        async with pool.acquire() as con, con.transaction(isolation=isolation):
            return await fn(con)
    # BEGIN and the prelude travel as one simple query: one round trip where asyncpg's transaction() takes two.
    async with pool.acquire() as con:
        try:
            await con.execute(f"{_BEGIN[isolation]}; {prelude}")
            result = await fn(con)
        except BaseException:
            # Never hand the pool a connection inside a transaction (its reset may be off): roll back, or, when
            # even that fails, close the connection so the pool replaces it.
            try:
                if not con.is_closed():
                    await con.execute("ROLLBACK")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                con.terminate()
            raise
        await con.execute("COMMIT")
        return result


async def run_txn(
    pool: Pool, name: str, fn: Callable[[Connection], Awaitable[T]], *, retries: int = 5,
    isolation: Isolation = "read_committed", prelude: str = "",
) -> T:
    """Run ``fn(con)`` in one transaction named ``name``; retried whole on serialization failures and deadlocks.

    ``prelude``: SQL (constants only, no parameters) run right after BEGIN in the same round trip: the shard
    router's ``SELECT mtlab_shard_enter(n)``."""
    started = time.perf_counter()
    attempt = 0
    try:
        while True:
            try:
                result = await _attempt(pool, fn, isolation, prelude)
            except RETRYABLE as exc:
                if attempt >= retries:
                    log.warning("txn %s: giving up after %d retries: %s", name, attempt, exc)
                    raise
                attempt += 1
                TXN_RETRIES.labels(name, type(exc).__name__).inc()
                log.info("txn %s: %s, retry %d of %d", name, type(exc).__name__, attempt, retries)
                await asyncio.sleep(_pause(attempt))
                continue
            elapsed = time.perf_counter() - started
            log.debug("txn %s: committed in %.1f ms after %d retries", name, elapsed * 1000, attempt)
            return result
    except BaseException:
        TXN_ERRORS.labels(name).inc()
        raise
    finally:
        TXN_SECONDS.labels(name).observe(time.perf_counter() - started)


async def ping(pool: Pool) -> bool:
    """True when the pool can run a query now (the health check; callers bound the time it may take)."""
    try:
        async with pool.acquire() as con:
            return bool(await con.fetchval("SELECT true"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
