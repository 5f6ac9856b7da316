"""The shard router: which logical shard a user or chat lives in, and a transaction on that shard's database.

    shards = await Shards.open(main_dsn, config)
    n = shards.for_user(user_id)
    sent = await shards.txn(n, "messages.send", lambda con: store.send(con, n, ...))

``for_user``/``for_chat`` are pure arithmetic on the id (``id % logical``), so every process agrees without
asking anybody. Which *database* holds shard ``n`` is the map's business: ``txn`` looks it up, runs ``fn`` in a
named, retried transaction there (services/common/db.py), and first calls ``mtlab_shard_enter(n)`` in it. That
SQL function takes a shared advisory lock on ``n`` and refuses (SQLSTATE ``MTL01``) unless that database serves
``n`` right now. When a shard has moved, the refusal makes the router reload the map from the main database and
run the transaction again on the new home; while a move holds its short write freeze, the lock makes the
transaction wait instead. So a stale map costs one retry and can never write to the wrong database.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from prometheus_client import Counter

from services.common import db
from services.common.config import ShardConfig
from shard_db.layout import ShardMap, load

log = logging.getLogger("mtlab.shard_db")

T = TypeVar("T")

MOVED = "MTL01"  # the SQLSTATE mtlab_shard_enter raises when this database does not serve the shard

SHARD_TXNS = Counter("mtlab_shard_db_txn_total", "Shard transactions, by physical shard and outcome",
                     ["physical", "outcome"])
MAP_RELOADS = Counter("mtlab_shard_db_map_reloads_total", "Times the shard map was read again after a shard moved")


class ShardMoved(Exception):
    """The logical shard is not served by the database the map pointed to (it moved, or is moving)."""


class ShardUnavailable(RuntimeError):
    """The shard could not be reached after reloading the map (a move that keeps failing, a map that lies)."""


def shard_of(entity_id: int, logical: int) -> int:
    """The logical shard of a user, chat or channel id."""
    return entity_id % logical


class Shards:
    """Connection pools to every physical shard, and the map that says which holds which logical shard."""

    def __init__(self, main: db.Pool, shard_map: ShardMap, *, pool_size: int, txn_retries: int,
                 main_dsn: str = "") -> None:
        self.main = main
        self.main_dsn = main_dsn
        self.map = shard_map
        self.pool_size = pool_size
        self.txn_retries = txn_retries
        self.pools: dict[str, db.Pool] = {}

    @classmethod
    async def open(cls, main_dsn: str, config: ShardConfig, *, txn_retries: int = 5) -> Shards:
        """Connect to the main database and read the map (``layout.prepare`` must have run: services do that)."""
        main = await db.create_pool(main_dsn, max_size=2)
        try:
            async with main.acquire() as con:
                shard_map = await load(con, main_dsn)
        except BaseException:
            await main.close()
            raise
        if shard_map is None:
            await main.close()
            raise RuntimeError("the shard map does not exist yet: run `mtlab db migrate`")
        return cls(main, shard_map, pool_size=config.pool_size, txn_retries=txn_retries, main_dsn=main_dsn)

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
        await self.main.close()

    @property
    def logical(self) -> int:
        return self.map.logical

    def for_user(self, user_id: int) -> int:
        return shard_of(user_id, self.map.logical)

    def for_chat(self, chat_id: int) -> int:
        return shard_of(chat_id, self.map.logical)

    async def pool(self, physical: str) -> db.Pool:
        """The pool of one physical shard, made on first use (a shard server that is down fails only its users)."""
        pool = self.pools.get(physical)
        if pool is None:
            # No reset on release: shard transactions leave no session state behind (db.create_pool).
            pool = await db.create_pool(self.map.dsns[physical], max_size=self.pool_size, reset=False)
            if physical in self.pools:  # another task made it while this one connected
                await pool.close()
                return self.pools[physical]
            self.pools[physical] = pool
        return pool

    async def healthy(self) -> bool:
        """True while the main database and every physical shard answer (a service's /healthz)."""
        checks = [await db.ping(self.main)]
        for physical in sorted(self.map.dsns):
            try:
                checks.append(await db.ping(await self.pool(physical)))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                checks.append(False)  # cannot even connect
        return all(checks)

    async def reload(self) -> None:
        async with self.main.acquire() as con:
            shard_map = await load(con, self.main_dsn)
        if shard_map is not None:
            self.map = shard_map
        MAP_RELOADS.inc()
        log.info("reloaded the shard map")

    async def txn(self, shard: int, name: str, fn: Callable[[db.Connection], Awaitable[T]], *,
                  durable: bool = True) -> T:
        """Run ``fn(con)`` in one transaction on the database serving logical shard ``shard``.

        ``durable=False``: the commit does not wait for the WAL flush (``synchronous_commit = off``), for a write
        whose loss in a server crash is harmless (deleting an applied outbox row: it would only apply again, as a
        no-op)."""
        # mtlab_shard_enter runs right after BEGIN, in the same round trip (db.run_txn's prelude).
        enter = f"SELECT mtlab_shard_enter({int(shard)}::smallint)"
        if not durable:
            enter += "; SET LOCAL synchronous_commit TO off"
        for attempt in range(3):
            physical = self.map.physical_of(shard)
            try:
                result = await db.run_txn(await self.pool(physical), name, fn, retries=self.txn_retries,
                                          prelude=enter)
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) != MOVED:
                    SHARD_TXNS.labels(physical, "error").inc()
                    raise
                SHARD_TXNS.labels(physical, "moved").inc()
                log.info("txn %s: logical shard %d is not on %s (attempt %d); reloading the map", name, shard,
                         physical, attempt + 1)
                await self.reload()
                continue
            SHARD_TXNS.labels(physical, "ok").inc()
            return result
        raise ShardUnavailable(f"logical shard {shard} did not settle on a database after 3 map reloads")
