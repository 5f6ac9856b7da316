"""Channels: broadcast channels and supergroups, each stored once on its own shard (core.telegram.org/api/channel).

A channel has its own message ids and its own pts (``channels`` row, locked per post like a user's
``user_state``), its posts in ``channel_messages`` and its update log in ``channel_update_log``: a post is one
transaction on the channel's shard, whatever the number of subscribers. Nobody gets a copy or an update row per
post; a subscriber's dialog row (on their own shard, peer type 3) holds only their read position, and the chat list
asks the channel's shard for its newest message when it is shown. Subscribers online learn of a post from the
notification published after the commit (the updates service pushes it); one who was away reads the channel's log.

Joining and leaving change two shards: the membership on the channel's shard, then the member's dialog and an
``updateChannel`` in their own log, through the outbox (outbox.py: kinds ``join`` and ``leave``, whose source is
the channel, written as ``-channel_id``).

Methods: ``channels.createChannel``, ``channels.joinChannel``, ``channels.leaveChannel``, ``channels.getChannels``,
``channels.getMessages``, ``channels.readHistory``, ``channels.deleteMessages``, ``messages.getMessagesViews``;
and through the messages.* methods with a channel peer: ``sendMessage``, ``getHistory``, ``editMessage``, and
``sendMedia`` (media.py: the file is made readable by the channel's members, then ``post`` writes it with its
``media``).
Errors: CHANNEL_INVALID, CHANNEL_PRIVATE (not a member), CHAT_WRITE_FORBIDDEN (403: not an admin of a broadcast
channel), CHAT_TITLE_EMPTY, USER_ALREADY_PARTICIPANT, USER_NOT_PARTICIPANT, MESSAGE_DELETE_FORBIDDEN (403).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import TLFunction
from services.common import db
from services.common.rpc import RpcError, signed_in
from services.common.service import Result
from services.messages import groups, handlers, outbox, render, store
from services.messages.handlers import PAGE_MAX, Messages, Method, _text, _with_users
from services.messages.store import USER

# -- rows ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelRow:
    id: int
    access_hash: int
    title: str
    about: str
    creator_id: int
    date: int
    broadcast: bool
    pts: int
    last_msg_id: int
    participants_count: int


@dataclass(frozen=True)
class PostRow:
    channel_id: int
    id: int
    from_id: int
    date: int
    message: str
    entities: bytes | None
    action: bytes | None
    edit_date: int | None
    views: int
    pts: int
    media: bytes | None = None  # MessageMedia as TL (services/messages/media.py)


_CHANNEL = "id, access_hash, title, about, creator_id, date, broadcast, pts, last_msg_id, participants_count"
_POST = "channel_id, id, from_id, date, message, entities, action, edit_date, views, pts, media"


def _channel(r: Any) -> ChannelRow:
    return ChannelRow(*(r[k] for k in _CHANNEL.split(", ")))


def _post(r: Any) -> PostRow:
    return PostRow(r["channel_id"], r["id"], r["from_id"], r["date"], r["message"],
                   bytes(r["entities"]) if r["entities"] is not None else None,
                   bytes(r["action"]) if r["action"] is not None else None, r["edit_date"], r["views"], r["pts"],
                   bytes(r["media"]) if r["media"] is not None else None)


async def load(con: db.Connection, shard: int, channel_id: int, *, lock: bool = False) -> ChannelRow | None:
    row = await con.fetchrow(f"SELECT {_CHANNEL} FROM channels WHERE shard = $1 AND id = $2"  # noqa: S608
                             + (" FOR UPDATE" if lock else ""), shard, channel_id)
    return _channel(row) if row is not None else None


async def role(con: db.Connection, shard: int, channel_id: int, user_id: int) -> str | None:
    value = await con.fetchval("SELECT role FROM channel_members WHERE shard = $1 AND channel_id = $2 AND "
                               "user_id = $3", shard, channel_id, user_id)
    return str(value) if value is not None else None


async def _advance(con: db.Connection, shard: int, channel_id: int, *, messages: int, pts: int) -> tuple[int, int]:
    """Lock the channel's counters and take ids and pts: (last id taken, new pts)."""
    row = await con.fetchrow("UPDATE channels SET last_msg_id = last_msg_id + $3, pts = pts + $4 "
                             "WHERE shard = $1 AND id = $2 RETURNING last_msg_id, pts", shard, channel_id, messages,
                             pts)
    if row is None:
        raise RpcError(400, "CHANNEL_INVALID")
    return int(row["last_msg_id"]), int(row["pts"])


async def _log(con: db.Connection, shard: int, channel_id: int, pts: int, pts_count: int, date: int, kind: str,
               body: bytes) -> None:
    await con.execute("INSERT INTO channel_update_log (shard, channel_id, pts, pts_count, date, kind, body) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7)", shard, channel_id, pts, pts_count, date, kind, body)


async def _insert_post(con: db.Connection, shard: int, p: PostRow, random_id: int | None) -> None:
    await con.execute(
        "INSERT INTO channel_messages (shard, channel_id, id, from_id, date, message, entities, action, views, "
        "random_id, pts, media) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", shard, p.channel_id,
        p.id, p.from_id, p.date, p.message, p.entities, p.action, p.views, random_id, p.pts, p.media)


# -- rendering ----------------------------------------------------------------------------------------------


def render_channel(c: ChannelRow, *, viewer: int, member: bool) -> api.types.Channel:
    return api.types.Channel(id=c.id, access_hash=c.access_hash, title=c.title, photo=api.types.ChatPhotoEmpty(),
                             date=c.date, creator=c.creator_id == viewer, left=not member, broadcast=c.broadcast,
                             megagroup=not c.broadcast, participants_count=c.participants_count)


def render_post(p: PostRow, c: ChannelRow, *, viewer: int) -> api.types.TypeMessage:
    """A post as ``viewer`` sees it: a broadcast post is the channel's (``post``, views, no author)."""
    peer = api.types.PeerChannel(channel_id=p.channel_id)
    author = None if c.broadcast else api.types.PeerUser(user_id=p.from_id)
    if p.action is not None:
        return api.types.MessageService(id=p.id, out=p.from_id == viewer, post=c.broadcast, from_id=author,
                                        peer_id=peer, date=p.date, action=render.action(p.action))
    return api.types.Message(id=p.id, out=p.from_id == viewer, post=c.broadcast, from_id=author, peer_id=peer,
                             date=p.date, message=p.message, entities=render.decode_entities(p.entities),
                             media=render.media(p.media), views=p.views if c.broadcast else None,
                             forwards=0 if c.broadcast else None, edit_date=p.edit_date)


# -- resolving ----------------------------------------------------------------------------------------------


async def resolve(deps: Messages, channel_id: int, access_hash: int) -> ChannelRow:
    """The channel an inputChannel / inputPeerChannel names, or 400 CHANNEL_INVALID."""
    shard = deps.shards.for_chat(channel_id)
    row = await deps.txn(shard, "channel_get", lambda con: load(con, shard, channel_id))
    if row is None or row.access_hash != access_hash:
        raise RpcError(400, "CHANNEL_INVALID")
    return row


async def from_input(deps: Messages, channel: api.types.TypeInputChannel) -> ChannelRow:
    if isinstance(channel, api.types.InputChannel):
        return await resolve(deps, channel.channel_id, channel.access_hash)
    raise RpcError(400, "CHANNEL_INVALID")


async def _member_view(deps: Messages, me: int, c: ChannelRow) -> tuple[str | None, api.types.Channel]:
    shard = deps.shards.for_chat(c.id)
    my_role = await deps.txn(shard, "channel_role", lambda con: role(con, shard, c.id, me))
    return my_role, render_channel(c, viewer=me, member=my_role is not None)


async def _updates(deps: Messages, me: int, c: ChannelRow, updates: list[api.types.TypeUpdate],
                   posts: Sequence[PostRow] = ()) -> api.types.Updates:
    _, shown = await _member_view(deps, me, c)
    authors = [(USER, p.from_id) for p in posts]
    return api.types.Updates(updates=updates, users=await _with_users(deps, me, [], authors), chats=[shown],
                             date=deps.now(), seq=0)


# -- methods ------------------------------------------------------------------------------------------------


async def create_channel(deps: Messages, ctx: rpc.Context,
                         q: api.functions.channels.CreateChannel) -> api.types.Updates:
    me = signed_in(ctx)
    title = q.title.strip()
    if not title:
        raise RpcError(400, "CHAT_TITLE_EMPTY")
    if len(title) > 128 or len(q.about) > 255:
        raise RpcError(400, "CHAT_ABOUT_TOO_LONG" if len(q.about) > 255 else "CHAT_TITLE_TOO_LONG")
    async with deps.main.acquire() as con:
        channel_id = int(await con.fetchval("SELECT nextval('peer_ids')"))
    shard = deps.shards.for_chat(channel_id)
    date = deps.now()
    broadcast = not q.megagroup

    async def txn(con: db.Connection) -> tuple[ChannelRow, PostRow]:
        await con.execute(
            "INSERT INTO channels (shard, id, access_hash, title, about, creator_id, date, broadcast, "
            "participants_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)", shard, channel_id, secrets.randbits(63),
            title, q.about, me, date, broadcast)
        await con.execute("INSERT INTO channel_members (shard, channel_id, user_id, role, date) "
                          "VALUES ($1, $2, $3, 'creator', $4)", shard, channel_id, me, date)
        last_id, pts = await _advance(con, shard, channel_id, messages=1, pts=1)
        post = PostRow(channel_id, last_id, me, date, "", None,
                       api.types.MessageActionChannelCreate(title=title).to_bytes(), None, 0, pts)
        await _insert_post(con, shard, post, None)
        c = await load(con, shard, channel_id)
        assert c is not None  # noqa: S101 - inserted above, in this transaction
        await _log(con, shard, channel_id, pts, 1, date, "updateNewChannelMessage", api.types.UpdateNewChannelMessage(
            message=render_post(post, c, viewer=0), pts=pts, pts_count=1).to_bytes())
        await outbox_join(con, shard, c, me, joined=True, date=date)
        return c, post

    c, post = await deps.txn(shard, "channel_create", txn)
    await outbox.drain(deps, shard, -channel_id)
    return await _updates(deps, me, c, [
        api.types.UpdateChannel(channel_id=c.id),
        api.types.UpdateNewChannelMessage(message=render_post(post, c, viewer=me), pts=post.pts, pts_count=1)])


async def outbox_join(con: db.Connection, shard: int, c: ChannelRow, user_id: int, *, joined: bool,
                      date: int) -> None:
    """The member's side of a join or leave, applied on their shard (outbox.py: kinds join, leave)."""
    await store.add_outbox(con, shard, -c.id, c.pts, "join" if joined else "leave", user_id,
                           {"channel_id": c.id, "read_max": c.last_msg_id, "date": date})


async def join_channel(deps: Messages, ctx: rpc.Context,
                       q: api.functions.channels.JoinChannel) -> api.types.messages.ChatInviteJoinResultOk:
    me = signed_in(ctx)
    c = await from_input(deps, q.channel)
    shard = deps.shards.for_chat(c.id)

    async def txn(con: db.Connection) -> ChannelRow:
        if await role(con, shard, c.id, me) is not None:
            raise RpcError(400, "USER_ALREADY_PARTICIPANT")
        await con.execute("INSERT INTO channel_members (shard, channel_id, user_id, role, date) "
                          "VALUES ($1, $2, $3, 'member', $4)", shard, c.id, me, deps.now())
        await con.execute("UPDATE channels SET participants_count = participants_count + 1 WHERE shard = $1 AND "
                          "id = $2", shard, c.id)
        now = await load(con, shard, c.id)
        assert now is not None  # noqa: S101 - locked by the update above
        await outbox_join(con, shard, now, me, joined=True, date=deps.now())
        return now

    joined = await deps.txn(shard, "channel_join", txn)
    await outbox.drain(deps, shard, -c.id)
    return api.types.messages.ChatInviteJoinResultOk(
        updates=await _updates(deps, me, joined, [api.types.UpdateChannel(channel_id=c.id)]))


async def leave_channel(deps: Messages, ctx: rpc.Context, q: api.functions.channels.LeaveChannel) -> api.types.Updates:
    me = signed_in(ctx)
    c = await from_input(deps, q.channel)
    shard = deps.shards.for_chat(c.id)

    async def txn(con: db.Connection) -> ChannelRow:
        if await role(con, shard, c.id, me) is None:
            raise RpcError(400, "USER_NOT_PARTICIPANT")
        await con.execute("DELETE FROM channel_members WHERE shard = $1 AND channel_id = $2 AND user_id = $3",
                          shard, c.id, me)
        await con.execute("UPDATE channels SET participants_count = participants_count - 1 WHERE shard = $1 AND "
                          "id = $2", shard, c.id)
        now = await load(con, shard, c.id)
        assert now is not None  # noqa: S101 - locked by the update above
        await outbox_join(con, shard, now, me, joined=False, date=deps.now())
        return now

    left = await deps.txn(shard, "channel_leave", txn)
    await outbox.drain(deps, shard, -c.id)
    return await _updates(deps, me, left, [api.types.UpdateChannel(channel_id=c.id)])


def _check_poster(c: ChannelRow, my_role: str | None) -> None:
    if my_role is None:
        raise RpcError(400, "CHANNEL_PRIVATE")
    if c.broadcast and my_role == "member":
        raise RpcError(403, "CHAT_WRITE_FORBIDDEN")


async def may_post(deps: Messages, me: int, c: ChannelRow) -> None:
    """Refuse unless ``me`` may post to ``c`` (sendMedia asks before it makes a file readable by the channel;
    ``post`` asks again in its own transaction)."""
    _check_poster(c, await _role(deps, me, c))


async def _role(deps: Messages, me: int, c: ChannelRow) -> str | None:
    shard = deps.shards.for_chat(c.id)
    return await deps.txn(shard, "channel_role", lambda con: role(con, shard, c.id, me))


async def post(deps: Messages, me: int, c: ChannelRow, text: str, entities: bytes | None,
               random_id: int, media: bytes | None = None) -> api.types.Updates:
    """messages.sendMessage (or sendMedia, with ``media``) to a channel: one row and one log entry on the channel's
    shard."""
    if random_id == 0:
        raise RpcError(400, "RANDOM_ID_INVALID")
    shard = deps.shards.for_chat(c.id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[ChannelRow, PostRow]:
        _check_poster(c, await role(con, shard, c.id, me))
        old = await con.fetchrow(f"SELECT {_POST} FROM channel_messages WHERE shard = $1 AND "  # noqa: S608
                                 "channel_id = $2 AND from_id = $3 AND random_id = $4", shard, c.id, me, random_id)
        if old is not None:
            now = await load(con, shard, c.id)
            assert now is not None  # noqa: S101 - it has a post
            return now, _post(old)
        last_id, pts = await _advance(con, shard, c.id, messages=1, pts=1)
        p = PostRow(c.id, last_id, me, date, text, entities, None, None, 1 if c.broadcast else 0, pts, media)
        await _insert_post(con, shard, p, random_id)
        now = await load(con, shard, c.id)
        assert now is not None  # noqa: S101 - locked by _advance
        await _log(con, shard, c.id, pts, 1, date, "updateNewChannelMessage", api.types.UpdateNewChannelMessage(
            message=render_post(p, now, viewer=0), pts=pts, pts_count=1).to_bytes())
        return now, p

    now, p = await deps.txn(shard, "channel_post", txn)
    await deps.notify_channel(c.id, now.pts)
    return await _updates(deps, me, now, [
        api.types.UpdateMessageID(id=p.id, random_id=random_id),
        api.types.UpdateNewChannelMessage(message=render_post(p, now, viewer=me), pts=p.pts, pts_count=1)], [p])


async def _member(deps: Messages, me: int, c: ChannelRow) -> str:
    shard = deps.shards.for_chat(c.id)
    my_role = await deps.txn(shard, "channel_role", lambda con: role(con, shard, c.id, me))
    if my_role is None:
        raise RpcError(400, "CHANNEL_PRIVATE")
    return my_role


async def _page(deps: Messages, me: int, c: ChannelRow, posts: list[PostRow],
                count: int) -> api.types.messages.ChannelMessages:
    authors = [(USER, p.from_id) for p in posts]
    return api.types.messages.ChannelMessages(
        pts=c.pts, count=count, messages=[render_post(p, c, viewer=me) for p in posts], topics=[],
        chats=[render_channel(c, viewer=me, member=True)], users=await _with_users(deps, me, [], authors))


async def history(deps: Messages, me: int, c: ChannelRow, q: api.functions.messages.GetHistory,
                  limit: int) -> api.types.messages.ChannelMessages:
    await _member(deps, me, c)
    shard = deps.shards.for_chat(c.id)
    below = min(q.offset_id or 2**31 - 1, q.max_id or 2**31 - 1)
    skip = max(q.add_offset, 0)

    async def txn(con: db.Connection) -> tuple[list[PostRow], int, ChannelRow | None]:
        rows = await con.fetch(f"SELECT {_POST} FROM channel_messages "  # noqa: S608
                               "WHERE shard = $1 AND channel_id = $2 AND id < $3 AND id > $4 "
                               "ORDER BY id DESC LIMIT $5 OFFSET $6", shard, c.id, below, q.min_id, limit, skip)
        total = await con.fetchval("SELECT count(*) FROM channel_messages WHERE shard = $1 AND channel_id = $2",
                                   shard, c.id)
        return [_post(r) for r in rows], int(total), await load(con, shard, c.id)

    posts, total, now = await deps.txn(shard, "channel_history", txn)
    return await _page(deps, me, now or c, posts, total)


async def get_messages(deps: Messages, ctx: rpc.Context,
                       q: api.functions.channels.GetMessages) -> api.types.messages.ChannelMessages:
    me = signed_in(ctx)
    c = await from_input(deps, q.channel)
    await _member(deps, me, c)
    if len(q.id) > PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    ids = [m.id for m in q.id if isinstance(m, api.types.InputMessageID)]
    shard = deps.shards.for_chat(c.id)
    rows = await deps.txn(shard, "channel_get_messages", lambda con: con.fetch(
        f"SELECT {_POST} FROM channel_messages WHERE shard = $1 AND channel_id = $2 AND id = ANY($3) "  # noqa: S608
        "ORDER BY id DESC", shard, c.id, ids))
    posts = [_post(r) for r in rows]
    return await _page(deps, me, c, posts, len(posts))


async def read_history(deps: Messages, ctx: rpc.Context, q: api.functions.channels.ReadHistory) -> bool:
    """The reader's own read position, on their own shard (the channel's rows are not touched)."""
    me = signed_in(ctx)
    c = await from_input(deps, q.channel)
    await _member(deps, me, c)
    max_id = min(q.max_id or c.last_msg_id, c.last_msg_id)
    shard = deps.shards.for_user(me)
    date = deps.now()

    async def txn(con: db.Connection) -> bool:
        done = await con.execute("UPDATE dialogs SET read_inbox_max_id = $4 WHERE shard = $1 AND owner_id = $2 AND "
                                 "peer_type = 3 AND peer_id = $3 AND read_inbox_max_id < $4", shard, me, c.id, max_id)
        if done == "UPDATE 0":
            return False
        _, pts = await store.advance(con, shard, me, pts=1)
        await store.log_update(con, shard, me, pts, 1, date, "updateReadChannelInbox", api.types.UpdateReadChannelInbox(
            channel_id=c.id, max_id=max_id, still_unread_count=max(c.last_msg_id - max_id, 0), pts=c.pts).to_bytes())
        return True

    if await deps.txn(shard, "channel_read", txn):
        await deps.notify(me)
    return True


async def delete_messages(deps: Messages, ctx: rpc.Context,
                          q: api.functions.channels.DeleteMessages) -> api.types.messages.AffectedMessages:
    me = signed_in(ctx)
    c = await from_input(deps, q.channel)
    if len(q.id) > PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    shard = deps.shards.for_chat(c.id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[int, int]:
        my_role = await role(con, shard, c.id, me)
        if my_role is None:
            raise RpcError(400, "CHANNEL_PRIVATE")
        authors = await con.fetch("SELECT id, from_id FROM channel_messages WHERE shard = $1 AND channel_id = $2 AND "
                                  "id = ANY($3)", shard, c.id, sorted(set(q.id)))
        if my_role == "member" and any(r["from_id"] != me for r in authors):
            raise RpcError(403, "MESSAGE_DELETE_FORBIDDEN")
        ids = sorted(r["id"] for r in authors)
        if not ids:
            now = await load(con, shard, c.id)
            return (now.pts if now else c.pts), 0
        await con.execute("DELETE FROM channel_messages WHERE shard = $1 AND channel_id = $2 AND id = ANY($3)",
                          shard, c.id, ids)
        _, pts = await _advance(con, shard, c.id, messages=0, pts=len(ids))
        await _log(con, shard, c.id, pts, len(ids), date, "updateDeleteChannelMessages",
                   api.types.UpdateDeleteChannelMessages(channel_id=c.id, messages=ids, pts=pts,
                                                         pts_count=len(ids)).to_bytes())
        return pts, len(ids)

    pts, count = await deps.txn(shard, "channel_delete", txn)
    if count:
        await deps.notify_channel(c.id, pts)
    return api.types.messages.AffectedMessages(pts=pts, pts_count=count)


async def member_of(deps: Messages, user_id: int, channel_ids: Sequence[int]) -> list[int]:
    """The channels of ``channel_ids`` that ``user_id`` is a member of now: what the media service asks
    (files.memberOf) before a channel's file is read by someone it was not sent to by name."""
    by_shard: dict[int, list[int]] = {}
    for channel_id in sorted(set(channel_ids)):
        by_shard.setdefault(deps.shards.for_chat(channel_id), []).append(channel_id)
    found: list[int] = []
    for shard, ids in sorted(by_shard.items()):

        async def txn(con: db.Connection, s: int = shard, wanted: list[int] = ids) -> list[int]:
            rows = await con.fetch("SELECT channel_id FROM channel_members WHERE shard = $1 AND "
                                   "channel_id = ANY($2::bigint[]) AND user_id = $3", s, wanted, user_id)
            return [int(r["channel_id"]) for r in rows]

        found.extend(await deps.txn(shard, "channel_member_of", txn))
    return sorted(found)


async def get_channels(deps: Messages, ctx: rpc.Context,
                       q: api.functions.channels.GetChannels) -> api.types.messages.Chats:
    me = signed_in(ctx)
    if len(q.id) > PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    chats: list[api.types.TypeChat] = []
    for item in q.id:
        c = await from_input(deps, item)
        _, shown = await _member_view(deps, me, c)
        chats.append(shown)
    return api.types.messages.Chats(chats=chats)


async def get_views(deps: Messages, ctx: rpc.Context,
                    q: api.functions.messages.GetMessagesViews) -> api.types.messages.MessageViews:
    me = signed_in(ctx)
    if not isinstance(q.peer, api.types.InputPeerChannel):
        raise RpcError(400, "PEER_ID_INVALID")
    c = await resolve(deps, q.peer.channel_id, q.peer.access_hash)
    await _member(deps, me, c)
    if len(q.id) > PAGE_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    shard = deps.shards.for_chat(c.id)

    async def txn(con: db.Connection) -> dict[int, int]:
        if q.increment:
            await con.execute("UPDATE channel_messages SET views = views + 1 WHERE shard = $1 AND channel_id = $2 AND "
                              "id = ANY($3)", shard, c.id, list(q.id))
        rows = await con.fetch("SELECT id, views FROM channel_messages WHERE shard = $1 AND channel_id = $2 AND "
                               "id = ANY($3)", shard, c.id, list(q.id))
        return {r["id"]: r["views"] for r in rows}

    views = await deps.txn(shard, "channel_views", txn)
    items: list[api.types.TypeMessageViews] = [api.types.MessageViews(views=views.get(i)) for i in q.id]
    return api.types.messages.MessageViews(views=items, chats=[render_channel(c, viewer=me, member=True)], users=[])


async def send_to(deps: Messages, me: int, peer: api.types.InputPeerChannel, q: api.functions.messages.SendMessage,
                  entities: bytes | None) -> api.types.Updates:
    c = await resolve(deps, peer.channel_id, peer.access_hash)
    return await post(deps, me, c, _text(deps, q.message), entities, q.random_id)


async def channel_dialogs(deps: Messages, me: int,
                          dialogs: list[tuple[int, int]]) -> dict[int, tuple[ChannelRow, PostRow | None]]:
    """For the caller's channel dialogs (channel id, read position): each channel and its newest post."""
    out: dict[int, tuple[ChannelRow, PostRow | None]] = {}
    for channel_id, _ in dialogs:
        shard = deps.shards.for_chat(channel_id)

        async def txn(con: db.Connection, s: int = shard,
                      cid: int = channel_id) -> tuple[ChannelRow | None, PostRow | None]:
            c = await load(con, s, cid)
            top = await con.fetchrow(f"SELECT {_POST} FROM channel_messages "  # noqa: S608
                                     "WHERE shard = $1 AND channel_id = $2 ORDER BY id DESC LIMIT 1", s, cid)
            return c, _post(top) if top is not None else None

        c, top = await deps.txn(shard, "channel_top", txn)
        if c is not None:
            out[channel_id] = (c, top)
    return out


METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.channels.CreateChannel: create_channel,
    api.functions.channels.JoinChannel: join_channel,
    api.functions.channels.LeaveChannel: leave_channel,
    api.functions.channels.GetChannels: get_channels,
    api.functions.channels.GetMessages: get_messages,
    api.functions.channels.ReadHistory: read_history,
    api.functions.channels.DeleteMessages: delete_messages,
    api.functions.messages.GetMessagesViews: get_views,
}


# -- messages.* methods whose peer may be a channel (or a group) -----------------------------------------------


async def send_message(deps: Messages, ctx: rpc.Context, q: api.functions.messages.SendMessage) -> Result:
    if isinstance(q.peer, api.types.InputPeerChannel):
        return await send_to(deps, signed_in(ctx), q.peer, q, render.encode_entities(q.entities))
    if isinstance(q.peer, api.types.InputPeerChat):
        return await groups.send_to(deps, signed_in(ctx), q.peer.chat_id, q)
    return await handlers.send_message(deps, ctx, q)


async def get_history(deps: Messages, ctx: rpc.Context, q: api.functions.messages.GetHistory) -> Result:
    if isinstance(q.peer, api.types.InputPeerChannel):
        c = await resolve(deps, q.peer.channel_id, q.peer.access_hash)
        return await history(deps, signed_in(ctx), c, q, handlers._limit(q.limit))
    return await handlers.get_history(deps, ctx, q)


async def get_dialogs(deps: Messages, ctx: rpc.Context, q: api.functions.messages.GetDialogs) -> Result:
    """The box dialogs, with the caller's channels merged in by the date of their newest post."""
    me = signed_in(ctx)
    page = await handlers.get_dialogs(deps, ctx, q)
    assert isinstance(page, (api.types.messages.Dialogs, api.types.messages.DialogsSlice))  # noqa: S101
    shard = deps.shards.for_user(me)
    rows = await deps.txn(shard, "channel_dialogs", lambda con: con.fetch(
        "SELECT peer_id, read_inbox_max_id FROM dialogs WHERE shard = $1 AND owner_id = $2 AND peer_type = 3",
        shard, me))
    if not rows:
        return page
    found = await channel_dialogs(deps, me, [(r["peer_id"], r["read_inbox_max_id"]) for r in rows])
    before = (q.offset_date, q.offset_id) if q.offset_date or q.offset_id else (2**31 - 1, 2**31 - 1)
    dates = {(type(m.peer_id), m.id): m.date for m in page.messages if isinstance(m, api.types.Message)}
    entries: list[tuple[int, api.types.TypeDialog, api.types.TypeMessage | None]] = [
        (dates.get((api.types.PeerUser, d.top_message), 0), d, None) for d in page.dialogs
        if isinstance(d, api.types.Dialog)]
    chats: list[api.types.TypeChat] = list(page.chats)
    for r in rows:
        if r["peer_id"] not in found:
            continue
        c, top = found[r["peer_id"]]
        top_date = top.date if top is not None else c.date
        if (top_date, top.id if top else 0) >= before:
            continue
        dialog = api.types.Dialog(peer=api.types.PeerChannel(channel_id=c.id), top_message=top.id if top else 0,
                                  read_inbox_max_id=r["read_inbox_max_id"], read_outbox_max_id=c.last_msg_id,
                                  unread_count=max(c.last_msg_id - r["read_inbox_max_id"], 0),
                                  unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
                                  notify_settings=api.types.PeerNotifySettings(), pts=c.pts)
        entries.append((top_date, dialog, render_post(top, c, viewer=me) if top else None))
        chats.append(render_channel(c, viewer=me, member=True))
    entries.sort(key=lambda e: e[0], reverse=True)
    limit = handlers._limit(q.limit)
    shown = entries[:limit]
    messages = list(page.messages) + [m for _, _, m in shown if m is not None]
    dialogs = [d for _, d, _ in shown]
    total = (page.count if isinstance(page, api.types.messages.DialogsSlice) else len(page.dialogs)) + len(found)
    if total > len(dialogs):
        return api.types.messages.DialogsSlice(count=total, dialogs=dialogs, messages=messages, chats=chats,
                                               users=page.users)
    return api.types.messages.Dialogs(dialogs=dialogs, messages=messages, chats=chats, users=page.users)


async def edit_message(deps: Messages, ctx: rpc.Context, q: api.functions.messages.EditMessage) -> Result:
    """An edit of a channel post (its author, or an admin of a broadcast channel): one row and one channel-log
    entry on the channel's shard, like the post itself."""
    if not isinstance(q.peer, api.types.InputPeerChannel):
        return await handlers.edit_message(deps, ctx, q)
    me = signed_in(ctx)
    c = await resolve(deps, q.peer.channel_id, q.peer.access_hash)
    if q.message is None:
        raise RpcError(400, "MESSAGE_NOT_MODIFIED")
    text, entities = _text(deps, q.message), render.encode_entities(q.entities)
    shard = deps.shards.for_chat(c.id)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[ChannelRow, PostRow]:
        my_role = await role(con, shard, c.id, me)
        if my_role is None:
            raise RpcError(400, "CHANNEL_PRIVATE")
        old = await con.fetchrow(f"SELECT {_POST} FROM channel_messages WHERE shard = $1 AND "  # noqa: S608
                                 "channel_id = $2 AND id = $3 FOR UPDATE", shard, c.id, q.id)
        if old is None or old["action"] is not None:
            raise RpcError(400, "MESSAGE_ID_INVALID")
        if old["from_id"] != me and not (c.broadcast and my_role != "member"):
            raise RpcError(403, "MESSAGE_AUTHOR_REQUIRED")
        if old["message"] == text and (bytes(old["entities"]) if old["entities"] is not None else None) == entities:
            raise RpcError(400, "MESSAGE_NOT_MODIFIED")
        _, pts = await _advance(con, shard, c.id, messages=0, pts=1)
        row = await con.fetchrow(f"UPDATE channel_messages SET message = $4, entities = $5, edit_date = $6 "  # noqa: S608
                                 f"WHERE shard = $1 AND channel_id = $2 AND id = $3 RETURNING {_POST}",
                                 shard, c.id, q.id, text, entities, date)
        now = await load(con, shard, c.id)
        assert row is not None and now is not None  # noqa: S101 - both locked above
        p = _post(row)
        await _log(con, shard, c.id, pts, 1, date, "updateEditChannelMessage", api.types.UpdateEditChannelMessage(
            message=render_post(p, now, viewer=0), pts=pts, pts_count=1).to_bytes())
        return now, p

    now, p = await deps.txn(shard, "channel_edit", txn)
    await deps.notify_channel(c.id, now.pts)
    return await _updates(deps, me, now, [api.types.UpdateEditChannelMessage(
        message=render_post(p, now, viewer=me), pts=now.pts, pts_count=1)], [p])


METHODS |= {
    api.functions.messages.EditMessage: edit_message,
    api.functions.messages.SendMessage: send_message,
    api.functions.messages.GetHistory: get_history,
    api.functions.messages.GetDialogs: get_dialogs,
}
