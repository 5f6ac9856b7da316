"""The message service's SQL on a shard: boxes, dialogs, the update log and the outbox (shard_db/migrations/shard).

Every function takes a connection inside a transaction that ``Shards.txn`` opened on the right database, and the
logical shard ``shard`` the rows belong to. Nothing here decides anything: handlers.py and outbox.py do, in named
transactions. The order of statements in a write matters for correctness and is always the same:

1. ``advance`` locks the user's ``user_state`` row and takes message ids and pts from it;
2. message rows, then the dialog, then one ``update_log`` row per update (pts from step 1);
3. ``outbox`` rows for what must happen on other users' shards.

Because step 1 holds the row lock until commit, two writes to one user's box never interleave: ids increase, and
the update log has no gap and no duplicate pts.
"""

# S608: the only text formatted into SQL here is _COLUMNS, a constant; every value goes in as a $n parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from services.common.db import Connection

USER, CHAT, CHANNEL = 1, 2, 3  # peer_type values


@dataclass(frozen=True)
class MessageRow:
    owner_id: int
    id: int
    peer_type: int
    peer_id: int
    from_id: int
    out: bool
    date: int
    message: str
    entities: bytes | None = None
    media: bytes | None = None
    action: bytes | None = None
    reply_to_id: int | None = None
    fwd_from_id: int | None = None
    fwd_date: int | None = None
    edit_date: int | None = None
    silent: bool = False
    random_id: int | None = None
    origin_user: int = 0
    origin_id: int = 0
    pts: int = 0


@dataclass(frozen=True)
class DialogRow:
    peer_type: int
    peer_id: int
    top_message: int
    top_date: int
    read_inbox_max_id: int
    read_outbox_max_id: int
    unread_count: int


_COLUMNS = ("owner_id, id, peer_type, peer_id, from_id, out, date, message, entities, media, action, reply_to_id, "
            "fwd_from_id, fwd_date, edit_date, silent, random_id, origin_user, origin_id, pts")


def _message(r: Any) -> MessageRow:
    return MessageRow(
        r["owner_id"], r["id"], r["peer_type"], r["peer_id"], r["from_id"], r["out"], r["date"], r["message"],
        bytes(r["entities"]) if r["entities"] is not None else None,
        bytes(r["media"]) if r["media"] is not None else None,
        bytes(r["action"]) if r["action"] is not None else None,
        r["reply_to_id"], r["fwd_from_id"], r["fwd_date"], r["edit_date"], r["silent"], r["random_id"],
        r["origin_user"], r["origin_id"], r["pts"])


def _dialog(r: Any) -> DialogRow:
    return DialogRow(r["peer_type"], r["peer_id"], r["top_message"], r["top_date"], r["read_inbox_max_id"],
                     r["read_outbox_max_id"], r["unread_count"])


# -- the per-user counters ----------------------------------------------------------------------------------


async def advance(con: Connection, shard: int, user_id: int, *, messages: int = 0, pts: int = 0) -> tuple[int, int]:
    """Lock ``user_id``'s counters and take ``messages`` ids and ``pts`` pts: (last id taken, new pts).

    The first of the new ids is ``last - messages + 1``; the new updates' pts run up to the returned pts."""
    row = await con.fetchrow(
        "INSERT INTO user_state AS s (shard, user_id, last_msg_id, pts) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (shard, user_id) DO UPDATE SET last_msg_id = s.last_msg_id + $3, pts = s.pts + $4 "
        "RETURNING last_msg_id, pts", shard, user_id, messages, pts)
    if row is None:  # an upsert with RETURNING always returns its row
        raise RuntimeError("user_state upsert returned nothing")
    return int(row["last_msg_id"]), int(row["pts"])


async def state(con: Connection, shard: int, user_id: int) -> tuple[int, int]:
    """(pts, last message id) of a user; (0, 0) for one who never had a message."""
    row = await con.fetchrow("SELECT pts, last_msg_id FROM user_state WHERE shard = $1 AND user_id = $2",
                             shard, user_id)
    return (int(row["pts"]), int(row["last_msg_id"])) if row is not None else (0, 0)


async def pts_and_unread(con: Connection, shard: int, user_id: int) -> tuple[int, int]:
    """The user's pts and the unread messages of all their dialogs: what updates.getState answers."""
    pts, _ = await state(con, shard, user_id)
    unread = await con.fetchval("SELECT coalesce(sum(unread_count), 0) FROM dialogs WHERE shard = $1 AND "
                                "owner_id = $2", shard, user_id)
    return pts, int(unread)


# -- messages -----------------------------------------------------------------------------------------------


async def insert_message(con: Connection, shard: int, m: MessageRow) -> None:
    await con.execute(
        f"INSERT INTO messages (shard, {_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        shard, m.owner_id, m.id, m.peer_type, m.peer_id, m.from_id, m.out, m.date, m.message, m.entities, m.media,
        m.action, m.reply_to_id, m.fwd_from_id, m.fwd_date, m.edit_date, m.silent, m.random_id, m.origin_user,
        m.origin_id, m.pts)


_WRITE_MESSAGE = f"""
WITH msg AS (
    INSERT INTO messages (shard, {_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
), log AS (
    INSERT INTO update_log (shard, owner_id, pts, pts_count, date, kind, body)
    VALUES ($1, $2, $21, 1, $8, 'updateNewMessage', $22)
), dialog AS (
    INSERT INTO dialogs AS d (shard, owner_id, peer_type, peer_id, top_message, top_date, unread_count)
    VALUES ($1, $2, $4, $5, $3, $8, $23)
    ON CONFLICT (shard, owner_id, peer_type, peer_id) DO UPDATE SET top_message = greatest(d.top_message, $3),
        top_date = greatest(d.top_date, $8), unread_count = d.unread_count + $23
), box AS (
    INSERT INTO outbox (shard, id, source_id, seq, kind, target_id, payload)
    SELECT $1, $24, $2, $21, 'deliver', $25, $26::jsonb WHERE $25::bigint IS NOT NULL
    RETURNING id, source_id, seq, kind, target_id, payload, attempts, created_at
)
"""
_PENDING_TOO = """
SELECT * FROM (SELECT id, source_id, seq, kind, target_id, payload, attempts, created_at FROM outbox
               WHERE shard = $1 AND source_id = $2 ORDER BY seq, created_at LIMIT 100) AS earlier
UNION ALL SELECT * FROM box ORDER BY seq, created_at
"""


async def write_message(con: Connection, shard: int, m: MessageRow, body: bytes, *, unread: int = 0,
                        deliver_to: int | None = None, payload: dict[str, Any] | None = None,
                        pending: bool = False) -> list[OutboxRow]:
    """A new message in a box, in one statement: the row, its update-log entry (``body``, at ``m.pts``), the
    dialog, and, with ``deliver_to``, the outbox row that delivers it to that user. With ``pending``, the answer
    is every outbox row of the box's owner still to apply, this one included, in order (the caller drains them);
    otherwise nothing. The owner's ``user_state`` must already be advanced (``advance``) in this transaction."""
    rows = await con.fetch(
        _WRITE_MESSAGE + (_PENDING_TOO if pending else "SELECT * FROM box"),
        shard, m.owner_id, m.id, m.peer_type, m.peer_id, m.from_id, m.out, m.date, m.message, m.entities, m.media,
        m.action, m.reply_to_id, m.fwd_from_id, m.fwd_date, m.edit_date, m.silent, m.random_id, m.origin_user,
        m.origin_id, m.pts, body, unread, uuid.uuid4(), deliver_to, json.dumps(payload) if payload else None)
    return [OutboxRow(r["id"], r["source_id"], r["seq"], r["kind"], r["target_id"], json.loads(r["payload"]),
                      r["attempts"]) for r in rows] if pending else []


async def by_random_id(con: Connection, shard: int, owner_id: int, random_id: int) -> MessageRow | None:
    row = await con.fetchrow(f"SELECT {_COLUMNS} FROM messages WHERE shard = $1 AND owner_id = $2 AND random_id = $3",
                             shard, owner_id, random_id)
    return _message(row) if row is not None else None


async def by_ids(con: Connection, shard: int, owner_id: int, ids: list[int]) -> list[MessageRow]:
    rows = await con.fetch(f"SELECT {_COLUMNS} FROM messages WHERE shard = $1 AND owner_id = $2 AND id = ANY($3) "
                           "ORDER BY id", shard, owner_id, ids)
    return [_message(r) for r in rows]


async def by_origin(con: Connection, shard: int, owner_id: int, origin_user: int,
                    origin_ids: list[int]) -> list[MessageRow]:
    """The owner's copies of the messages ``origin_user`` sent under ``origin_ids`` (in the sender's box)."""
    rows = await con.fetch(f"SELECT {_COLUMNS} FROM messages WHERE shard = $1 AND owner_id = $2 AND origin_user = $3 "
                           "AND origin_id = ANY($4) ORDER BY id", shard, owner_id, origin_user, origin_ids)
    return [_message(r) for r in rows]


async def history(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int, *, below: int,
                  above: int, limit: int) -> list[MessageRow]:
    """Messages of one dialog with ``above < id < below``, newest first, at most ``limit``."""
    rows = await con.fetch(
        f"SELECT {_COLUMNS} FROM messages WHERE shard = $1 AND owner_id = $2 AND peer_type = $3 AND peer_id = $4 "
        "AND id < $5 AND id > $6 ORDER BY id DESC LIMIT $7", shard, owner_id, peer_type, peer_id, below, above, limit)
    return [_message(r) for r in rows]


async def count(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int) -> int:
    return int(await con.fetchval("SELECT count(*) FROM messages WHERE shard = $1 AND owner_id = $2 AND "
                                  "peer_type = $3 AND peer_id = $4", shard, owner_id, peer_type, peer_id))


async def search(con: Connection, shard: int, owner_id: int, peer: tuple[int, int] | None, text: str, *,
                 below: int, limit: int) -> list[MessageRow]:
    """Messages containing ``text`` (case-insensitive), newest first; in one dialog, or everywhere."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if peer is None:
        rows = await con.fetch(f"SELECT {_COLUMNS} FROM messages WHERE shard = $1 AND owner_id = $2 AND id < $3 "
                               "AND message ILIKE $4 ORDER BY id DESC LIMIT $5", shard, owner_id, below, pattern, limit)
    else:
        rows = await con.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE shard = $1 AND owner_id = $2 AND peer_type = $3 AND peer_id = $4 "
            "AND id < $5 AND message ILIKE $6 ORDER BY id DESC LIMIT $7", shard, owner_id, peer[0], peer[1], below,
            pattern, limit)
    return [_message(r) for r in rows]


async def edit_message(con: Connection, shard: int, owner_id: int, msg_id: int, text: str, entities: bytes | None,
                       edit_date: int) -> None:
    await con.execute("UPDATE messages SET message = $4, entities = $5, edit_date = $6 "
                      "WHERE shard = $1 AND owner_id = $2 AND id = $3", shard, owner_id, msg_id, text, entities,
                      edit_date)


async def delete_messages(con: Connection, shard: int, owner_id: int, ids: list[int]) -> list[MessageRow]:
    """Delete the owner's messages ``ids``; the rows that existed."""
    rows = await con.fetch(f"DELETE FROM messages WHERE shard = $1 AND owner_id = $2 AND id = ANY($3) "
                           f"RETURNING {_COLUMNS}", shard, owner_id, ids)
    return sorted((_message(r) for r in rows), key=lambda m: m.id)


async def unread_after(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int, after: int) -> int:
    """Incoming messages of a dialog with an id above ``after``: its unread count once read up to ``after``."""
    return int(await con.fetchval(
        "SELECT count(*) FROM messages WHERE shard = $1 AND owner_id = $2 AND peer_type = $3 AND peer_id = $4 "
        "AND NOT out AND id > $5", shard, owner_id, peer_type, peer_id, after))


# -- dialogs ------------------------------------------------------------------------------------------------


async def touch_dialog(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int, top_message: int,
                       top_date: int, *, unread: int = 0) -> None:
    """A new message ``top_message`` in this dialog (made when it is the first); ``unread`` more unread."""
    await con.execute(
        "INSERT INTO dialogs AS d (shard, owner_id, peer_type, peer_id, top_message, top_date, unread_count) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (shard, owner_id, peer_type, peer_id) DO UPDATE SET "
        "top_message = greatest(d.top_message, $5), top_date = greatest(d.top_date, $6), "
        "unread_count = d.unread_count + $7", shard, owner_id, peer_type, peer_id, top_message, top_date, unread)


async def dialog(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int,
                 *, lock: bool = False) -> DialogRow | None:
    row = await con.fetchrow(
        "SELECT peer_type, peer_id, top_message, top_date, read_inbox_max_id, read_outbox_max_id, unread_count "
        "FROM dialogs WHERE shard = $1 AND owner_id = $2 AND peer_type = $3 AND peer_id = $4"
        + (" FOR UPDATE" if lock else ""), shard, owner_id, peer_type, peer_id)
    return _dialog(row) if row is not None else None


async def dialogs(con: Connection, shard: int, owner_id: int, *, before: tuple[int, int] | None,
                  limit: int) -> list[DialogRow]:
    """The chat list, newest first; ``before``: only dialogs older than this (top_date, top_message) pair."""
    top_date, top_message = before if before is not None else (2**31 - 1, 2**31 - 1)
    rows = await con.fetch(
        "SELECT peer_type, peer_id, top_message, top_date, read_inbox_max_id, read_outbox_max_id, unread_count "
        "FROM dialogs WHERE shard = $1 AND owner_id = $2 AND top_message > 0 AND (top_date, top_message) < ($3, $4) "
        "ORDER BY top_date DESC, top_message DESC LIMIT $5", shard, owner_id, top_date, top_message, limit)
    return [_dialog(r) for r in rows]


async def dialog_count(con: Connection, shard: int, owner_id: int) -> int:
    return int(await con.fetchval("SELECT count(*) FROM dialogs WHERE shard = $1 AND owner_id = $2 AND top_message > 0",
                                  shard, owner_id))


async def refresh_dialog(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int) -> None:
    """Recompute a dialog's top message and unread count after deletions."""
    await con.execute(
        "UPDATE dialogs d SET (top_message, top_date) = ("
        "  SELECT coalesce(max(m.id), 0), coalesce(max(m.date), 0) FROM messages m"
        "  WHERE m.shard = d.shard AND m.owner_id = d.owner_id AND m.peer_type = d.peer_type AND m.peer_id = d.peer_id"
        "), unread_count = ("
        "  SELECT count(*) FROM messages m WHERE m.shard = d.shard AND m.owner_id = d.owner_id"
        "  AND m.peer_type = d.peer_type AND m.peer_id = d.peer_id AND NOT m.out AND m.id > d.read_inbox_max_id"
        ") WHERE d.shard = $1 AND d.owner_id = $2 AND d.peer_type = $3 AND d.peer_id = $4",
        shard, owner_id, peer_type, peer_id)


async def set_read_inbox(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int, max_id: int,
                         unread: int) -> None:
    await con.execute("UPDATE dialogs SET read_inbox_max_id = $5, unread_count = $6 WHERE shard = $1 AND "
                      "owner_id = $2 AND peer_type = $3 AND peer_id = $4", shard, owner_id, peer_type, peer_id,
                      max_id, unread)


async def set_read_outbox(con: Connection, shard: int, owner_id: int, peer_type: int, peer_id: int,
                          max_id: int) -> bool:
    """Raise the peer-has-read mark; False when it was already at or above ``max_id``."""
    done = await con.execute("UPDATE dialogs SET read_outbox_max_id = $5 WHERE shard = $1 AND owner_id = $2 AND "
                             "peer_type = $3 AND peer_id = $4 AND read_outbox_max_id < $5", shard, owner_id, peer_type,
                             peer_id, max_id)
    return done != "UPDATE 0"


# -- the update log -----------------------------------------------------------------------------------------


async def log_update(con: Connection, shard: int, owner_id: int, pts: int, pts_count: int, date: int, kind: str,
                     body: bytes) -> None:
    await con.execute("INSERT INTO update_log (shard, owner_id, pts, pts_count, date, kind, body) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7)", shard, owner_id, pts, pts_count, date, kind, body)


async def updates_after(con: Connection, shard: int, owner_id: int, pts: int,
                        limit: int) -> list[tuple[int, int, bytes]]:
    """(pts, pts_count, body) of the user's updates after ``pts``, oldest first."""
    rows = await con.fetch("SELECT pts, pts_count, body FROM update_log WHERE shard = $1 AND owner_id = $2 "
                           "AND pts > $3 ORDER BY pts LIMIT $4", shard, owner_id, pts, limit)
    return [(r["pts"], r["pts_count"], bytes(r["body"])) for r in rows]


# -- the outbox ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    source_id: int
    seq: int
    kind: str
    target_id: int
    payload: dict[str, Any]
    attempts: int


async def add_outbox(con: Connection, shard: int, source_id: int, seq: int, kind: str, target_id: int,
                     payload: dict[str, Any]) -> uuid.UUID:
    row_id = uuid.uuid4()
    await con.execute("INSERT INTO outbox (shard, id, source_id, seq, kind, target_id, payload) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7)", shard, row_id, source_id, seq, kind, target_id,
                      json.dumps(payload))
    return row_id


async def pending_outbox(con: Connection, shard: int, source_id: int, limit: int) -> list[OutboxRow]:
    """The source's outbox rows, in the order they must be applied (outbox.py explains why no lock is needed)."""
    rows = await con.fetch("SELECT id, source_id, seq, kind, target_id, payload, attempts FROM outbox "
                           "WHERE shard = $1 AND source_id = $2 ORDER BY seq, created_at LIMIT $3",
                           shard, source_id, limit)
    return [OutboxRow(r["id"], r["source_id"], r["seq"], r["kind"], r["target_id"], json.loads(r["payload"]),
                      r["attempts"]) for r in rows]


async def done_outbox(con: Connection, shard: int, row_id: uuid.UUID) -> None:
    await con.execute("DELETE FROM outbox WHERE shard = $1 AND id = $2", shard, row_id)


async def failed_outbox(con: Connection, shard: int, row_id: uuid.UUID, error: str) -> None:
    await con.execute("UPDATE outbox SET attempts = attempts + 1, last_error = $3 WHERE shard = $1 AND id = $2",
                      shard, row_id, error[:500])


async def claim_applied(con: Connection, shard: int, row_id: uuid.UUID) -> bool:
    """Record that outbox row ``row_id`` is applied to this shard; False when it already was (do nothing then)."""
    done = await con.execute("INSERT INTO outbox_applied (shard, id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                             shard, row_id)
    return done == "INSERT 0 1"
