"""Applying outbox rows: the half of a cross-user change that lands on the other user's shard.

A private message is written twice: the sender's copy, with an ``outbox`` row saying "deliver this to B", in
one transaction on the sender's shard; then B's copy on B's shard. Between the two commits the process can die,
B's shard can be down, or two processes can both try. The rules that make that safe:

- **Idempotent.** Applying a row first inserts its id into ``outbox_applied`` on the target shard, in the same
  transaction as the change; when the id is already there, the change was made before and nothing happens. So a
  row applied twice (a crash after the target committed, before the source deleted the row) changes B once.
- **In order per source.** Rows of one source user are applied in ``seq`` order (the source's pts when it was
  written), and a drainer stops at the first row that fails. A row is only ever applied after the rows before it
  were applied and committed (by this drainer or, found in ``outbox_applied``, by another), so B sees A's
  messages, edits and deletions in the order A made them. No lock is held across the two shards, so drainers
  never wait on each other's connections.
- **Nothing lost.** The sender's request drains its own rows right after its commit (the fast path); a row
  left behind by a crash or an unreachable shard is picked up by the sweeper, which every
  ``outbox_interval`` seconds drains every source that has rows older than that.

The kinds: ``deliver`` (a new message for the target's box), ``edit``, ``delete`` (for everyone) and ``read``
(the target's messages up to an id were read). Each ``apply_*`` is one transaction on the target's shard and
appends the matching update to the target's log. secret_store.py adds the secret chats' ``secret_request``,
``secret_accept`` and ``secret_discard``, whose updates go to device qts queues instead, pushed after the commit.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from services.common.db import Connection
from services.messages import render, secret_store, store
from services.messages.store import CHANNEL, CHAT, USER, MessageRow, OutboxRow

if TYPE_CHECKING:
    from services.messages.handlers import Messages

log = logging.getLogger("mtlab.messages.outbox")

APPLIED = Counter("mtlab_messages_outbox_applied_total", "Outbox rows applied to their target shard, by kind and "
                  "outcome (applied, duplicate: applied before, failed)", ["kind", "outcome"])
PENDING = Gauge("mtlab_messages_outbox_pending", "Outbox rows older than the sweep interval, at the last sweep")


def b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def deliver_payload(m: MessageRow, reply_origin: tuple[int, int] | None) -> dict[str, Any]:
    """What the recipient's copy of the sender's message ``m`` is made from."""
    return {"origin_id": m.origin_id, "date": m.date, "message": m.message, "entities": b64(m.entities),
            "media": b64(m.media), "fwd_from_id": m.fwd_from_id, "fwd_date": m.fwd_date, "silent": m.silent,
            "reply_origin": list(reply_origin) if reply_origin else None}


async def _apply_deliver(con: Connection, shard: int, row: OutboxRow) -> None:
    p, source, target = row.payload, row.source_id, row.target_id
    reply_to_id = None
    if p["reply_origin"]:
        found = await store.by_origin(con, shard, target, p["reply_origin"][0], [p["reply_origin"][1]])
        reply_to_id = found[0].id if found else None
    last_id, pts = await store.advance(con, shard, target, messages=1, pts=1)
    m = MessageRow(owner_id=target, id=last_id, peer_type=USER, peer_id=source, from_id=source, out=False,
                   date=p["date"], message=p["message"], entities=unb64(p["entities"]), media=unb64(p["media"]),
                   reply_to_id=reply_to_id, fwd_from_id=p["fwd_from_id"], fwd_date=p["fwd_date"],
                   silent=p["silent"], origin_user=source, origin_id=p["origin_id"], pts=pts)
    await store.write_message(con, shard, m, render.new_message(m, pts), unread=1)


async def _apply_edit(con: Connection, shard: int, row: OutboxRow) -> None:
    p = row.payload
    found = await store.by_origin(con, shard, row.target_id, p.get("origin_user", row.source_id), [p["origin_id"]])
    if not found:
        return  # the recipient deleted their copy: nothing to edit
    _, pts = await store.advance(con, shard, row.target_id, pts=1)
    await store.edit_message(con, shard, row.target_id, found[0].id, p["message"], unb64(p["entities"]),
                             p["edit_date"])
    edited = (await store.by_ids(con, shard, row.target_id, [found[0].id]))[0]
    await store.log_update(con, shard, row.target_id, pts, 1, p["edit_date"], "updateEditMessage",
                           render.edit_message(edited, pts))


async def _apply_delete(con: Connection, shard: int, row: OutboxRow) -> None:
    p = row.payload
    copies = await store.by_origin(con, shard, row.target_id, p["origin_user"], p["origin_ids"])
    if not copies:
        return
    ids = [m.id for m in copies]
    await store.delete_messages(con, shard, row.target_id, ids)
    _, pts = await store.advance(con, shard, row.target_id, pts=len(ids))
    peer_type, peer_id = p.get("peer", (USER, row.source_id))
    await store.refresh_dialog(con, shard, row.target_id, peer_type, peer_id)
    await store.log_update(con, shard, row.target_id, pts, len(ids), p["date"], "updateDeleteMessages",
                           render.delete_messages(ids, pts))


async def _apply_read(con: Connection, shard: int, row: OutboxRow) -> None:
    """The source read the target's messages up to the target's id ``max_id``: raise the target's outbox mark."""
    p = row.payload
    if not await store.set_read_outbox(con, shard, row.target_id, USER, row.source_id, p["max_id"]):
        return
    _, pts = await store.advance(con, shard, row.target_id, pts=1)
    await store.log_update(con, shard, row.target_id, pts, 1, p["date"], "updateReadHistoryOutbox",
                           render.read_outbox(row.source_id, p["max_id"], pts))


async def _apply_chat_deliver(con: Connection, shard: int, row: OutboxRow) -> None:
    """A group message for one member's box (the source is the group, as -chat_id); groups.py explains."""
    p, target = row.payload, row.target_id
    last_id, pts = await store.advance(con, shard, target, messages=1, pts=1)
    out = p["from_id"] == target
    m = MessageRow(owner_id=target, id=last_id, peer_type=CHAT, peer_id=p["chat_id"], from_id=p["from_id"], out=out,
                   date=p["date"], message=p["message"], entities=unb64(p["entities"]), action=unb64(p["action"]),
                   media=unb64(p.get("media")), origin_user=-p["chat_id"], origin_id=p["chat_msg_id"], pts=pts)
    await store.write_message(con, shard, m, render.new_message(m, pts), unread=0 if out else 1)


async def _apply_membership(con: Connection, shard: int, row: OutboxRow) -> None:
    """The target joined or left a channel (the source is the channel, as -channel_id): their dialog row."""
    p = row.payload
    if row.kind == "join":
        await con.execute(
            "INSERT INTO dialogs (shard, owner_id, peer_type, peer_id, read_inbox_max_id, top_date) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (shard, owner_id, peer_type, peer_id) DO NOTHING",
            shard, row.target_id, CHANNEL, p["channel_id"], p["read_max"], p["date"])
    else:
        await con.execute("DELETE FROM dialogs WHERE shard = $1 AND owner_id = $2 AND peer_type = $3 AND "
                          "peer_id = $4", shard, row.target_id, CHANNEL, p["channel_id"])
    _, pts = await store.advance(con, shard, row.target_id, pts=1)
    await store.log_update(con, shard, row.target_id, pts, 1, p["date"], "updateChannel",
                           render.channel_changed(p["channel_id"]))


async def _members_but(con: Connection, shard: int, chat_id: int, user_id: int) -> tuple[list[int], int]:
    """The group's other members, and the seq its outbox rows take now: the group's newest message id, so an edit
    or a deletion always sorts after the delivery of the message it changes (rows of one source apply in seq
    order, then in the order they were written)."""
    rows = await con.fetch("SELECT user_id FROM chat_members WHERE shard = $1 AND chat_id = $2 AND user_id <> $3 "
                           "ORDER BY user_id", shard, chat_id, user_id)
    seq = await con.fetchval("SELECT last_msg_id FROM chats WHERE shard = $1 AND id = $2", shard, chat_id)
    return [r["user_id"] for r in rows], int(seq or 0)


async def _apply_chat_edit(con: Connection, shard: int, row: OutboxRow) -> None:
    """A member edited their group message: the group's copy, then an edit for every other member's box."""
    p = row.payload
    done = await con.execute("UPDATE chat_messages SET message = $4, entities = $5 WHERE shard = $1 AND chat_id = $2 "
                             "AND id = $3 AND from_id = $6", shard, p["chat_id"], p["origin_id"], p["message"],
                             unb64(p["entities"]), row.source_id)
    if done == "UPDATE 0":
        return  # deleted meanwhile, or not theirs
    members, seq = await _members_but(con, shard, p["chat_id"], row.source_id)
    for member in members:
        await store.add_outbox(con, shard, -p["chat_id"], seq, "edit", member, p | {"origin_user": -p["chat_id"]})


async def _apply_chat_revoke(con: Connection, shard: int, row: OutboxRow) -> None:
    """A member deleted their group messages for everyone: the group's copies, then every other member's."""
    p = row.payload
    gone = await con.fetch("DELETE FROM chat_messages WHERE shard = $1 AND chat_id = $2 AND id = ANY($3) AND "
                           "from_id = $4 RETURNING id", shard, p["chat_id"], p["chat_msg_ids"], row.source_id)
    if not gone:
        return
    ids = sorted(r["id"] for r in gone)
    members, seq = await _members_but(con, shard, p["chat_id"], row.source_id)
    for member in members:
        await store.add_outbox(con, shard, -p["chat_id"], seq, "delete", member, {
            "origin_user": -p["chat_id"], "origin_ids": ids, "date": p["date"], "peer": [CHAT, p["chat_id"]]})


#: Kinds applied on a group's shard that leave rows for its members: the group's outbox is drained right after.
FAN_OUT = frozenset({"chat_edit", "chat_revoke"})

APPLY: dict[str, Callable[[Connection, int, OutboxRow], Awaitable[None]]] = {
    "deliver": _apply_deliver, "edit": _apply_edit, "delete": _apply_delete, "read": _apply_read,
    "join": _apply_membership, "leave": _apply_membership, "chat_deliver": _apply_chat_deliver,
    "chat_edit": _apply_chat_edit, "chat_revoke": _apply_chat_revoke,
}


async def apply(deps: Messages, row: OutboxRow) -> bool:
    """Apply one row on its target's shard; False when it had been applied before."""
    shard = deps.shards.for_user(row.target_id)

    async def txn(con: Connection) -> list[secret_store.Queued] | None:
        if not await store.claim_applied(con, shard, row.id):
            return None
        if row.kind in secret_store.APPLY:  # a secret chat's change: updates for device queues, not the log
            return await secret_store.APPLY[row.kind](con, shard, row)
        await APPLY[row.kind](con, shard, row)
        return []

    queued = await deps.shards.txn(shard, f"messages.outbox_{row.kind}", txn)
    applied = queued is not None
    APPLIED.labels(row.kind, "applied" if applied else "duplicate").inc()
    if row.kind in FAN_OUT:
        await drain(deps, shard, -row.target_id)  # the group's rows for its members (also after a duplicate)
    elif queued:
        for q in queued:
            await deps.relay(q.user_id, q.update, auth_key_id=q.auth_key_id)
    elif applied:
        await deps.notify(row.target_id)
    return applied


def _done(shard: int, row_id: uuid.UUID) -> Callable[[Connection], Awaitable[None]]:
    return lambda con: store.done_outbox(con, shard, row_id)


def _failed(shard: int, row_id: uuid.UUID, error: str) -> Callable[[Connection], Awaitable[None]]:
    return lambda con: store.failed_outbox(con, shard, row_id, error)


async def drain(deps: Messages, shard: int, source_id: int, rows: list[OutboxRow] | None = None) -> bool:
    """Apply the source's pending rows in order, deleting each once applied; False when one failed (it stays)."""
    if rows is None:
        rows = await deps.shards.txn(shard, "messages.outbox_pending",
                                     lambda con: store.pending_outbox(con, shard, source_id, 100))
    for row in rows:
        try:
            await apply(deps, row)
        except Exception as exc:  # the target shard is down, or a bug: keep the row, try again at the next sweep
            APPLIED.labels(row.kind, "failed").inc()
            log.warning("outbox %s (%s from %d to %d) not applied: %s: %s", row.id, row.kind, source_id,
                        row.target_id, type(exc).__name__, exc)
            try:
                await deps.shards.txn(shard, "messages.outbox_failed", _failed(shard, row.id, str(exc)))
            except Exception as again:  # the source shard went too: the sweeper finds the row anyway
                log.debug("outbox %s: could not record the failure: %s", row.id, again)
            return False
        # Not durable: a done row lost in a server crash is applied again, which outbox_applied makes a no-op.
        await deps.shards.txn(shard, "messages.outbox_done", _done(shard, row.id), durable=False)
    return True


async def sweep(deps: Messages, older_than: float, batch: int) -> int:
    """Drain every source with rows older than ``older_than`` seconds, on every physical shard; rows applied."""
    total = 0
    pending = 0
    for physical in sorted(deps.shards.map.dsns):
        pool = await deps.shards.pool(physical)
        async with pool.acquire() as con:
            found = await con.fetch(
                "SELECT shard, source_id, count(*) AS n FROM outbox "
                "WHERE created_at < now() - make_interval(secs => $1) "
                "AND shard IN (SELECT logical FROM shard_local WHERE state = 'active') "
                "GROUP BY shard, source_id LIMIT $2", older_than, batch)
        for r in found:
            pending += r["n"]
            if await drain(deps, r["shard"], r["source_id"]):
                total += r["n"]
    PENDING.set(pending)
    return total
