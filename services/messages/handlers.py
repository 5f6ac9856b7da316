"""One function per RPC method the message service answers (private chats; core.telegram.org/api/messages).

Each takes the service's dependencies (``Messages``), the caller's ``rpc.Context`` and the decoded query, and
returns a TL object or raises ``RpcError`` with Telegram's error name. The caller is ``ctx.user_id``: the gateway
sends only signed-in calls here, after checking the key with the auth service.

A change to the caller's box is one named transaction on the caller's shard (store.py says in which order it
writes); what it means for another user is an outbox row in that same transaction, applied right after the commit
(outbox.py). So a send answers once the sender's copy is durable, whatever happens to the recipient's shard.

Errors (400 unless noted): PEER_ID_INVALID, MESSAGE_EMPTY, MESSAGE_TOO_LONG, MESSAGE_ID_INVALID,
MESSAGE_IDS_EMPTY, MESSAGE_AUTHOR_REQUIRED, MESSAGE_NOT_MODIFIED, RANDOM_ID_DUPLICATE, RANDOM_ID_INVALID,
LIMIT_INVALID, SEARCH_QUERY_EMPTY, FILTER_NOT_SUPPORTED, 401 AUTH_KEY_UNREGISTERED.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Counter, Histogram

from mtproto.tl import api
from mtproto.tl.internal.types import push, rpc
from mtproto.tl.runtime import TLFunction
from services.common import db, presence, users
from services.common.config import MessagesConfig
from services.common.redis import Redis, RedisError
from services.common.rpc import RpcError, signed_in
from services.common.service import Result
from services.messages import chats, outbox, render, secret_store, store
from services.messages.store import CHAT, USER, MessageRow, OutboxRow
from shard_db import Shards

log = logging.getLogger("mtlab.messages")

T = TypeVar("T")

SENT = Counter("mtlab_messages_sent_total", "Messages sent, by chat type", ["chat"])
DUPLICATES = Counter("mtlab_messages_duplicates_total", "Sends recognised as resends by their random_id")
SEND_SECONDS = Histogram("mtlab_messages_send_seconds", "From a send's RPC to the sender's commit",
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))

#: Telegram's limit on messages per getHistory/getMessages/search page.
PAGE_MAX = 100
#: Users whose access_hash this process remembers (a user's id and hash never change).
USER_CACHE = 50_000


@dataclass
class Messages:
    """What the handlers need, injected by server.py (the clock too, so a test can move time)."""

    config: MessagesConfig
    shards: Shards
    main: db.Pool
    redis: Redis | None = None
    clock: Callable[[], float] = field(default=time.time)
    sends: int = 0  # sends committed by this process (for MTLAB_MESSAGES_CRASH_AFTER_SENDS)
    _users: OrderedDict[int, users.UserRow] = field(default_factory=OrderedDict)

    def now(self) -> int:
        return int(self.clock())

    async def txn(self, shard: int, name: str, fn: Callable[[db.Connection], Awaitable[T]]) -> T:
        return await self.shards.txn(shard, f"messages.{name}", fn)

    async def users(self, ids: Iterable[int]) -> dict[int, users.UserRow]:
        """Users by id, from the cache or the main database; unknown ids are left out."""
        wanted = set(ids)
        missing = [i for i in wanted if i not in self._users]
        if missing:
            async with self.main.acquire() as con:
                for row in (await users.by_id(con, missing)).values():
                    self._users[row.id] = row
            while len(self._users) > USER_CACHE:
                self._users.popitem(last=False)
        return {i: self._users[i] for i in wanted if i in self._users}

    async def notify_channel(self, channel_id: int, pts: int) -> None:
        """A channel's log now reaches ``pts``: its online subscribers should hear of it (best effort, as
        ``notify``)."""
        await self._publish(f"mtlab:channel:{channel_id}", push.Logged(pts=pts))

    async def notify(self, user_id: int, pts: int = 0) -> None:
        """Tell whoever listens (the updates service) that ``user_id``'s update log grew (to ``pts``, 0: not said).
        Best effort: the log is the truth, and the updates service reads what to push from it, so a lost
        notification only delays a push until the next one, or until the client asks for its difference."""
        await self._publish(f"mtlab:updates:{user_id}", push.Logged(pts=pts))

    async def relay(self, user_id: int, update: api.types.TypeUpdate, auth_key_id: int | None = None) -> None:
        """Push ``update`` as it is to every online device of ``user_id``, or only to ``auth_key_id``'s sessions.
        For what is not in the update log: typing and presence (may be lost), and a secret chat's qts updates
        (whose per-device queue is the truth)."""
        await self._publish(f"mtlab:updates:{user_id}",
                            push.Direct(auth_key_id=auth_key_id, update=update.to_bytes()))

    async def _publish(self, channel: str, note: push.TypeNote) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.publish(channel, note.to_bytes())
        except (RedisError, OSError) as exc:
            log.debug("publish on %s: %s", channel, exc)


async def resolve_peer(deps: Messages, me: int, peer: api.types.TypeInputPeer) -> tuple[int, int]:
    """(peer_type, peer_id) of an input peer the caller may address, or 400 PEER_ID_INVALID."""
    if isinstance(peer, api.types.InputPeerSelf):
        return USER, me
    if isinstance(peer, api.types.InputPeerUser):
        if peer.user_id == me:
            return USER, me
        row = (await deps.users([peer.user_id])).get(peer.user_id)
        # The access_hash proves the client was shown this user (core.telegram.org/api/peers).
        if row is not None and row.access_hash == peer.access_hash:
            return USER, row.id
    if isinstance(peer, api.types.InputPeerChat):
        # A group's messages in the caller's own box: only what was delivered to them is there to read. Writing
        # to the group (groups.py) checks membership on the group's shard.
        return CHAT, peer.chat_id
    raise RpcError(400, "PEER_ID_INVALID")


async def _with_users(deps: Messages, me: int, messages: list[MessageRow],
                      peers: Iterable[tuple[int, int]] = ()) -> list[api.types.TypeUser]:
    ids = {me}
    for m in messages:
        ids.update(i for i in (m.from_id, m.peer_id if m.peer_type == USER else None, m.fwd_from_id) if i)
    ids.update(pid for ptype, pid in peers if ptype == USER)
    rows = await deps.users(ids)
    seen = await presence.statuses(deps.redis, rows, deps.now())
    return [users.render(rows[i], viewer=me, status=seen.get(i)) for i in sorted(rows)]


async def _with_chats(deps: Messages, me: int, peers: Iterable[tuple[int, int]]) -> list[api.types.TypeChat]:
    """The ``chat`` objects of the basic groups among ``peers`` (``chatForbidden`` for one the caller left)."""
    out: list[api.types.TypeChat] = []
    for chat_id in sorted({pid for ptype, pid in peers if ptype == CHAT}):
        shard = deps.shards.for_chat(chat_id)
        c = await deps.txn(shard, "chat_get", chats.loader(shard, chat_id))
        if c is not None:
            out.append(chats.render_chat(c, viewer=me))
    return out


def _text(deps: Messages, text: str, *, empty_ok: bool = False) -> str:
    if not text.strip() and not empty_ok:
        raise RpcError(400, "MESSAGE_EMPTY")
    if len(text) > deps.config.max_length:
        raise RpcError(400, "MESSAGE_TOO_LONG")
    return text


# -- sending ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """One message to send: what sendMessage and forwardMessages have in common."""

    random_id: int
    message: str
    entities: bytes | None = None
    media: bytes | None = None
    reply_to_id: int | None = None
    fwd_from_id: int | None = None
    fwd_date: int | None = None
    silent: bool = False


async def send(deps: Messages, me: int, peer: tuple[int, int], drafts: list[Draft]) -> list[MessageRow]:
    """Put ``drafts`` in the caller's box and deliver them to the peer's: the sender's rows, as stored.

    A resend (every random_id already used) returns the stored rows again and changes nothing; a mix of used
    and new random_ids is refused with RANDOM_ID_DUPLICATE."""
    if peer[0] != USER:  # groups.py and channels.py send to groups and channels; forwarding there is not built
        raise RpcError(400, "PEER_ID_INVALID")
    if any(d.random_id == 0 for d in drafts):
        raise RpcError(400, "RANDOM_ID_INVALID")
    if len({d.random_id for d in drafts}) != len(drafts):
        raise RpcError(400, "RANDOM_ID_DUPLICATE")
    shard = deps.shards.for_user(me)
    peer_type, peer_id = peer
    started = time.perf_counter()
    date = deps.now()

    async def txn(con: db.Connection) -> list[OutboxRow]:
        # Optimistic: a resend is rare, and the unique index on (owner, random_id) refuses it (caught below).
        last_id, last_pts = await store.advance(con, shard, me, messages=len(drafts), pts=len(drafts))
        first_id, first_pts = last_id - len(drafts) + 1, last_pts - len(drafts) + 1
        rows.clear()
        pending: list[OutboxRow] = []
        for i, d in enumerate(drafts):
            reply_origin = None
            reply_to_id = None
            if d.reply_to_id:
                target = await store.by_ids(con, shard, me, [d.reply_to_id])
                if target and (target[0].peer_type, target[0].peer_id) == peer:
                    reply_to_id = d.reply_to_id
                    reply_origin = (target[0].origin_user, target[0].origin_id)
            m = MessageRow(owner_id=me, id=first_id + i, peer_type=peer_type, peer_id=peer_id, from_id=me, out=True,
                           date=date, message=d.message, entities=d.entities, media=d.media, reply_to_id=reply_to_id,
                           fwd_from_id=d.fwd_from_id, fwd_date=d.fwd_date, silent=d.silent, random_id=d.random_id,
                           origin_user=me, origin_id=first_id + i, pts=first_pts + i)
            last = i == len(drafts) - 1
            # One statement: the row, the log entry, the dialog, the outbox row; on the last, everything the
            # sender has pending (this send's rows and any a crash left), to be delivered in order.
            pending = await store.write_message(
                con, shard, m, render.new_message(m, m.pts), deliver_to=peer_id if peer_id != me else None,
                payload=outbox.deliver_payload(m, reply_origin) if peer_id != me else None, pending=last)
            rows.append(m)
        return pending

    async def resent(con: db.Connection) -> list[MessageRow | None]:
        return [await store.by_random_id(con, shard, me, d.random_id) for d in drafts]

    rows: list[MessageRow] = []
    try:
        pending = await deps.txn(shard, "send", txn)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "messages_random_id":
            raise
        existing = await deps.txn(shard, "send_resent", resent)
        if any(m is None for m in existing):
            raise RpcError(400, "RANDOM_ID_DUPLICATE") from None  # some random_ids used before, some not
        DUPLICATES.inc()
        return [m for m in existing if m is not None]
    SEND_SECONDS.observe(time.perf_counter() - started)
    SENT.labels("private").inc(len(rows))
    deps.sends += 1
    if deps.config.crash_after_sends and deps.sends >= deps.config.crash_after_sends:
        log.warning("MTLAB_MESSAGES_CRASH_AFTER_SENDS=%d: exiting between the sender's commit and the delivery",
                    deps.config.crash_after_sends)
        logging.shutdown()
        os._exit(70)
    await deps.notify(me)
    if pending and deps.config.deliver_inline:
        await outbox.drain(deps, shard, me, pending)
    return rows


def _reply_id(reply_to: Any) -> int | None:
    if isinstance(reply_to, api.types.InputReplyToMessage):
        return reply_to.reply_to_msg_id
    return None


async def send_message(deps: Messages, ctx: rpc.Context,
                       q: api.functions.messages.SendMessage) -> api.types.TypeUpdates:
    me = signed_in(ctx)
    text = _text(deps, q.message)
    peer = await resolve_peer(deps, me, q.peer)
    draft = Draft(random_id=q.random_id, message=text, entities=render.encode_entities(q.entities),
                  reply_to_id=_reply_id(q.reply_to), silent=bool(q.silent))
    [m] = await send(deps, me, peer, [draft])
    return api.types.UpdateShortSentMessage(out=True, id=m.id, pts=m.pts, pts_count=1, date=m.date,
                                            entities=render.decode_entities(m.entities))


async def forward_messages(deps: Messages, ctx: rpc.Context, q: api.functions.messages.ForwardMessages, *,
                           share: Callable[[list[MessageRow], tuple[int, int]], Awaitable[None]] | None = None,
                           ) -> api.types.TypeUpdates:
    """Copies of the caller's messages sent on to ``to_peer``. ``share`` is called with the messages and the
    target before anything is written: media.py makes their files readable by the target there."""
    me = signed_in(ctx)
    if not q.id:
        raise RpcError(400, "MESSAGE_IDS_EMPTY")
    if len(q.id) != len(q.random_id) or len(q.id) > PAGE_MAX:
        raise RpcError(400, "RANDOM_ID_INVALID")
    source = await resolve_peer(deps, me, q.from_peer)
    target = await resolve_peer(deps, me, q.to_peer)
    shard = deps.shards.for_user(me)
    found = await deps.txn(shard, "forward_read", lambda con: store.by_ids(con, shard, me, list(q.id)))
    by_id = {m.id: m for m in found if (m.peer_type, m.peer_id) == source}
    if any(i not in by_id for i in q.id):
        raise RpcError(400, "MESSAGE_ID_INVALID")
    if share is not None:
        await share([by_id[i] for i in q.id], target)
    drafts = []
    for msg_id, random_id in zip(q.id, q.random_id, strict=True):
        m = by_id[msg_id]
        # A forward of a forward names the original author (core.telegram.org/api/forwards).
        drafts.append(Draft(random_id=random_id, message=m.message, entities=m.entities, media=m.media,
                            fwd_from_id=m.fwd_from_id if m.fwd_from_id is not None else m.from_id,
                            fwd_date=m.fwd_date if m.fwd_from_id is not None else m.date, silent=bool(q.silent)))
    rows = await send(deps, me, target, drafts)
    updates: list[api.types.TypeUpdate] = []
    for m, d in zip(rows, drafts, strict=True):
        updates.append(api.types.UpdateMessageID(id=m.id, random_id=d.random_id))
        updates.append(api.types.UpdateNewMessage(message=render.message(m), pts=m.pts, pts_count=1))
    return api.types.Updates(updates=updates, users=await _with_users(deps, me, rows), chats=[], date=deps.now(),
                             seq=0)


# -- reading ------------------------------------------------------------------------------------------------


def _limit(limit: int) -> int:
    if limit < 0:
        raise RpcError(400, "LIMIT_INVALID")
    return min(limit or 20, PAGE_MAX)


async def _page(deps: Messages, me: int, rows: list[MessageRow], total: int,
                peers: Iterable[tuple[int, int]] = ()) -> api.types.messages.TypeMessages:
    messages: list[api.types.TypeMessage] = [render.message(m) for m in rows]
    user_list = await _with_users(deps, me, rows, peers)
    chat_list = await _with_chats(deps, me, [(m.peer_type, m.peer_id) for m in rows])
    if total > len(rows):
        return api.types.messages.MessagesSlice(count=total, messages=messages, topics=[], chats=chat_list,
                                                users=user_list)
    return api.types.messages.Messages(messages=messages, topics=[], chats=chat_list, users=user_list)


async def get_history(deps: Messages, ctx: rpc.Context,
                      q: api.functions.messages.GetHistory) -> api.types.messages.TypeMessages:
    """The dialog's messages, newest first, positioned by offset_id/add_offset and bounded by max_id/min_id
    (core.telegram.org/api/offsets)."""
    me = signed_in(ctx)
    peer_type, peer_id = await resolve_peer(deps, me, q.peer)
    limit = _limit(q.limit)
    shard = deps.shards.for_user(me)
    top = 2**31 - 1
    below = min(q.offset_id or top, q.max_id or top)

    async def txn(con: db.Connection) -> tuple[list[MessageRow], int]:
        newer: list[MessageRow] = []
        if q.add_offset < 0 and q.offset_id:
            # A negative add_offset asks for -add_offset messages at or above offset_id too (loading newer ones).
            newer = await store.history(con, shard, me, peer_type, peer_id, below=min(top, q.max_id or top),
                                        above=max(q.offset_id - 1, q.min_id), limit=top)
            newer = newer[-min(-q.add_offset, limit):]
        older = await store.history(con, shard, me, peer_type, peer_id, below=below, above=q.min_id,
                                    limit=limit - len(newer) + max(q.add_offset, 0))
        older = older[max(q.add_offset, 0):]
        return newer + older, await store.count(con, shard, me, peer_type, peer_id)

    rows, total = await deps.txn(shard, "get_history", txn)
    return await _page(deps, me, rows[:limit], total)


async def get_messages(deps: Messages, ctx: rpc.Context,
                       q: api.functions.messages.GetMessages) -> api.types.messages.TypeMessages:
    me = signed_in(ctx)
    ids = [m.id for m in q.id if isinstance(m, api.types.InputMessageID)]
    if len(q.id) > PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    shard = deps.shards.for_user(me)
    rows = await deps.txn(shard, "get_messages", lambda con: store.by_ids(con, shard, me, ids))
    return await _page(deps, me, rows, len(rows))


async def search(deps: Messages, ctx: rpc.Context, q: api.functions.messages.Search) -> api.types.messages.TypeMessages:
    me = signed_in(ctx)
    if not isinstance(q.filter, api.types.InputMessagesFilterEmpty):
        raise RpcError(400, "FILTER_NOT_SUPPORTED")
    if not q.q.strip():
        raise RpcError(400, "SEARCH_QUERY_EMPTY")
    peer = None if isinstance(q.peer, api.types.InputPeerEmpty) else await resolve_peer(deps, me, q.peer)
    limit = _limit(q.limit)
    shard = deps.shards.for_user(me)
    below = min(q.offset_id or 2**31 - 1, q.max_id or 2**31 - 1)
    rows = await deps.txn(shard, "search", lambda con: store.search(con, shard, me, peer, q.q, below=below,
                                                                     limit=limit))
    return await _page(deps, me, rows, len(rows))


async def get_dialogs(deps: Messages, ctx: rpc.Context,
                      q: api.functions.messages.GetDialogs) -> api.types.messages.TypeDialogs:
    me = signed_in(ctx)
    limit = _limit(q.limit)
    shard = deps.shards.for_user(me)
    before = (q.offset_date, q.offset_id) if q.offset_date or q.offset_id else None

    async def txn(con: db.Connection) -> tuple[list[store.DialogRow], list[MessageRow], int]:
        found = await store.dialogs(con, shard, me, before=before, limit=limit)
        tops = await store.by_ids(con, shard, me, [d.top_message for d in found])
        return found, tops, await store.dialog_count(con, shard, me)

    found, tops, total = await deps.txn(shard, "get_dialogs", txn)
    peers = [(d.peer_type, d.peer_id) for d in found]
    user_list = await _with_users(deps, me, tops, peers)
    dialogs: list[api.types.TypeDialog] = [render.dialog(d) for d in found]
    messages: list[api.types.TypeMessage] = [render.message(m) for m in tops]
    chat_list = await _with_chats(deps, me, peers)
    if total > len(found):
        return api.types.messages.DialogsSlice(count=total, dialogs=dialogs, messages=messages, chats=chat_list,
                                               users=user_list)
    return api.types.messages.Dialogs(dialogs=dialogs, messages=messages, chats=chat_list, users=user_list)


# -- changing -----------------------------------------------------------------------------------------------


async def read_history(deps: Messages, ctx: rpc.Context,
                       q: api.functions.messages.ReadHistory) -> api.types.messages.AffectedMessages:
    me = signed_in(ctx)
    peer_type, peer_id = await resolve_peer(deps, me, q.peer)
    shard = deps.shards.for_user(me)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[int, int, OutboxRow | None]:
        d = await store.dialog(con, shard, me, peer_type, peer_id, lock=True)
        pts, _ = await store.state(con, shard, me)
        if d is None:
            return pts, 0, None
        max_id = min(q.max_id or d.top_message, d.top_message)
        if max_id <= d.read_inbox_max_id:
            return pts, 0, None
        unread = await store.unread_after(con, shard, me, peer_type, peer_id, max_id)
        await store.set_read_inbox(con, shard, me, peer_type, peer_id, max_id, unread)
        _, pts = await store.advance(con, shard, me, pts=1)
        await store.log_update(con, shard, me, pts, 1, date, "updateReadHistoryInbox",
                               render.read_inbox(peer_id, max_id, unread, pts))
        if peer_id == me:
            return pts, 1, None
        # The sender learns the read in their own ids: the newest of their messages this read covers.
        origin = await con.fetchval(
            "SELECT max(origin_id) FROM messages WHERE shard = $1 AND owner_id = $2 AND peer_type = $3 AND "
            "peer_id = $4 AND NOT out AND id <= $5 AND origin_user = $4", shard, me, peer_type, peer_id, max_id)
        if origin is not None:
            await store.add_outbox(con, shard, me, pts, "read", peer_id, {"max_id": origin, "date": date})
        return pts, 1, None

    pts, pts_count, _ = await deps.txn(shard, "read_history", txn)
    if pts_count:
        await deps.notify(me)
        if deps.config.deliver_inline:
            await outbox.drain(deps, shard, me)
    return api.types.messages.AffectedMessages(pts=pts, pts_count=pts_count)


async def edit_message(deps: Messages, ctx: rpc.Context,
                       q: api.functions.messages.EditMessage) -> api.types.TypeUpdates:
    me = signed_in(ctx)
    peer_type, peer_id = await resolve_peer(deps, me, q.peer)
    if q.message is None:
        raise RpcError(400, "MESSAGE_NOT_MODIFIED")  # only text edits exist before the media service
    text = _text(deps, q.message)
    entities = render.encode_entities(q.entities)
    shard = deps.shards.for_user(me)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[MessageRow, int]:
        found = await store.by_ids(con, shard, me, [q.id])
        if not found or (found[0].peer_type, found[0].peer_id) != (peer_type, peer_id):
            raise RpcError(400, "MESSAGE_ID_INVALID")
        m = found[0]
        if not m.out:
            raise RpcError(403, "MESSAGE_AUTHOR_REQUIRED")
        if m.message == text and m.entities == entities:
            raise RpcError(400, "MESSAGE_NOT_MODIFIED")
        _, pts = await store.advance(con, shard, me, pts=1)
        await store.edit_message(con, shard, me, m.id, text, entities, date)
        edited = (await store.by_ids(con, shard, me, [m.id]))[0]
        await store.log_update(con, shard, me, pts, 1, date, "updateEditMessage", render.edit_message(edited, pts))
        payload = {"origin_id": m.origin_id, "message": text, "entities": outbox.b64(entities), "edit_date": date}
        if peer_type == CHAT:  # the group's copy first, then every other member's (groups.py)
            await store.add_outbox(con, shard, me, pts, "chat_edit", peer_id, payload | {"chat_id": peer_id})
        elif peer_id != me:
            await store.add_outbox(con, shard, me, pts, "edit", peer_id, payload)
        return edited, pts

    edited, pts = await deps.txn(shard, "edit", txn)
    await deps.notify(me)
    if deps.config.deliver_inline:
        await outbox.drain(deps, shard, me)
    update = api.types.UpdateEditMessage(message=render.message(edited), pts=pts, pts_count=1)
    return api.types.Updates(updates=[update], users=await _with_users(deps, me, [edited]), chats=[], date=date,
                             seq=0)


async def delete_messages(deps: Messages, ctx: rpc.Context,
                          q: api.functions.messages.DeleteMessages) -> api.types.messages.AffectedMessages:
    """Delete from the caller's box; with ``revoke``, the other side's copies of private messages too (any
    participant may, as on Telegram)."""
    me = signed_in(ctx)
    if len(q.id) > PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    shard = deps.shards.for_user(me)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[int, int]:
        gone = await store.delete_messages(con, shard, me, sorted(set(q.id)))
        if not gone:
            pts, _ = await store.state(con, shard, me)
            return pts, 0
        _, pts = await store.advance(con, shard, me, pts=len(gone))
        for peer in sorted({(m.peer_type, m.peer_id) for m in gone}):
            await store.refresh_dialog(con, shard, me, *peer)
        await store.log_update(con, shard, me, pts, len(gone), date, "updateDeleteMessages",
                               render.delete_messages([m.id for m in gone], pts))
        if q.revoke:
            by_peer: dict[int, dict[int, list[int]]] = {}
            by_chat: dict[int, list[int]] = {}
            for m in gone:
                if m.peer_type == USER and m.peer_id != me:
                    by_peer.setdefault(m.peer_id, {}).setdefault(m.origin_user, []).append(m.origin_id)
                elif m.peer_type == CHAT and m.out:  # in a group, one's own messages (groups.py fans it out)
                    by_chat.setdefault(m.peer_id, []).append(m.origin_id)
            for peer_id, origins in sorted(by_peer.items()):
                for origin_user, origin_ids in sorted(origins.items()):
                    await store.add_outbox(con, shard, me, pts, "delete", peer_id, {
                        "origin_user": origin_user, "origin_ids": origin_ids, "date": date})
            for chat_id, chat_msg_ids in sorted(by_chat.items()):
                await store.add_outbox(con, shard, me, pts, "chat_revoke", chat_id,
                                       {"chat_id": chat_id, "chat_msg_ids": chat_msg_ids, "date": date})
        return pts, len(gone)

    pts, pts_count = await deps.txn(shard, "delete", txn)
    if pts_count:
        await deps.notify(me)
        if deps.config.deliver_inline:
            await outbox.drain(deps, shard, me)
    return api.types.messages.AffectedMessages(pts=pts, pts_count=pts_count)


# -- updates.getState ---------------------------------------------------------------------------------------


async def get_state(deps: Messages, ctx: rpc.Context, q: api.functions.updates.GetState) -> api.types.updates.State:
    me = signed_in(ctx)
    shard = deps.shards.for_user(me)

    async def txn(con: db.Connection) -> tuple[int, int, int]:
        pts, unread = await store.pts_and_unread(con, shard, me)
        return pts, unread, await secret_store.current_qts(con, shard, me, ctx.auth_key_id)  # qts is per device

    pts, unread, qts = await deps.txn(shard, "get_state", txn)
    return api.types.updates.State(pts=pts, qts=qts, date=deps.now(), seq=0, unread_count=unread)


Method = Callable[[Messages, rpc.Context, Any], Awaitable[Result]]

#: The methods this service answers, by the TL function class whose bytes arrive.
METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.messages.SendMessage: send_message,
    api.functions.messages.ForwardMessages: forward_messages,
    api.functions.messages.GetHistory: get_history,
    api.functions.messages.GetMessages: get_messages,
    api.functions.messages.Search: search,
    api.functions.messages.GetDialogs: get_dialogs,
    api.functions.messages.ReadHistory: read_history,
    api.functions.messages.EditMessage: edit_message,
    api.functions.messages.DeleteMessages: delete_messages,
    api.functions.updates.GetState: get_state,
}
