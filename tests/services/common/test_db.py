"""run_txn against a real Postgres: commit, rollback, whole retries after real serialization failures and deadlocks."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.common import db


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def with_pool(dsn: str, setup: str) -> db.Pool:
    pool = await db.create_pool(dsn, max_size=4)
    async with pool.acquire() as con:
        await con.execute(setup)
    return pool


def test_commit_returns_the_result_and_an_error_rolls_back(database: str) -> None:
    async def scenario() -> None:
        pool = await with_pool(database, "CREATE TABLE t (x int PRIMARY KEY)")
        try:
            async def insert(con: db.Connection) -> int:
                await con.execute("INSERT INTO t VALUES (1)")
                return 42

            async def insert_then_fail(con: db.Connection) -> None:
                await con.execute("INSERT INTO t VALUES (2)")
                raise ValueError("the handler found a problem after writing")

            errors = sample("mtlab_db_txn_errors_total", txn="test.fail")
            assert await db.run_txn(pool, "test.ok", insert) == 42
            with pytest.raises(ValueError):
                await db.run_txn(pool, "test.fail", insert_then_fail)
            async with pool.acquire() as con:
                assert [r["x"] for r in await con.fetch("SELECT x FROM t")] == [1]  # 2 was rolled back
            assert sample("mtlab_db_txn_errors_total", txn="test.fail") == errors + 1
            assert sample("mtlab_db_txn_seconds_count", txn="test.ok") >= 1
            assert await db.ping(pool)
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_serialization_failure_is_retried_whole(database: str) -> None:
    async def scenario() -> None:
        pool = await with_pool(database, "CREATE TABLE counter (id int PRIMARY KEY, n int); "
                                         "INSERT INTO counter VALUES (1, 0)")
        try:
            retried = sample("mtlab_db_txn_retries_total", txn="test.increment", reason="SerializationError")
            results = await asyncio.gather(*(db.run_txn(pool, "test.increment", fn, retries=3,
                                                        isolation="repeatable_read") for fn in racers()))
            assert sorted(results) == [1, 2]  # no lost update: the loser re-read the winner's value
            async with pool.acquire() as con:
                assert await con.fetchval("SELECT n FROM counter") == 2
            assert sample("mtlab_db_txn_retries_total", txn="test.increment",
                          reason="SerializationError") == retried + 1

            async with pool.acquire() as con:
                await con.execute("UPDATE counter SET n = 0")
            outcomes = await asyncio.gather(*(db.run_txn(pool, "test.no_retry", fn, retries=0,
                                                         isolation="repeatable_read") for fn in racers()),
                                            return_exceptions=True)
            assert sum(isinstance(o, asyncpg.SerializationError) for o in outcomes) == 1  # retries=0: it surfaces
        finally:
            await pool.close()

    def racers() -> list[Any]:
        # Two read-modify-write transactions that both read before either writes (a barrier makes sure, on the
        # first attempts only): under REPEATABLE READ the second writer gets 40001 and must run again.
        both_read = asyncio.Event()
        state = {"readers": 0}

        async def increment(con: db.Connection) -> int:
            n = int(await con.fetchval("SELECT n FROM counter WHERE id = 1"))
            state["readers"] += 1
            if state["readers"] == 2:
                both_read.set()
            if state["readers"] <= 2:  # only the first attempts wait for each other; a retry goes straight on
                await both_read.wait()
            await con.execute("UPDATE counter SET n = $1 WHERE id = 1", n + 1)
            return n + 1

        return [increment, increment]

    asyncio.run(scenario())


def test_a_deadlock_is_retried_whole(database: str) -> None:
    async def scenario() -> None:
        pool = await with_pool(database, "CREATE TABLE acct (id int PRIMARY KEY, n int); "
                                         "INSERT INTO acct VALUES (1, 0), (2, 0)")
        try:
            both_locked = asyncio.Event()
            state = {"first": 0}

            def transfer(a: int, b: int) -> Any:
                async def fn(con: db.Connection) -> None:
                    await con.execute("SET LOCAL deadlock_timeout = '50ms'")  # find the deadlock quickly
                    await con.execute("UPDATE acct SET n = n + 1 WHERE id = $1", a)
                    state["first"] += 1
                    if state["first"] == 2:
                        both_locked.set()
                    if state["first"] <= 2:
                        await both_locked.wait()  # each holds one row and now wants the other's: a deadlock
                    await con.execute("UPDATE acct SET n = n + 1 WHERE id = $1", b)

                return fn

            retried = sample("mtlab_db_txn_retries_total", txn="test.transfer", reason="DeadlockDetectedError")
            await asyncio.gather(db.run_txn(pool, "test.transfer", transfer(1, 2)),
                                 db.run_txn(pool, "test.transfer", transfer(2, 1)))
            async with pool.acquire() as con:
                assert [r["n"] for r in await con.fetch("SELECT n FROM acct ORDER BY id")] == [2, 2]
            assert sample("mtlab_db_txn_retries_total", txn="test.transfer",
                          reason="DeadlockDetectedError") == retried + 1
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_pool_without_reset_never_hands_out_a_connection_inside_a_transaction(database: str) -> None:
    """reset=False skips asyncpg's reset on release; a failed prelude, a failed body and a cancelled body must each
    still leave the single pooled connection usable (not inside an aborted transaction)."""

    async def scenario() -> list[bool]:
        pool = await db.create_pool(database, max_size=1, reset=False)
        try:
            with pytest.raises(asyncpg.DivisionByZeroError):
                await db.run_txn(pool, "test.prelude", lambda con: con.fetchval("SELECT 1"), prelude="SELECT 1/0")
            with pytest.raises(asyncpg.UndefinedTableError):
                await db.run_txn(pool, "test.body", lambda con: con.fetchval("SELECT * FROM missing"),
                                 prelude="SELECT 1")

            async def slow(con: db.Connection) -> None:
                await con.execute("SELECT pg_sleep(10)")

            task = asyncio.create_task(db.run_txn(pool, "test.cancelled", slow, prelude="SELECT 1"))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            clean = []
            async with pool.acquire() as con:
                clean.append(not con.is_in_transaction())
                clean.append(await con.fetchval("SELECT 2") == 2)
            clean.append(await db.run_txn(pool, "test.after", lambda con: con.fetchval("SELECT 3"),
                                          prelude="SELECT 1") == 3)
            return clean
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == [True, True, True]
