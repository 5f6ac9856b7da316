"""`mtlab shards move` on real Postgres (shard_db/move.py): a logical shard moves between two physical shards
with every row, while writers keep writing, and survives being interrupted at every step.

The layout of every test: 4 logical shards on 2 physical ones, round robin, so shard0 holds 0 and 2 and shard1
holds 1 and 3; logical shard 2 moves from shard0 to shard1.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from services.common.config import ShardConfig
from shard_db import Shards, ShardUnavailable, prepare
from shard_db.layout import derived_dsn
from shard_db.move import MoveError, MoveOptions, MoveStopped, abort, move
from tests.helpers.shards import bulk, count, fetch, fetchval, rows_of, send_to_self, users_on

CONFIG = ShardConfig(logical=4, physical=2)
N = 2  # the logical shard every test moves


class Crash(Exception):
    """What a test hook raises to stop a move dead at one point."""


def crash_at(point: str) -> Any:
    def hook(reached: str) -> None:
        if reached == point:
            raise Crash(point)

    return hook


def dsns(database: str) -> tuple[str, str]:
    return derived_dsn(database, 0), derived_dsn(database, 1)


async def local_state(dsn: str, n: int = N) -> str | None:
    state: str | None = await fetchval(dsn, "SELECT state FROM shard_local WHERE logical = $1", n)
    return state


async def leftovers(dsn: str) -> tuple[int, int]:
    """(move triggers, change-log rows) on a database: what a finished or aborted move must leave at zero."""
    triggers = await fetchval(dsn, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'mtlab_move_%'")
    logged = await fetchval(dsn, "SELECT count(*) FROM shard_move_log")
    return int(triggers), int(logged)


async def map_of(database: str, n: int = N) -> tuple[str, int]:
    [row] = await fetch(database, "SELECT physical, version FROM shard_map WHERE logical = $1", n)
    return row["physical"], row["version"]


async def seeded(database: str, *, bulk_rows: int = 2000) -> Shards:
    """The layout, a few users writing on shards 0 and N through the store, and bulk rows on shard N."""
    await prepare(database, CONFIG)
    shards = await Shards.open(database, CONFIG)
    for shard in (0, N):
        for user in users_on(shard, 4, 3):
            for i in range(3):
                await shards.txn(shard, "test.send", send_to_self(shard, user, f"hello {i}"))
    await bulk(dsns(database)[0], N, bulk_rows)
    return shards


# -- a quiet move ----------------------------------------------------------------------------------------------


async def _quiet_move(database: str) -> None:
    source, target = dsns(database)
    shards = await seeded(database)
    try:
        before, neighbour = await rows_of(source, N), await rows_of(source, 0)
        said: list[str] = []
        report = await move(database, N, "shard1", options=MoveOptions(batch_rows=300), say=said.append)

        assert await rows_of(target, N) == before  # every row, every column, byte for byte
        assert count(await rows_of(source, N)) == 0  # nothing left behind
        assert await rows_of(source, 0) == neighbour  # the shard next door is untouched
        assert sum(report.copied.values()) == count(before) > 2000
        assert report.verified == {t: len(r) for t, r in before.items()}
        assert await map_of(database) == ("shard1", 2) and report.version == 2
        assert await local_state(source) == "gone" and await local_state(target) == "active"
        assert await leftovers(source) == (0, 0)
        [row] = await fetch(database, "SELECT step, finished_at, freeze_ms FROM shard_moves WHERE logical = $1", N)
        assert row["step"] == "done" and row["finished_at"] is not None and row["freeze_ms"] > 0
        assert any("write freeze" in line for line in said)

        # The router still holds the old map: the old home refuses, it reloads the map and writes on the new one.
        user = users_on(N, 4, 1)[0]
        assert shards.map.physical_of(N) == "shard0"
        assert await shards.txn(N, "test.send", send_to_self(N, user, "after the move")) == 4
        assert shards.map.physical_of(N) == "shard1"
        assert await fetchval(target, "SELECT pts FROM user_state WHERE shard = $1 AND user_id = $2", N, user) == 4
        assert await fetchval(source, "SELECT count(*) FROM messages WHERE shard = $1", N) == 0
    finally:
        await shards.close()


def test_a_quiet_move_copies_every_row_flips_the_map_and_leaves_nothing_behind(database: str) -> None:
    asyncio.run(_quiet_move(database))


async def _away_and_back(database: str) -> None:
    source, target = dsns(database)
    shards = await seeded(database, bulk_rows=500)
    try:
        before = await rows_of(source, N)
        await move(database, N, "shard1")
        with pytest.raises(MoveError, match="logical shard 2 is already on shard1: nothing to move"):
            await move(database, N, "shard1")
        with pytest.raises(MoveError, match="no physical shard 'shard9'"):
            await move(database, N, "shard9")
        with pytest.raises(MoveError, match="no logical shard 4"):
            await move(database, 4, "shard0")
        await move(database, N, "shard0")  # and back: shard0's 'gone' row for it becomes 'incoming', then 'active'
        assert await rows_of(source, N) == before
        assert count(await rows_of(target, N)) == 0
        assert await map_of(database) == ("shard0", 3)
        assert await local_state(source) == "active" and await local_state(target) == "gone"
        user = users_on(N, 4, 1)[0]
        assert await shards.txn(N, "test.send", send_to_self(N, user, "home again")) == 4
    finally:
        await shards.close()


def test_a_shard_moved_away_and_back_is_whole_and_moving_it_where_it_is_is_refused(database: str) -> None:
    asyncio.run(_away_and_back(database))


# -- a move under writes ---------------------------------------------------------------------------------------


async def _move_under_writes(database: str) -> dict[str, Any]:
    source, target = dsns(database)
    await prepare(database, CONFIG)
    await bulk(source, N, 20000)
    shards = await Shards.open(database, CONFIG)
    users = users_on(N, 4, 12, first=100)
    done: dict[int, list[int]] = {u: [] for u in users}  # user -> the pts of each write that returned success
    failures: list[BaseException] = []
    phases = {"shard0": 0, "shard1": 0}  # successful writes by the database the router's map named after them
    stop = asyncio.Event()

    async def writer(worker: int) -> None:
        i = worker
        while not stop.is_set():
            user = users[i % len(users)]
            i += 1
            try:
                pts = await shards.txn(N, "test.send", send_to_self(N, user, f"w{worker} #{i}"))
            except Exception as exc:  # every failure is recorded; the test wants none
                failures.append(exc)
                continue
            done[user].append(pts)
            phases[shards.map.physical_of(N)] += 1

    try:
        async with asyncio.TaskGroup() as tasks:
            for w in range(6):
                tasks.create_task(writer(w))
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            report = await move(database, N, "shard1", options=MoveOptions(batch_rows=500, backlog_small=20))
            seconds = time.perf_counter() - started
            await asyncio.sleep(0.3)  # writes after the switch go to the new home
            stop.set()
    finally:
        await shards.close()

    assert failures == []
    assert report.changes > 0  # writes during the copy were captured and replayed
    assert phases["shard0"] > 0 and phases["shard1"] > 0
    assert count(await rows_of(source, N)) == 0
    for user in users:
        pts = sorted(done[user])
        assert pts == list(range(1, len(pts) + 1)), user  # each success got its own pts, none skipped
        [state] = await fetch(target, "SELECT pts, last_msg_id FROM user_state WHERE shard = $1 AND user_id = $2",
                              N, user)
        assert (state["pts"], state["last_msg_id"]) == (len(pts), len(pts))
        logged = await fetch(target, "SELECT pts FROM update_log WHERE shard = $1 AND owner_id = $2 ORDER BY pts",
                             N, user)
        assert [r["pts"] for r in logged] == pts  # every successful write is on the target, once
        boxed = await fetch(target, "SELECT id, pts FROM messages WHERE shard = $1 AND owner_id = $2 ORDER BY id",
                            N, user)
        assert [(r["id"], r["pts"]) for r in boxed] == [(p, p) for p in pts]
        top = await fetchval(target, "SELECT top_message FROM dialogs WHERE shard = $1 AND owner_id = $2", N, user)
        assert top == len(pts)
    assert await fetchval(target, "SELECT count(*) FROM messages WHERE shard = $1 AND owner_id >= 10000", N) == 20000
    return {"writes": sum(len(p) for p in done.values()), "report": report, "seconds": seconds}


def test_a_move_under_concurrent_writers_loses_and_doubles_nothing(database: str) -> None:
    result = asyncio.run(_move_under_writes(database))
    report = result["report"]
    print(f"\n{result['writes']} writes during a {result['seconds']:.2f} s move of {sum(report.copied.values())} rows; "
          f"{report.changes} changes replayed in {report.rounds} rounds; freeze {report.freeze_ms:.0f} ms")


# -- interrupted moves -----------------------------------------------------------------------------------------


# point -> the step the next run resumes from
POINTS = {"started": "started", "copying": "copying", "mid-copy": "copying", "catching_up": "catching_up",
          "source_gone": "catching_up", "target_active": "catching_up", "switched": "switched"}


async def _interrupted(database: str, point: str) -> None:
    source, target = dsns(database)
    shards = await seeded(database, bulk_rows=1500)
    user = users_on(N, 4, 1)[0]
    try:
        if point == "mid-copy":
            batches = 0

            def progress(table: str, done: int, total: int) -> None:
                nonlocal batches
                batches += 1
                if table == "messages" and done < total:
                    raise Crash(point)

            with pytest.raises(Crash):
                await move(database, N, "shard1", options=MoveOptions(batch_rows=200), progress=progress)
            assert 0 < await fetchval(target, "SELECT count(*) FROM messages WHERE shard = $1", N) < 1500
        else:
            with pytest.raises(Crash):
                await move(database, N, "shard1", options=MoveOptions(batch_rows=200), hook=crash_at(point))
        [row] = await fetch(database, "SELECT step FROM shard_moves WHERE logical = $1", N)
        assert row["step"] == POINTS[point]

        if point in ("source_gone", "target_active"):
            # Inside the switch: no database takes the shard's writes (never two), until the move is resumed.
            with pytest.raises(ShardUnavailable):
                await shards.txn(N, "test.send", send_to_self(N, user, "refused"))
            assert await map_of(database) == ("shard0", 1)
        else:
            # Before the switch the source is the shard's home, after it the target: writes go on either way.
            assert await shards.txn(N, "test.send", send_to_self(N, user, "while interrupted")) == 4
            assert await map_of(database) == (("shard1", 2) if point == "switched" else ("shard0", 1))
        home = target if point == "switched" else source
        expected = await rows_of(home, N)

        report = await move(database, N, None, options=MoveOptions(batch_rows=200))
        assert report.resumed_from == POINTS[point]
        assert await rows_of(target, N) == expected
        assert count(await rows_of(source, N)) == 0
        assert await map_of(database) == ("shard1", 2)
        assert await local_state(source) == "gone" and await local_state(target) == "active"
        assert await leftovers(source) == (0, 0)
        wrote_meanwhile = point not in ("source_gone", "target_active")
        assert await shards.txn(N, "test.send", send_to_self(N, user, "after")) == (5 if wrote_meanwhile else 4)
    finally:
        await shards.close()


@pytest.mark.parametrize("point", list(POINTS))
def test_an_interrupted_move_resumes_and_finishes(database: str, point: str) -> None:
    asyncio.run(_interrupted(database, point))


async def _aborted(database: str, point: str) -> None:
    source, target = dsns(database)
    shards = await seeded(database, bulk_rows=800)
    try:
        before = await rows_of(source, N)
        with pytest.raises(Crash):
            await move(database, N, "shard1", options=MoveOptions(batch_rows=200), hook=crash_at(point))
        assert await abort(database, N) in ("copying", "catching_up")
        assert await rows_of(source, N) == before
        assert count(await rows_of(target, N)) == 0
        assert await local_state(source) == "active" and await local_state(target) is None
        assert await leftovers(source) == (0, 0)
        assert await map_of(database) == ("shard0", 1)
        [row] = await fetch(database, "SELECT step FROM shard_moves WHERE logical = $1", N)
        assert row["step"] == "aborted"
        user = users_on(N, 4, 1)[0]
        assert await shards.txn(N, "test.send", send_to_self(N, user, "still home")) == 4
        with pytest.raises(MoveError, match="no unfinished move"):
            await abort(database, N)
        await move(database, N, "shard1")  # a new move after the aborted one
        assert await map_of(database) == ("shard1", 2)
    finally:
        await shards.close()


@pytest.mark.parametrize("point", ["copying", "catching_up", "source_gone", "target_active"])
def test_an_interrupted_move_rolls_back_with_abort(database: str, point: str) -> None:
    asyncio.run(_aborted(database, point))


async def _refusals(database: str) -> None:
    shards = await seeded(database, bulk_rows=100)
    try:
        with pytest.raises(Crash):
            await move(database, N, "shard1", hook=crash_at("switched"))
        with pytest.raises(MoveError, match="switched already"):
            await abort(database, N)
        await move(database, N, None)  # finishes the cleanup

        with pytest.raises(Crash):
            await move(database, 0, "shard1", hook=crash_at("copying"))
        with pytest.raises(MoveError, match=r"being moved to shard1 \(step copying\)"):
            await move(database, 0, "shard0")
        other = await asyncpg.connect(database)  # a second mover on the same shard waits its turn
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock(1836346742, 0)")
            with pytest.raises(MoveError, match="another mover is working on logical shard 0"):
                await move(database, 0, None)
        finally:
            await other.close()
        with pytest.raises(MoveError, match="no move to resume"):
            await move(database, 2, None)
        await move(database, 0, None)
        assert await map_of(database, 0) == ("shard1", 2)
    finally:
        await shards.close()


def test_conflicting_requests_are_refused_with_an_explanation(database: str) -> None:
    asyncio.run(_refusals(database))


# -- verification and discovery --------------------------------------------------------------------------------


async def _tampered(database: str) -> None:
    source, target = dsns(database)
    shards = await seeded(database, bulk_rows=100)
    try:
        with pytest.raises(Crash):
            await move(database, N, "shard1", hook=crash_at("catching_up"))
        # A change on the target the change log knows nothing of: only the verification can see it.
        await fetch(target, "UPDATE messages SET message = 'tampered' WHERE shard = $1 AND owner_id >= 10000 "
                    "AND id = 7", N)
        with pytest.raises(MoveError, match=r"differs from the source: messages \(") as caught:
            await move(database, N, None)
        assert "Nothing was switched" in str(caught.value)
        assert await map_of(database) == ("shard0", 1)
        assert await local_state(source) == "active" and await local_state(target) == "incoming"
        user = users_on(N, 4, 1)[0]
        assert await shards.txn(N, "test.send", send_to_self(N, user, "still home")) == 4
        await abort(database, N)
        assert count(await rows_of(target, N)) == 0
    finally:
        await shards.close()


def test_a_copy_that_differs_from_the_source_is_never_switched(database: str) -> None:
    asyncio.run(_tampered(database))


async def _discovered(database: str) -> None:
    source, target = dsns(database)
    shards = await seeded(database, bulk_rows=100)
    try:
        # A table a later migration adds (here by hand, on both sides): the move finds it by its shard column.
        for dsn in (source, target):
            await fetch(dsn, "CREATE TABLE stickers (shard smallint NOT NULL, owner_id bigint NOT NULL, "
                        "set_id bigint NOT NULL, added timestamptz NOT NULL DEFAULT now(), "
                        "PRIMARY KEY (shard, owner_id, set_id))")
        await fetch(source, "INSERT INTO stickers (shard, owner_id, set_id) SELECT s, s + 4 * g, g "
                    "FROM generate_series(1, 300) AS g, unnest(ARRAY[0, $1::int]) AS s", N)
        report = await move(database, N, "shard1")
        assert report.copied["stickers"] == 300
        assert await fetchval(target, "SELECT count(*) FROM stickers WHERE shard = $1", N) == 300
        assert await fetchval(source, "SELECT count(*) FROM stickers") == 300  # shard 0's, still there

        for dsn in (source, target):
            await fetch(dsn, "CREATE TABLE scratch (shard smallint NOT NULL, note text)")
        with pytest.raises(MoveError, match="shard table scratch has no primary key"):
            await move(database, 0, "shard1")
    finally:
        await shards.close()


def test_shard_tables_are_discovered_not_listed(database: str) -> None:
    asyncio.run(_discovered(database))


async def _stopped(database: str) -> None:
    shards = await seeded(database, bulk_rows=1000)
    try:
        calls = 0

        def should_stop() -> bool:
            nonlocal calls
            calls += 1
            return calls == 4

        with pytest.raises(MoveStopped) as stopped:
            await move(database, N, "shard1", options=MoveOptions(batch_rows=200), should_stop=should_stop)
        assert stopped.value.step == "copying"
        await move(database, N, None)
        assert await map_of(database) == ("shard1", 2)
    finally:
        await shards.close()


def test_a_stop_request_stops_at_a_safe_point_and_the_move_resumes(database: str) -> None:
    asyncio.run(_stopped(database))
