"""updates.getState, updates.getDifference and updates.getChannelDifference, served from the durable logs the
message service writes (core.telegram.org/api/updates).

The truth is each user's ``update_log`` and each channel's ``channel_update_log`` on the shards: every row is an
update exactly as the client receives it, at the pts it produced, with no gaps. A client that was away (or missed
a push) sends the pts it has; the answer is what came after, in order:

- nothing new: ``updates.differenceEmpty``;
- more than ``too_long`` updates behind: ``updates.differenceTooLong`` (the client reloads its chats instead);
- otherwise the updates after that pts, at most ``pts_total_limit`` (or ``limit``) of them: ``updates.difference``
  when that reaches the user's current pts, else ``updates.differenceSlice`` whose ``intermediate_state`` is where
  to ask from next. New messages go in ``new_messages``, everything else in ``other_updates``, with the users and
  chats they name.

Secret chats have their own sequence, qts, kept per device (the auth key of the call): each device's queue of
updateNewEncryptedMessage and updateEncryption (services/messages/secret_store.py) until messages.receivedQueue
acknowledges it. ``updates.getState`` answers the device's qts; ``getDifference`` also returns the queued updates
after ``q.qts`` (encrypted messages in ``new_encrypted_messages``, updateEncryption first in ``other_updates``) and
the qts reached in ``state.qts``.

A channel's difference is the same over the channel's log (``updates.channelDifference`` with ``final`` when it
reaches the channel's pts, ``channelDifferenceEmpty`` when there is nothing, ``channelDifferenceTooLong`` with the
newest posts when the client is too far behind).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLFunction
from services.common import db, users
from services.common.config import UpdatesConfig
from services.common.rpc import RpcError, signed_in
from services.common.service import Result
from services.messages import channels, chats, secret_store, store
from services.messages.channels import ChannelRow
from shard_db import Shards

Method = Callable[["Updates", rpc.Context, Any], Awaitable[Result]]


@dataclass
class Updates:
    """What the handlers need, injected by server.py."""

    config: UpdatesConfig
    shards: Shards
    main: db.Pool
    clock: Callable[[], float] = field(default=time.time)

    def now(self) -> int:
        return int(self.clock())


def _split(bodies: Iterable[bytes]) -> tuple[list[api.types.TypeMessage], list[api.types.TypeUpdate]]:
    """Logged updates as the two lists of a difference: new messages, and every other update."""
    messages: list[api.types.TypeMessage] = []
    others: list[api.types.TypeUpdate] = []
    for body in bodies:
        update = Reader(body).read_object()
        if isinstance(update, (api.types.UpdateNewMessage, api.types.UpdateNewChannelMessage)):
            messages.append(update.message)
        elif isinstance(update, api.types.TypeUpdate):
            others.append(update)
    return messages, others


def _split_qts(bodies: Iterable[bytes]) -> tuple[list[api.types.TypeEncryptedMessage], list[api.types.TypeUpdate]]:
    """A device's queued secret-chat updates as a difference carries them: the encrypted messages (without
    their qts, which ``state.qts`` sums up), and the other updates (updateEncryption) in order."""
    encrypted: list[api.types.TypeEncryptedMessage] = []
    others: list[api.types.TypeUpdate] = []
    for body in bodies:
        update = Reader(body).read_object()
        if isinstance(update, api.types.UpdateNewEncryptedMessage):
            encrypted.append(update.message)
        elif isinstance(update, api.types.TypeUpdate):
            others.append(update)
    return encrypted, others


def peers_named(messages: list[Any], others: list[Any]) -> tuple[set[int], set[int], set[int]]:
    """The user, basic-group and channel ids the client needs objects for: of the messages (a difference's
    new_messages) and of the updates (any update, and the message one carries). push.py uses it too."""
    user_ids: set[int] = set()
    chat_ids: set[int] = set()
    channel_ids: set[int] = set()
    peers: list[Any] = []
    carried = [m for u in others if (m := getattr(u, "message", None)) is not None and not isinstance(m, str)]
    for m in [*messages, *carried]:
        peers += [getattr(m, "peer_id", None), getattr(m, "from_id", None)]
        peers.append(getattr(getattr(m, "fwd_from", None), "from_id", None))
    for u in others:
        peers.append(getattr(u, "peer", None))
        if isinstance(getattr(u, "channel_id", None), int):
            channel_ids.add(u.channel_id)
    for p in peers:
        if isinstance(p, api.types.PeerUser):
            user_ids.add(p.user_id)
        elif isinstance(p, api.types.PeerChat):
            chat_ids.add(p.chat_id)
        elif isinstance(p, api.types.PeerChannel):
            channel_ids.add(p.channel_id)
    return user_ids, chat_ids, channel_ids


def _channel_view(shard: int, channel_id: int,
                  me: int) -> Callable[[db.Connection], Awaitable[tuple[ChannelRow | None, bool]]]:
    async def txn(con: db.Connection) -> tuple[ChannelRow | None, bool]:
        return await channels.load(con, shard, channel_id), await channels.role(con, shard, channel_id, me) is not None

    return txn


async def _objects(deps: Updates, me: int, user_ids: set[int], chat_ids: set[int],
                   channel_ids: set[int]) -> tuple[list[api.types.TypeChat], list[api.types.TypeUser]]:
    async with deps.main.acquire() as con:
        rows = await users.by_id(con, user_ids | {me})
    user_list: list[api.types.TypeUser] = [users.render(rows[i], viewer=me) for i in sorted(rows)]
    chat_list: list[api.types.TypeChat] = []
    for chat_id in sorted(chat_ids):
        shard = deps.shards.for_chat(chat_id)
        c = await deps.shards.txn(shard, "updates.chat", chats.loader(shard, chat_id))
        if c is not None:
            chat_list.append(chats.render_chat(c, viewer=me))
    for channel_id in sorted(channel_ids):
        shard = deps.shards.for_chat(channel_id)
        ch, member = await deps.shards.txn(shard, "updates.channel", _channel_view(shard, channel_id, me))
        if ch is not None:
            chat_list.append(channels.render_channel(ch, viewer=me, member=member))
    return chat_list, user_list


async def get_state(deps: Updates, ctx: rpc.Context, q: api.functions.updates.GetState) -> api.types.updates.State:
    me = signed_in(ctx)
    shard = deps.shards.for_user(me)

    async def txn(con: db.Connection) -> tuple[int, int, int]:
        pts, unread = await store.pts_and_unread(con, shard, me)
        return pts, unread, await secret_store.current_qts(con, shard, me, ctx.auth_key_id)

    pts, unread, qts = await deps.shards.txn(shard, "updates.get_state", txn)
    return api.types.updates.State(pts=pts, qts=qts, date=deps.now(), seq=0, unread_count=unread)


async def get_difference(deps: Updates, ctx: rpc.Context,
                         q: api.functions.updates.GetDifference) -> api.types.updates.TypeDifference:
    me = signed_in(ctx)
    if q.pts < 0:
        raise RpcError(400, "PERSISTENT_TIMESTAMP_INVALID")
    if q.qts < 0:
        raise RpcError(400, "QTS_INVALID")
    limit = min(q.pts_total_limit or q.pts_limit or deps.config.difference_limit, deps.config.difference_limit)
    shard = deps.shards.for_user(me)
    key = ctx.auth_key_id  # qts is per device: its secret chats' queue

    async def txn(con: db.Connection) -> tuple[int, int, list[tuple[int, bytes]], int, list[tuple[int, bytes]]]:
        current, unread = await store.pts_and_unread(con, shard, me)
        current_qts = await secret_store.current_qts(con, shard, me, key)
        queued = await secret_store.queue_after(con, shard, me, key, q.qts, limit)
        if q.pts >= current or current - q.pts > deps.config.too_long:
            return current, unread, [], current_qts, queued
        logged = [(pts, body) for pts, _, body in await store.updates_after(con, shard, me, q.pts, limit)]
        return current, unread, logged, current_qts, queued

    current, unread, rows, current_qts, queued = await deps.shards.txn(shard, "updates.get_difference", txn)
    date = deps.now()
    if q.pts > current:
        # The client claims a pts the server never gave out (a wiped database, a client bug): start over from now.
        return api.types.updates.DifferenceTooLong(pts=current)
    if q.pts == current and not queued:
        return api.types.updates.DifferenceEmpty(date=date, seq=0)
    if current - q.pts > deps.config.too_long:
        return api.types.updates.DifferenceTooLong(pts=current)
    messages, others = _split(body for _, body in rows)
    encrypted, secret_others = _split_qts(body for _, body in queued)
    chat_list, user_list = await _objects(deps, me, *peers_named(messages, others))
    reached = rows[-1][0] if rows else q.pts
    # The queue keeps what the device has not acknowledged (receivedQueue drops a prefix), so with nothing queued
    # after q.qts the device is at the current qts.
    reached_qts = queued[-1][0] if queued else current_qts
    state = api.types.updates.State(pts=reached, qts=reached_qts, date=date, seq=0, unread_count=unread)
    if reached < current or reached_qts < current_qts:
        return api.types.updates.DifferenceSlice(new_messages=messages, new_encrypted_messages=encrypted,
                                                 other_updates=secret_others + others, chats=chat_list,
                                                 users=user_list, intermediate_state=state)
    return api.types.updates.Difference(new_messages=messages, new_encrypted_messages=encrypted,
                                        other_updates=secret_others + others, chats=chat_list, users=user_list,
                                        state=state)


async def get_channel_difference(deps: Updates, ctx: rpc.Context, q: api.functions.updates.GetChannelDifference
                                 ) -> api.types.updates.TypeChannelDifference:
    me = signed_in(ctx)
    if not isinstance(q.channel, api.types.InputChannel):
        raise RpcError(400, "CHANNEL_INVALID")
    channel_id, access_hash = q.channel.channel_id, q.channel.access_hash
    shard = deps.shards.for_chat(channel_id)
    limit = min(max(q.limit, 1), deps.config.difference_limit)

    async def txn(con: db.Connection) -> tuple[ChannelRow | None, str | None, list[tuple[int, bytes]]]:
        c = await channels.load(con, shard, channel_id)
        if c is None or c.access_hash != access_hash:
            return None, None, []
        my_role = await channels.role(con, shard, channel_id, me)
        if my_role is None or q.pts >= c.pts or c.pts - q.pts > deps.config.too_long:
            return c, my_role, []
        rows = await con.fetch("SELECT pts, body FROM channel_update_log WHERE shard = $1 AND channel_id = $2 AND "
                               "pts > $3 ORDER BY pts LIMIT $4", shard, channel_id, q.pts, limit)
        return c, my_role, [(r["pts"], bytes(r["body"])) for r in rows]

    c, my_role, rows = await deps.shards.txn(shard, "updates.get_channel_difference", txn)
    if c is None:
        raise RpcError(400, "CHANNEL_INVALID")
    if my_role is None:
        raise RpcError(400, "CHANNEL_PRIVATE")
    if q.pts >= c.pts:
        return api.types.updates.ChannelDifferenceEmpty(final=True, pts=c.pts)
    if c.pts - q.pts > deps.config.too_long:
        raise RpcError(400, "PERSISTENT_TIMESTAMP_OUTDATED")  # the client reloads the channel's history
    messages, others = _split(body for _, body in rows)
    user_ids, chat_ids, channel_ids = peers_named(messages, others)
    chat_list, user_list = await _objects(deps, me, user_ids, chat_ids, channel_ids | {channel_id})
    reached = rows[-1][0]
    return api.types.updates.ChannelDifference(final=reached >= c.pts, pts=reached, new_messages=messages,
                                               other_updates=others, chats=chat_list, users=user_list)


METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.updates.GetState: get_state,
    api.functions.updates.GetDifference: get_difference,
    api.functions.updates.GetChannelDifference: get_channel_difference,
}

