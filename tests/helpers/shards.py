"""Shard data for the shard_db tests: realistic writes through the message service's store, bulk rows, and every
row of a logical shard read back for comparison.

    write = send_to_self(shard, user_id, "hi")          # one private-chat write: counters, message, dialog, update
    pts = await shards.txn(shard, "test.send", write)
    before = await rows_of(dsn, shard)                  # table -> rows of WHERE shard = n, in key order
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from services.common.db import Connection
from services.messages import store
from shard_db.move import shard_tables

Rows = dict[str, list[tuple[Any, ...]]]


def users_on(shard: int, logical: int, count: int, first: int = 1) -> list[int]:
    """``count`` user ids that live on logical shard ``shard`` (``id % logical``)."""
    return [shard + logical * k for k in range(first, first + count)]


def send_to_self(shard: int, user_id: int, text: str) -> Callable[[Connection], Awaitable[int]]:
    """A message to Saved Messages, written as the message service writes one: the user's counters (locking the
    user_state row), the message, the dialog, the update; the transaction returns the new pts."""

    async def write(con: Connection) -> int:
        msg_id, pts = await store.advance(con, shard, user_id, messages=1, pts=1)
        now = int(time.time())
        await store.insert_message(con, shard, store.MessageRow(
            owner_id=user_id, id=msg_id, peer_type=store.USER, peer_id=user_id, from_id=user_id, out=True, date=now,
            message=text, random_id=(user_id << 20) + msg_id, origin_user=user_id, origin_id=msg_id, pts=pts))
        await store.touch_dialog(con, shard, user_id, store.USER, user_id, msg_id, now)
        await store.log_update(con, shard, user_id, pts, 1, now, "updateNewMessage", text.encode())
        return pts

    return write


async def bulk(dsn: str, shard: int, messages: int, *, owners: int = 50) -> None:
    """Bulk rows of logical shard ``shard`` straight into a physical database: messages of ``owners`` users (ids
    from 10000 up), with NULLs, bytea and random ids; their update log, dialogs, contacts, and outbox rows with
    JSON payloads. Nothing the writers of a test use."""
    owner = "$1::int + 64 * (10000 + g % $3)"  # users of logical shard $1 for any logical count dividing 64
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            "INSERT INTO messages (shard, owner_id, id, peer_type, peer_id, from_id, out, date, message, entities, "
            f"random_id, origin_user, origin_id, pts) SELECT $1::smallint, {owner}, g, 1, 7, 7, g % 2 = 0, "
            "1700000000 + g, 'bulk ' || g || ' ✓', CASE WHEN g % 3 = 0 THEN '\\x01ff'::bytea END, "
            "CASE WHEN g % 2 = 0 THEN g END, 7, g, g FROM generate_series(1, $2) AS g", shard, messages, owners)
        await con.execute(
            "INSERT INTO update_log (shard, owner_id, pts, pts_count, date, kind, body) "
            f"SELECT $1::smallint, {owner}, g, 1, 1700000000 + g, 'updateNewMessage', '\\x00'::bytea "
            "FROM generate_series(1, $2) AS g", shard, messages // 2, owners)
        await con.execute(
            "INSERT INTO dialogs (shard, owner_id, peer_type, peer_id, top_message, top_date, unread_count) "
            f"SELECT $1::smallint, {owner}, 1, 7, g, 1700000000 + g, g % 5 FROM generate_series(1, $2) AS g",
            shard, owners, owners)
        await con.execute(
            "INSERT INTO contacts (shard, owner_id, user_id, first_name) "
            f"SELECT $1::smallint, {owner}, 7, 'Friend ' || g FROM generate_series(1, $2) AS g", shard, owners, owners)
        await con.execute(
            "INSERT INTO outbox (shard, id, source_id, seq, kind, target_id, payload) "
            "SELECT $1, gen_random_uuid(), 10000, g, 'deliver', 7, jsonb_build_object('n', g, 'text', 'x') "
            "FROM generate_series(1, $2) AS g", shard, owners)
    finally:
        await con.close()


async def rows_of(dsn: str, shard: int) -> Rows:
    """Every row of logical shard ``shard`` in a physical database: table -> rows in primary-key order."""
    con = await asyncpg.connect(dsn)
    try:
        found: Rows = {}
        for t in (await shard_tables(con)).values():
            rows = await con.fetch(f"SELECT {t.cols} FROM {t.q} WHERE shard = $1 ORDER BY {t.keys}", shard)
            found[t.name] = [tuple(r.values()) for r in rows]
        return found
    finally:
        await con.close()


def count(rows: Rows) -> int:
    return sum(len(r) for r in rows.values())


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    con = await asyncpg.connect(dsn)
    try:
        return list(await con.fetch(sql, *args))
    finally:
        await con.close()


async def fetchval(dsn: str, sql: str, *args: object) -> Any:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetchval(sql, *args)
    finally:
        await con.close()
