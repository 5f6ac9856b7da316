"""Presence and typing: ephemeral updates, kept in Redis or nowhere, relayed to whoever is online now.

- ``account.updateStatus(offline)``: the caller's status goes to Redis (``services/common/presence.py``) and, as
  ``updateUserStatus``, to the users likely to be looking: the caller's contacts and the people of their private
  chats (both on the caller's own shard), if they are online.
- ``messages.setTyping(peer, action)``: ``updateUserTyping`` to the other side of a private chat,
  ``updateChatUserTyping`` to a basic group's other members, ``updateChannelUserTyping`` to a channel's online
  members; the caller must be able to write there (a wrong access hash or a group it is not in is refused).
  Nothing is stored; a client shows the action for about 6 seconds unless it is repeated.

Neither has a pts: they travel in ``updateShort`` and may be lost, which is what the API expects of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.types import rpc
from services.common import db, presence
from services.common.redis import Redis
from services.common.rpc import RpcError, signed_in
from services.messages import channels, chats
from services.messages.store import USER
from services.updates.push import Pusher


@dataclass
class Presence:
    pusher: Pusher
    redis: Redis

    def now(self) -> int:
        return int(self.pusher.clock())


async def update_status(deps: Presence, ctx: rpc.Context, q: api.functions.account.UpdateStatus) -> bool:
    me = signed_in(ctx)
    status = await presence.set_status(deps.redis, me, online=not q.offline, now=deps.now())
    shards = deps.pusher.shards
    shard = shards.for_user(me)

    async def observers(con: db.Connection) -> set[int]:
        rows = await con.fetch("SELECT user_id FROM contacts WHERE shard = $1 AND owner_id = $2 UNION "
                               "SELECT peer_id FROM dialogs WHERE shard = $1 AND owner_id = $2 AND peer_type = $3",
                               shard, me, USER)
        return {int(r[0]) for r in rows}

    watching = await shards.txn(shard, "updates.status_observers", observers)
    update = api.types.UpdateUserStatus(user_id=me, status=status)
    for user_id in watching - {me}:
        deps.pusher.relay(user_id, update)
    return True


async def set_typing(deps: Presence, ctx: rpc.Context, q: api.functions.messages.SetTyping) -> bool:
    me = signed_in(ctx)
    peer = q.peer
    shards = deps.pusher.shards
    if isinstance(peer, api.types.InputPeerSelf):
        return True
    if isinstance(peer, api.types.InputPeerUser):
        rows = await deps.pusher.user_rows({peer.user_id})
        row = rows.get(peer.user_id)
        if row is None or row.access_hash != peer.access_hash:
            raise RpcError(400, "PEER_ID_INVALID")
        deps.pusher.relay(peer.user_id, api.types.UpdateUserTyping(user_id=me, action=q.action,
                                                                   top_msg_id=q.top_msg_id))
        return True
    if isinstance(peer, api.types.InputPeerChat):
        shard = shards.for_chat(peer.chat_id)
        c = await shards.txn(shard, "updates.typing_chat", chats.loader(shard, peer.chat_id))
        if c is None:
            raise RpcError(400, "CHAT_ID_INVALID")
        if me not in c.member_ids:
            raise RpcError(403, "CHAT_WRITE_FORBIDDEN")
        update: Any = api.types.UpdateChatUserTyping(chat_id=c.id, from_id=api.types.PeerUser(user_id=me),
                                                     action=q.action)
        for user_id in c.member_ids:
            if user_id != me:
                deps.pusher.relay(user_id, update)
        return True
    if isinstance(peer, api.types.InputPeerChannel):
        shard = shards.for_chat(peer.channel_id)
        members = await shards.txn(shard, "updates.typing_channel", _channel_members(shard, peer.channel_id, me,
                                                                                      peer.access_hash))
        update = api.types.UpdateChannelUserTyping(channel_id=peer.channel_id, from_id=api.types.PeerUser(user_id=me),
                                                   action=q.action, top_msg_id=q.top_msg_id)
        for user_id in members:
            if user_id != me and user_id in deps.pusher.registry.online:
                deps.pusher.relay(user_id, update)
        return True
    raise RpcError(400, "PEER_ID_INVALID")


def _channel_members(shard: int, channel_id: int, me: int,
                     access_hash: int) -> Callable[[db.Connection], Awaitable[list[int]]]:
    async def txn(con: db.Connection) -> list[int]:
        c = await channels.load(con, shard, channel_id)
        if c is None or c.access_hash != access_hash:
            raise RpcError(400, "CHANNEL_INVALID")
        if await channels.role(con, shard, channel_id, me) is None:
            raise RpcError(403, "CHANNEL_PRIVATE")
        rows = await con.fetch("SELECT user_id FROM channel_members WHERE shard = $1 AND channel_id = $2",
                               shard, channel_id)
        return [int(r[0]) for r in rows]

    return txn


METHODS: dict[type[Any], Any] = {api.functions.account.UpdateStatus: update_status,
                                 api.functions.messages.SetTyping: set_typing}
