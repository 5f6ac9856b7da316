"""Secret chats on a shard: each participant's copy of a chat, and each device's qts queue
(shard_db/migrations/shard/005_secret_chats.sql; core.telegram.org/api/end-to-end, /api/updates "qts"), and the
files each chat carries (006_secret_files.sql).

Like store.py this module decides nothing: secret.py (the methods) and outbox.py (the other participant's half of
a change) call it inside transactions ``Shards.txn`` opened. Two rules hold every write together:

- ``enqueue`` locks the device's ``qts_state`` row and takes the next position (and, for an encrypted message,
  the next qts) from it, then writes the update, in the transaction of the change it reports: a device's qts has
  no gap and no duplicate, and the queue never names a change that did not commit;
- the ``apply_*`` functions are the outbox kinds ``secret_request``, ``secret_accept`` and ``secret_discard``: the
  other participant's copy, changed on their shard, applied once (outbox.py's ``outbox_applied``) and in order.
  Each returns the updates it queued, for the caller to push after the commit.

A third keeps secret-chat files alive exactly as long as a chat: ``carry_file`` records a file on a copy (with the
copy locked, so a discard cannot slip between the check of its state and the row), and ``discard`` deletes the
copy's rows in the transaction that discards it. files.inUse (media.py) answers from those rows.

The server has no key: a copy holds g_a, g_b, the fingerprint the accepting client announced, and dates.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

from mtproto.tl import api
from mtproto.tl.runtime import Reader
from services.common.db import Connection
from services.messages.store import OutboxRow

REQUESTED, ACCEPTED, DISCARDED = "requested", "accepted", "discarded"


@dataclass(frozen=True)
class SecretChat:
    """One participant's copy of a secret chat."""

    owner_id: int
    id: int
    access_hash: int
    admin_id: int
    admin_key: int
    participant_id: int
    participant_key: int | None
    notified_keys: tuple[int, ...]
    state: str
    g_a: bytes
    g_b: bytes | None
    key_fingerprint: int | None
    random_id: int
    date: int
    history_deleted: bool = False

    @property
    def peer_id(self) -> int:
        return self.participant_id if self.owner_id == self.admin_id else self.admin_id

    @property
    def my_key(self) -> int | None:
        """The owner's device in this chat (the participant's is unknown until one accepts)."""
        return self.admin_key if self.owner_id == self.admin_id else self.participant_key

    @property
    def peer_key(self) -> int | None:
        return self.participant_key if self.owner_id == self.admin_id else self.admin_key


@dataclass(frozen=True)
class Queued:
    """An update written to a device's queue: pushed to that device once its transaction committed."""

    user_id: int
    auth_key_id: int
    update: api.types.TypeUpdate


_COLUMNS = ("owner_id, id, access_hash, admin_id, admin_key, participant_id, participant_key, notified_keys, state, "
            "g_a, g_b, key_fingerprint, random_id, date, history_deleted")


def _chat(r: Any) -> SecretChat:
    return SecretChat(r["owner_id"], r["id"], r["access_hash"], r["admin_id"], r["admin_key"], r["participant_id"],
                      r["participant_key"], tuple(r["notified_keys"]), r["state"], bytes(r["g_a"]),
                      bytes(r["g_b"]) if r["g_b"] is not None else None, r["key_fingerprint"], r["random_id"],
                      r["date"], r["history_deleted"])


# -- rendering ------------------------------------------------------------------------------------------------


def render(c: SecretChat, viewer_key: int | None) -> api.types.TypeEncryptedChat:
    """The chat as the device ``viewer_key`` of its owner sees it.

    The admin sees ``encryptedChatWaiting`` until the other side accepts, then ``encryptedChat`` carrying g_b; the
    participant's devices see ``encryptedChatRequested`` with g_a, then the device that accepted sees
    ``encryptedChat`` carrying g_a and every other device ``encryptedChatDiscarded``: the chat is bound to one
    device."""
    gone = api.types.EncryptedChatDiscarded(id=c.id, history_deleted=c.history_deleted)
    if c.state == DISCARDED:
        return gone
    admin_side = c.owner_id == c.admin_id
    if c.state == REQUESTED:
        if admin_side:
            return api.types.EncryptedChatWaiting(id=c.id, access_hash=c.access_hash, date=c.date,
                                                  admin_id=c.admin_id, participant_id=c.participant_id)
        return api.types.EncryptedChatRequested(id=c.id, access_hash=c.access_hash, date=c.date, admin_id=c.admin_id,
                                                participant_id=c.participant_id, g_a=c.g_a)
    if viewer_key is not None and viewer_key != c.my_key:
        return gone
    return api.types.EncryptedChat(id=c.id, access_hash=c.access_hash, date=c.date, admin_id=c.admin_id,
                                   participant_id=c.participant_id, g_a_or_b=(c.g_b or b"") if admin_side else c.g_a,
                                   key_fingerprint=c.key_fingerprint or 0)


# -- chats ----------------------------------------------------------------------------------------------------


async def load(con: Connection, shard: int, owner_id: int, chat_id: int, *, lock: bool = False) -> SecretChat | None:
    row = await con.fetchrow(f"SELECT {_COLUMNS} FROM secret_chats WHERE shard = $1 AND owner_id = $2 AND id = $3"  # noqa: S608
                             + (" FOR UPDATE" if lock else ""), shard, owner_id, chat_id)
    return _chat(row) if row is not None else None


async def by_random_id(con: Connection, shard: int, admin_id: int, random_id: int) -> SecretChat | None:
    row = await con.fetchrow(f"SELECT {_COLUMNS} FROM secret_chats WHERE shard = $1 AND owner_id = $2 AND "  # noqa: S608
                             "admin_id = $2 AND random_id = $3", shard, admin_id, random_id)
    return _chat(row) if row is not None else None


async def insert(con: Connection, shard: int, c: SecretChat) -> bool:
    """A new copy; False when the owner has this chat already (a second application)."""
    done = await con.execute(
        f"INSERT INTO secret_chats (shard, {_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "  # noqa: S608
        "$13, $14, $15, $16) ON CONFLICT (shard, owner_id, id) DO NOTHING", shard, c.owner_id, c.id, c.access_hash,
        c.admin_id, c.admin_key, c.participant_id, c.participant_key, list(c.notified_keys), c.state, c.g_a, c.g_b,
        c.key_fingerprint, c.random_id, c.date, c.history_deleted)
    return bool(done == "INSERT 0 1")


async def save(con: Connection, shard: int, c: SecretChat) -> None:
    """Write back what changes in a copy's life: the state, the accepting device, g_b and the fingerprint."""
    await con.execute(
        "UPDATE secret_chats SET state = $4, participant_key = $5, g_b = $6, key_fingerprint = $7, "
        "history_deleted = $8 WHERE shard = $1 AND owner_id = $2 AND id = $3", shard, c.owner_id, c.id, c.state,
        c.participant_key, c.g_b, c.key_fingerprint, c.history_deleted)


async def carry_file(con: Connection, shard: int, owner_id: int, chat_id: int, file_id: int, date: int) -> None:
    """The owner's copy of the chat carries the media service's file ``file_id`` (sendEncryptedFile,
    uploadEncryptedFile): it is not released while the copy is live. The caller holds the copy's row lock."""
    await con.execute("INSERT INTO secret_files (shard, owner_id, chat_id, file_id, date) VALUES ($1, $2, $3, $4, $5) "
                      "ON CONFLICT DO NOTHING", shard, owner_id, chat_id, file_id, date)


async def remember_random_id(con: Connection, shard: int, owner_id: int, chat_id: int, random_id: int,
                             date: int) -> int | None:
    """Record an encrypted message's random_id for its recipient: None when new, else the first delivery's date."""
    fresh = await con.fetchval(
        "INSERT INTO secret_random_ids (shard, owner_id, chat_id, random_id, date) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT DO NOTHING RETURNING date", shard, owner_id, chat_id, random_id, date)
    if fresh is not None:
        return None
    return int(await con.fetchval("SELECT date FROM secret_random_ids WHERE shard = $1 AND owner_id = $2 AND "
                                  "chat_id = $3 AND random_id = $4", shard, owner_id, chat_id, random_id))


# -- the qts queues -------------------------------------------------------------------------------------------


async def enqueue(con: Connection, shard: int, user_id: int, auth_key_id: int, date: int,
                  update: api.types.UpdateNewEncryptedMessage | api.types.UpdateEncryption) -> Queued:
    """Append an update to one device's queue. An updateNewEncryptedMessage takes the next qts (and carries it);
    an updateEncryption is queued at the current qts without taking one (qts counts encrypted messages)."""
    message = isinstance(update, api.types.UpdateNewEncryptedMessage)
    row = await con.fetchrow(
        "INSERT INTO qts_state AS s (shard, user_id, auth_key_id, qts, pos) VALUES ($1, $2, $3, $4, 1) "
        "ON CONFLICT (shard, user_id, auth_key_id) DO UPDATE SET qts = s.qts + $4, pos = s.pos + 1 "
        "RETURNING qts, pos", shard, user_id, auth_key_id, 1 if message else 0)
    if row is None:  # an upsert with RETURNING always returns its row
        raise RuntimeError("qts_state upsert returned nothing")
    qts = int(row["qts"])
    if isinstance(update, api.types.UpdateNewEncryptedMessage):
        update = replace(update, qts=qts)
    await con.execute("INSERT INTO qts_queue (shard, user_id, auth_key_id, pos, qts, date, kind, body) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", shard, user_id, auth_key_id, row["pos"], qts, date,
                      update.TL_NAME, update.to_bytes())
    return Queued(user_id, auth_key_id, update)


async def current_qts(con: Connection, shard: int, user_id: int, auth_key_id: int) -> int:
    """The newest qts given to the device (0: none yet): what updates.getState answers as ``qts``."""
    qts = await con.fetchval("SELECT qts FROM qts_state WHERE shard = $1 AND user_id = $2 AND auth_key_id = $3",
                             shard, user_id, auth_key_id)
    return int(qts or 0)


async def queue_after(con: Connection, shard: int, user_id: int, auth_key_id: int, qts: int,
                      limit: int) -> list[tuple[int, bytes]]:
    """(qts, Update bytes) of what a device that has reached ``qts`` may not have seen, in order: the encrypted
    messages after ``qts``, and every updateEncryption queued since (one it saw already comes again: clients
    apply a chat's state idempotently)."""
    rows = await con.fetch(
        "SELECT qts, body FROM qts_queue WHERE shard = $1 AND user_id = $2 AND auth_key_id = $3 AND "
        "(qts > $4 OR (qts = $4 AND kind <> 'updateNewEncryptedMessage')) ORDER BY pos LIMIT $5",
        shard, user_id, auth_key_id, qts, limit)
    return [(r["qts"], bytes(r["body"])) for r in rows]


async def acknowledge(con: Connection, shard: int, user_id: int, auth_key_id: int, max_qts: int) -> list[int]:
    """The device has everything up to ``max_qts``: drop those encrypted messages and the updateEncryption rows
    queued up to then. Returns the random_ids of the encrypted messages dropped.

    An updateEncryption queued after the device read its queue but before this call goes too: it was pushed
    live to the device, which is online since it is acknowledging; a lost push there is the one case where the
    device learns of the chat's new state only when the peer's next message arrives or the chat is opened."""
    rows = await con.fetch(
        "DELETE FROM qts_queue WHERE shard = $1 AND user_id = $2 AND auth_key_id = $3 AND qts <= $4 "
        "RETURNING pos, body", shard, user_id, auth_key_id, max_qts)
    out: list[int] = []
    for r in sorted(rows, key=lambda r: int(r["pos"])):
        update = Reader(bytes(r["body"])).read_object()
        if isinstance(update, api.types.UpdateNewEncryptedMessage):
            out.append(update.message.random_id)
    return out


# -- the other participant's half (outbox kinds) ---------------------------------------------------------------


def b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def request_payload(c: SecretChat) -> dict[str, Any]:
    """The participant's copy of a new chat, as the outbox carries it (``notified_keys``: their devices)."""
    return {"id": c.id, "access_hash": c.access_hash, "admin_id": c.admin_id, "admin_key": c.admin_key,
            "participant_id": c.participant_id, "notified_keys": list(c.notified_keys), "g_a": b64(c.g_a),
            "random_id": c.random_id, "date": c.date}


async def _apply_request(con: Connection, shard: int, row: OutboxRow) -> list[Queued]:
    """The participant's copy of a requested chat, and ``updateEncryption(encryptedChatRequested)`` for each of
    their devices."""
    p = row.payload
    g_a = unb64(p["g_a"])
    if g_a is None:
        raise ValueError("secret_request without g_a")
    c = SecretChat(owner_id=row.target_id, id=p["id"], access_hash=p["access_hash"], admin_id=p["admin_id"],
                   admin_key=p["admin_key"], participant_id=p["participant_id"], participant_key=None,
                   notified_keys=tuple(p["notified_keys"]), state=REQUESTED, g_a=g_a, g_b=None, key_fingerprint=None,
                   random_id=p["random_id"], date=p["date"])
    if not await insert(con, shard, c):
        return []
    return [await enqueue(con, shard, c.owner_id, key, c.date, api.types.UpdateEncryption(chat=render(c, key),
                                                                                          date=c.date))
            for key in c.notified_keys]


async def _apply_accept(con: Connection, shard: int, row: OutboxRow) -> list[Queued]:
    """The admin's copy learns g_b, the fingerprint and the accepting device; the admin's device hears of it."""
    p = row.payload
    c = await load(con, shard, row.target_id, p["id"], lock=True)
    if c is None or c.state != REQUESTED:
        return []  # the admin discarded it meanwhile: their discard is on its way to the other side
    c = replace(c, state=ACCEPTED, participant_key=p["participant_key"], g_b=unb64(p["g_b"]),
                key_fingerprint=p["key_fingerprint"])
    await save(con, shard, c)
    return [await enqueue(con, shard, c.owner_id, c.admin_key, p["date"],
                          api.types.UpdateEncryption(chat=render(c, c.admin_key), date=p["date"]))]


async def _apply_discard(con: Connection, shard: int, row: OutboxRow) -> list[Queued]:
    """The other side closed the chat: this copy is discarded and its device (or, while only requested, every
    device told of the request) hears of it."""
    p = row.payload
    c = await load(con, shard, row.target_id, p["id"], lock=True)
    if c is None or c.state == DISCARDED:
        return []
    return await discard(con, shard, c, p["history_deleted"], p["date"])


async def discard(con: Connection, shard: int, c: SecretChat, history_deleted: bool, date: int,
                  *, skip_key: int | None = None) -> list[Queued]:
    """Discard one copy (and forget the files it carried) and queue ``encryptedChatDiscarded`` for the owner's
    devices that know the chat, but ``skip_key`` (the device that asked: it has its answer)."""
    c = replace(c, state=DISCARDED, history_deleted=history_deleted)
    await save(con, shard, c)
    # The copy's files may go: the media service's next release frees those no other live chat carries.
    await con.execute("DELETE FROM secret_files WHERE shard = $1 AND owner_id = $2 AND chat_id = $3", shard,
                      c.owner_id, c.id)
    if c.my_key is not None:
        keys: tuple[int, ...] = (c.my_key,)
    else:
        keys = c.notified_keys
    update = api.types.UpdateEncryption(chat=render(c, None), date=date)
    return [await enqueue(con, shard, c.owner_id, key, date, update) for key in keys if key != skip_key]


#: The outbox kinds of secret chats: applied on the target's shard, returning the updates to push.
APPLY = {"secret_request": _apply_request, "secret_accept": _apply_accept, "secret_discard": _apply_discard}
