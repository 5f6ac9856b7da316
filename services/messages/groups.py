"""Basic groups (``messages.createChat`` and friends): the group on its own shard, a copy in every member's box.

A group message is written once, in the group's own id sequence, on the group's shard, together with one outbox
row per member (source ``-chat_id``, in the order of the group's ids). Applying a row puts the member's copy in
their box, with their own message id, dialog and pts, exactly like the recipient's copy of a private message
(outbox.py, kind ``chat_deliver``); the sender's own copy arrives the same way, so the sender's answer waits for
that one delivery. Every copy carries the origin ``(-chat_id, group message id)``.

Membership changes are service messages (messageActionChatCreate, ChatAddUser, ChatDeleteUser) delivered the
same way; a removed member gets the message that removes them, then nothing more.

Editing one's message, or deleting one's messages for everyone, changes the author's copy first (handlers.py),
then the group's copy on the group's shard (outbox kinds ``chat_edit`` and ``chat_revoke``), which writes an edit
or a deletion for every other member (outbox.py).

Methods: ``messages.createChat``, ``messages.addChatUser``, ``messages.deleteChatUser``, ``messages.getChats``,
``messages.getFullChat``; ``messages.sendMessage`` to an ``inputPeerChat``; history, search, read marks, edits and
deletions are the box's (handlers.py); ``messages.sendMedia`` to an ``inputPeerChat`` through media.py, which names
the members as the file's readers before ``send`` writes the message (``MembersChanged`` if they changed meanwhile).
Errors: CHAT_ID_INVALID, CHAT_TITLE_EMPTY, USERS_TOO_FEW, USERS_TOO_MUCH, USER_ALREADY_PARTICIPANT,
USER_NOT_PARTICIPANT, CHAT_ADMIN_REQUIRED (403), RANDOM_ID_INVALID. Not built: read receipts for senders, and the
creator deleting other members' messages for everyone.
"""

from __future__ import annotations

from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import TLFunction
from services.common import db
from services.common.rpc import RpcError, signed_in
from services.messages import handlers, outbox, render, store
from services.messages.chats import ChatRow, load, loader, render_chat
from services.messages.handlers import Messages, Method, _with_users
from services.messages.store import USER, MessageRow

#: Telegram's basic group size limit (config.chat_size_max).
MAX_MEMBERS = 200


async def post(con: db.Connection, shard: int, c: ChatRow, from_id: int, date: int, *, text: str = "",
               entities: bytes | None = None, action: api.types.TypeMessageAction | None = None,
               random_id: int | None = None, to: list[int] | None = None, media: bytes | None = None) -> int:
    """One group message (the group's row locked), and a delivery to each of ``to`` (default: every member)."""
    row = await con.fetchrow("UPDATE chats SET last_msg_id = last_msg_id + 1 WHERE shard = $1 AND id = $2 "
                             "RETURNING last_msg_id", shard, c.id)
    if row is None:
        raise RpcError(400, "CHAT_ID_INVALID")
    msg_id = int(row["last_msg_id"])
    action_bytes = action.to_bytes() if action is not None else None
    await con.execute("INSERT INTO chat_messages (shard, chat_id, id, from_id, date, message, entities, action, "
                      "random_id, media) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", shard, c.id, msg_id,
                      from_id, date, text, entities, action_bytes, random_id, media)
    for member in (to if to is not None else c.member_ids):
        await store.add_outbox(con, shard, -c.id, msg_id, "chat_deliver", member, {
            "chat_id": c.id, "chat_msg_id": msg_id, "from_id": from_id, "date": date, "message": text,
            "entities": outbox.b64(entities), "action": outbox.b64(action_bytes), "media": outbox.b64(media)})
    return msg_id


async def _own_copy(deps: Messages, me: int, chat_id: int, chat_msg_id: int) -> MessageRow:
    shard = deps.shards.for_user(me)
    found = await deps.txn(shard, "chat_own_copy", lambda con: store.by_origin(con, shard, me, -chat_id,
                                                                                [chat_msg_id]))
    if not found:  # the delivery to the sender's own shard failed: it is in the outbox, the sweeper retries
        raise RpcError(500, "STORAGE_UNAVAILABLE")
    return found[0]


async def answer(deps: Messages, me: int, c: ChatRow, chat_msg_id: int,
                  random_id: int | None = None) -> api.types.Updates:
    await outbox.drain(deps, deps.shards.for_chat(c.id), -c.id)
    mine = await _own_copy(deps, me, c.id, chat_msg_id)
    updates: list[api.types.TypeUpdate] = []
    if random_id is not None:
        updates.append(api.types.UpdateMessageID(id=mine.id, random_id=random_id))
    updates.append(api.types.UpdateNewMessage(message=render.message(mine), pts=mine.pts, pts_count=1))
    return api.types.Updates(updates=updates, users=await _with_users(deps, me, [], [(USER, u) for u in c.member_ids]),
                             chats=[render_chat(c, viewer=me)], date=deps.now(), seq=0)


async def _input_users(deps: Messages, me: int, wanted: list[api.types.TypeInputUser]) -> list[int]:
    ids = []
    for u in wanted:
        if isinstance(u, api.types.InputUserSelf):
            ids.append(me)
        elif isinstance(u, api.types.InputUser):
            row = (await deps.users([u.user_id])).get(u.user_id)
            if row is None or (row.id != me and row.access_hash != u.access_hash):
                raise RpcError(400, "USER_ID_INVALID")
            ids.append(row.id)
        else:
            raise RpcError(400, "USER_ID_INVALID")
    return ids


async def create_chat(deps: Messages, ctx: rpc.Context,
                      q: api.functions.messages.CreateChat) -> api.types.messages.InvitedUsers:
    me = signed_in(ctx)
    title = q.title.strip()
    if not title:
        raise RpcError(400, "CHAT_TITLE_EMPTY")
    others = [u for u in dict.fromkeys(await _input_users(deps, me, list(q.users))) if u != me]
    if not others:
        raise RpcError(400, "USERS_TOO_FEW")
    if len(others) + 1 > MAX_MEMBERS:
        raise RpcError(400, "USERS_TOO_MUCH")
    async with deps.main.acquire() as con:
        chat_id = int(await con.fetchval("SELECT nextval('peer_ids')"))
    shard = deps.shards.for_chat(chat_id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[ChatRow, int]:
        await con.execute("INSERT INTO chats (shard, id, title, creator_id, date) VALUES ($1, $2, $3, $4, $5)",
                          shard, chat_id, title[:128], me, date)
        await con.executemany("INSERT INTO chat_members (shard, chat_id, user_id, inviter_id, date) "
                              "VALUES ($1, $2, $3, $4, $5)", [(shard, chat_id, u, me, date) for u in [me, *others]])
        c = await load(con, shard, chat_id)
        assert c is not None  # noqa: S101 - inserted above
        msg_id = await post(con, shard, c, me, date, action=api.types.MessageActionChatCreate(title=c.title,
                                                                                             users=c.member_ids))
        return c, msg_id

    c, msg_id = await deps.txn(shard, "chat_create", txn)
    return api.types.messages.InvitedUsers(updates=await answer(deps, me, c, msg_id), missing_invitees=[])


async def member_of(deps: Messages, me: int, chat_id: int) -> ChatRow:
    shard = deps.shards.for_chat(chat_id)
    c = await deps.txn(shard, "chat_get", lambda con: load(con, shard, chat_id))
    if c is None or me not in c.member_ids:
        raise RpcError(400, "CHAT_ID_INVALID")
    return c


async def add_chat_user(deps: Messages, ctx: rpc.Context,
                        q: api.functions.messages.AddChatUser) -> api.types.messages.InvitedUsers:
    me = signed_in(ctx)
    [user] = await _input_users(deps, me, [q.user_id])
    shard = deps.shards.for_chat(q.chat_id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[ChatRow, int]:
        c = await load(con, shard, q.chat_id, lock=True)
        if c is None or me not in c.member_ids:
            raise RpcError(400, "CHAT_ID_INVALID")
        if user in c.member_ids:
            raise RpcError(400, "USER_ALREADY_PARTICIPANT")
        if len(c.members) >= MAX_MEMBERS:
            raise RpcError(400, "USERS_TOO_MUCH")
        await con.execute("INSERT INTO chat_members (shard, chat_id, user_id, inviter_id, date) "
                          "VALUES ($1, $2, $3, $4, $5)", shard, c.id, user, me, date)
        await con.execute("UPDATE chats SET version = version + 1 WHERE shard = $1 AND id = $2", shard, c.id)
        c = await load(con, shard, c.id)
        assert c is not None  # noqa: S101 - locked above
        return c, await post(con, shard, c, me, date, action=api.types.MessageActionChatAddUser(users=[user]))

    c, msg_id = await deps.txn(shard, "chat_add_user", txn)
    return api.types.messages.InvitedUsers(updates=await answer(deps, me, c, msg_id), missing_invitees=[])


async def delete_chat_user(deps: Messages, ctx: rpc.Context,
                           q: api.functions.messages.DeleteChatUser) -> api.types.Updates:
    """Leave (oneself) or remove a member (whoever added them, or the creator)."""
    me = signed_in(ctx)
    [user] = await _input_users(deps, me, [q.user_id])
    shard = deps.shards.for_chat(q.chat_id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[ChatRow, int]:
        c = await load(con, shard, q.chat_id, lock=True)
        if c is None or me not in c.member_ids:
            raise RpcError(400, "CHAT_ID_INVALID")
        inviter = {u: inv for u, inv, _ in c.members}
        if user not in inviter:
            raise RpcError(400, "USER_NOT_PARTICIPANT")
        if user != me and me not in (c.creator_id, inviter[user]):
            raise RpcError(403, "CHAT_ADMIN_REQUIRED")
        everyone = c.member_ids  # the removed member learns of it too
        await con.execute("DELETE FROM chat_members WHERE shard = $1 AND chat_id = $2 AND user_id = $3",
                          shard, c.id, user)
        await con.execute("UPDATE chats SET version = version + 1 WHERE shard = $1 AND id = $2", shard, c.id)
        c = await load(con, shard, c.id)
        assert c is not None  # noqa: S101 - locked above
        return c, await post(con, shard, c, me, date, action=api.types.MessageActionChatDeleteUser(user_id=user),
                             to=everyone)

    c, msg_id = await deps.txn(shard, "chat_delete_user", txn)
    return await answer(deps, me, c, msg_id)


async def send_to(deps: Messages, me: int, chat_id: int, q: api.functions.messages.SendMessage) -> api.types.Updates:
    text = handlers._text(deps, q.message)
    c, msg_id = await send(deps, me, chat_id, q.random_id, text, render.encode_entities(q.entities))
    return await answer(deps, me, c, msg_id, q.random_id)


class MembersChanged(Exception):
    """The group's members are no longer those the media's readers were named for (media.py names the newcomers
    and sends again)."""

    def __init__(self, members: set[int]) -> None:
        super().__init__(f"members now {sorted(members)}")
        self.members = members


async def send(deps: Messages, me: int, chat_id: int, random_id: int, text: str, entities: bytes | None,
               media: bytes | None = None, *, readers: set[int] | None = None) -> tuple[ChatRow, int]:
    """A member's message to the group (sendMessage, or sendMedia with ``media``): the group as it was when the
    message was written (its members are who it was delivered to) and the message's id in the group. With
    ``readers`` (who may read the media), ``MembersChanged`` when a member is not among them: nothing written."""
    if random_id == 0:
        raise RpcError(400, "RANDOM_ID_INVALID")
    shard = deps.shards.for_chat(chat_id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[ChatRow, int]:
        c = await load(con, shard, chat_id)
        if c is None or me not in c.member_ids:
            raise RpcError(400, "CHAT_ID_INVALID")
        old = await con.fetchval("SELECT id FROM chat_messages WHERE shard = $1 AND chat_id = $2 AND from_id = $3 "
                                 "AND random_id = $4", shard, chat_id, me, random_id)
        if old is not None:
            return c, int(old)  # a resend: answered with the first send's message
        if readers is not None and not set(c.member_ids) <= readers:
            raise MembersChanged(set(c.member_ids))
        return c, await post(con, shard, c, me, date, text=text, entities=entities, random_id=random_id,
                             media=media)

    c, msg_id = await deps.txn(shard, "chat_send", txn)
    handlers.SENT.labels("group").inc()
    return c, msg_id


async def get_chats(deps: Messages, ctx: rpc.Context, q: api.functions.messages.GetChats) -> api.types.messages.Chats:
    me = signed_in(ctx)
    if len(q.id) > handlers.PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    chats: list[api.types.TypeChat] = []
    for chat_id in q.id:
        shard = deps.shards.for_chat(chat_id)
        c = await deps.txn(shard, "chat_get", loader(shard, chat_id))
        if c is not None:
            chats.append(render_chat(c, viewer=me))
    return api.types.messages.Chats(chats=chats)


async def get_full_chat(deps: Messages, ctx: rpc.Context,
                        q: api.functions.messages.GetFullChat) -> api.types.messages.ChatFull:
    me = signed_in(ctx)
    c = await member_of(deps, me, q.chat_id)
    participants: list[api.types.TypeChatParticipant] = [
        api.types.ChatParticipantCreator(user_id=u) if u == c.creator_id
        else api.types.ChatParticipant(user_id=u, inviter_id=inviter, date=date) for u, inviter, date in c.members]
    full = api.types.ChatFull(id=c.id, about="", participants=api.types.ChatParticipants(
        chat_id=c.id, participants=participants, version=c.version), notify_settings=api.types.PeerNotifySettings())
    return api.types.messages.ChatFull(full_chat=full, chats=[render_chat(c, viewer=me)],
                                       users=await _with_users(deps, me, [], [(USER, u) for u in c.member_ids]))


METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.messages.CreateChat: create_chat,
    api.functions.messages.AddChatUser: add_chat_user,
    api.functions.messages.DeleteChatUser: delete_chat_user,
    api.functions.messages.GetChats: get_chats,
    api.functions.messages.GetFullChat: get_full_chat,
}
