"""shard_db on a real Postgres: the map is made once, every physical shard is migrated, and the router follows a
shard that moved instead of writing to the database it left."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.common.config import ShardConfig
from services.common.migrations import discover
from shard_db import LayoutError, Shards, prepare
from shard_db.layout import SHARD_MIGRATIONS, derived_dsn


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    con = await asyncpg.connect(dsn)
    try:
        return list(await con.fetch(sql, *args))
    finally:
        await con.close()


def test_prepare_makes_the_map_once_and_migrates_every_physical_shard(database: str) -> None:
    config = ShardConfig(logical=8, physical=2)
    said: list[str] = []
    first = run(prepare(database, config, progress=said.append))
    assert first.logical == 8
    assert first.placement == ("shard0", "shard1") * 4  # round robin: consecutive ids on different databases
    assert first.dsns == {"shard0": derived_dsn(database, 0), "shard1": derived_dsn(database, 1)}
    assert any("created the shard map" in line for line in said)

    for index, serves in ((0, [0, 2, 4, 6]), (1, [1, 3, 5, 7])):
        rows = run(_fetch(derived_dsn(database, index), "SELECT logical, state FROM shard_local ORDER BY logical"))
        assert [(r["logical"], r["state"]) for r in rows] == [(n, "active") for n in serves]
        names = run(_fetch(derived_dsn(database, index), "SELECT name FROM mtlab_migrations ORDER BY name"))
        assert [r["name"] for r in names] == [m.name for m in discover(SHARD_MIGRATIONS, "shard")]
        assert names[0]["name"] == "shard/001_boxes.sql"

    said.clear()
    again = run(prepare(database, config, progress=said.append))
    assert again == first
    assert said == []  # nothing left to do


def test_a_different_logical_count_is_refused_once_the_map_exists(database: str) -> None:
    run(prepare(database, ShardConfig(logical=8, physical=2)))
    with pytest.raises(LayoutError, match="has 8 logical shards but MTLAB_SHARD_LOGICAL is 16"):
        run(prepare(database, ShardConfig(logical=16, physical=2)))


def test_configured_dsns_are_used_as_given(database: str, databases: Any) -> None:
    other = databases.create()
    shard_map = run(prepare(database, ShardConfig(logical=4, dsns=f"{other}, {derived_dsn(database, 7)}")))
    assert shard_map.dsns == {"shard0": other, "shard1": derived_dsn(database, 7)}
    assert run(_fetch(other, "SELECT count(*) AS n FROM shard_local"))[0]["n"] == 2


async def _moved_shard(database: str) -> tuple[list[int], list[int], int]:
    config = ShardConfig(logical=4, physical=2)
    await prepare(database, config)
    shards = await Shards.open(database, config)
    try:
        await shards.txn(1, "test.write", lambda con: con.execute(
            "INSERT INTO user_state (shard, user_id) VALUES (1, 5)"))
        # Move logical shard 1 from shard1 to shard0 by hand, as `mtlab shards move` does at its end: the new home
        # serves it, the old one says 'gone', the map is flipped. The router still holds the old map.
        new, old = derived_dsn(database, 0), derived_dsn(database, 1)
        await _fetch(new, "INSERT INTO shard_local (logical, state) VALUES (1, 'active')")
        await _fetch(new, "INSERT INTO user_state (shard, user_id) SELECT 1, 5")
        await _fetch(old, "UPDATE shard_local SET state = 'gone' WHERE logical = 1")
        await _fetch(database, "UPDATE shard_map SET physical = 'shard0', version = version + 1 WHERE logical = 1")
        assert shards.map.physical_of(1) == "shard1"
        await shards.txn(1, "test.write", lambda con: con.execute(
            "UPDATE user_state SET pts = pts + 1 WHERE shard = 1 AND user_id = 5"))
        assert shards.map.physical_of(1) == "shard0"
        on_old = [r["pts"] for r in await _fetch(old, "SELECT pts FROM user_state WHERE user_id = 5")]
        on_new = [r["pts"] for r in await _fetch(new, "SELECT pts FROM user_state WHERE user_id = 5")]
        return on_old, on_new, shards.for_user(5)
    finally:
        await shards.close()


def test_a_stale_map_is_refused_by_the_old_database_and_the_router_follows_the_move(database: str) -> None:
    on_old, on_new, shard = run(_moved_shard(database))
    assert shard == 1
    assert on_old == [0]  # the write did not land where the shard used to be
    assert on_new == [1]


def test_the_map_follows_the_main_server_to_another_address(database: str) -> None:
    """mtlab's own Postgres picks a free port at every start: shard databases on the main server are recorded
    without host and port, and found wherever the main database is reached."""
    run(prepare(database, ShardConfig(logical=4, physical=2)))
    stored = run(_fetch(database, "SELECT dsn FROM shard_physical ORDER BY name"))
    assert [r["dsn"] for r in stored] == [f"postgresql:///{urlsplit(database).path.lstrip('/')}_shard_{i}"
                                          for i in (0, 1)]
    elsewhere = urlunsplit(urlsplit(database)._replace(netloc=urlsplit(database).netloc.replace("127.0.0.1",
                                                                                                   "localhost")))
    assert elsewhere != database
    again = run(prepare(elsewhere, ShardConfig(logical=4, physical=2)))
    assert again.dsns == {"shard0": derived_dsn(elsewhere, 0), "shard1": derived_dsn(elsewhere, 1)}
    assert [r["n"] for r in run(_fetch(again.dsns["shard1"], "SELECT count(*) AS n FROM shard_local"))] == [2]
