"""Channels: a post is stored once on the channel's shard and read by every subscriber; joining, leaving, views,
read positions and the chat list."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mtproto.tl import api
from services.common.rpc import RpcError
from tests.helpers.messages import MessageLab, User

F, CH = api.functions.messages, api.functions.channels


def run(main_dsn: str, body: Callable[[MessageLab], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with MessageLab(main_dsn) as lab:
            return await body(lab)

    return asyncio.run(go())


def input_channel(peer: api.types.InputPeerChannel) -> api.types.InputChannel:
    return api.types.InputChannel(channel_id=peer.channel_id, access_hash=peer.access_hash)


async def history(lab: MessageLab, user: User, peer: Any) -> Any:
    return await lab.call(user, F.GetHistory(peer=peer, offset_id=0, offset_date=0, add_offset=0, limit=50,
                                             max_id=0, min_id=0, hash=0))


def test_a_broadcast_reaches_every_subscribers_history_and_is_stored_once(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        owner = await lab.user("Owner")
        subscribers = [await lab.user(f"Sub{i}") for i in range(5)]
        created = await lab.call(owner, CH.CreateChannel(broadcast=True, title="News", about="daily"))
        peer = lab.channel(created)
        assert isinstance(created.updates[1], api.types.UpdateNewChannelMessage)
        assert isinstance(created.updates[1].message.action, api.types.MessageActionChannelCreate)
        for sub in subscribers:
            joined = await lab.call(sub, CH.JoinChannel(channel=input_channel(peer)))
            assert joined.updates.chats[0].participants_count >= 2

        sent = await lab.call(owner, F.SendMessage(peer=peer, message="first post", random_id=1))
        [new] = [u for u in sent.updates if isinstance(u, api.types.UpdateNewChannelMessage)]
        assert (new.message.id, new.pts, new.message.post) == (2, 2, True)
        again = await lab.call(owner, F.SendMessage(peer=peer, message="first post", random_id=1))
        assert [u.id for u in again.updates if isinstance(u, api.types.UpdateMessageID)] == [2]  # a resend

        for sub in subscribers:
            page = await history(lab, sub, peer)
            assert isinstance(page, api.types.messages.ChannelMessages)
            assert [getattr(m, "message", None) for m in page.messages] == ["first post", None]
            assert page.pts == 2

        # One row per post, whatever the number of subscribers; nothing in anybody's box or update log but the
        # joins themselves (updateChannel).
        assert len(await lab.shard_rows("SELECT id FROM channel_messages WHERE channel_id = $1", peer.channel_id)) == 2
        assert await lab.shard_rows("SELECT owner_id FROM messages WHERE peer_type = 3") == []
        kinds = await lab.shard_rows("SELECT DISTINCT kind FROM update_log")
        assert {r["kind"] for r in kinds} == {"updateChannel"}

        with pytest.raises(RpcError, match="CHAT_WRITE_FORBIDDEN"):
            await lab.call(subscribers[0], F.SendMessage(peer=peer, message="not an admin", random_id=2))
        outsider = await lab.user("Outsider")
        with pytest.raises(RpcError, match="CHANNEL_PRIVATE"):
            await history(lab, outsider, peer)
        with pytest.raises(RpcError, match="CHANNEL_INVALID"):
            await history(lab, outsider, api.types.InputPeerChannel(channel_id=peer.channel_id, access_hash=1))

    run(database, body)


def test_dialogs_views_reads_deletes_and_leaving(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        owner, sub, friend = await lab.user("Owner"), await lab.user("Sub"), await lab.user("Friend")
        clock = itertools.count(1_700_000_000)  # every call a second later: the chat list orders by date
        lab.deps.clock = lambda: float(next(clock))
        peer = lab.channel(await lab.call(owner, CH.CreateChannel(megagroup=True, title="Group", about="")))
        await lab.call(sub, CH.JoinChannel(channel=input_channel(peer)))
        await lab.call(friend, F.SendMessage(peer=lab.peer(sub), message="private hello", random_id=1))
        for i in range(3):
            await lab.call(owner, F.SendMessage(peer=peer, message=f"post {i}", random_id=10 + i))
        await lab.call(sub, F.SendMessage(peer=peer, message="a member writes", random_id=20))  # a supergroup

        dialogs = await lab.call(sub, F.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                   limit=10, hash=0))
        assert [type(d.peer).__name__ for d in dialogs.dialogs] == ["PeerChannel", "PeerUser"]
        channel_dialog = dialogs.dialogs[0]
        assert (channel_dialog.top_message, channel_dialog.unread_count) == (5, 4)
        assert [c.title for c in dialogs.chats] == ["Group"]

        assert await lab.call(sub, CH.ReadHistory(channel=input_channel(peer), max_id=4)) is True
        dialogs = await lab.call(sub, F.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                   limit=10, hash=0))
        assert (dialogs.dialogs[0].read_inbox_max_id, dialogs.dialogs[0].unread_count) == (4, 1)

        views = await lab.call(sub, F.GetMessagesViews(peer=peer, id=[2, 3], increment=True))
        assert [v.views for v in views.views] == [1, 1]

        with pytest.raises(RpcError, match="MESSAGE_DELETE_FORBIDDEN"):
            await lab.call(sub, CH.DeleteMessages(channel=input_channel(peer), id=[2]))
        gone = await lab.call(owner, CH.DeleteMessages(channel=input_channel(peer), id=[2, 3]))
        assert gone.pts_count == 2
        page = await history(lab, sub, peer)
        assert [m.id for m in page.messages] == [5, 4, 1]
        got = await lab.call(sub, CH.GetMessages(channel=input_channel(peer), id=[api.types.InputMessageID(id=4)]))
        assert [m.message for m in got.messages] == ["post 2"]

        await lab.call(sub, CH.LeaveChannel(channel=input_channel(peer)))
        with pytest.raises(RpcError, match="CHANNEL_PRIVATE"):
            await history(lab, sub, peer)
        dialogs = await lab.call(sub, F.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                   limit=10, hash=0))
        assert [type(d.peer).__name__ for d in dialogs.dialogs] == ["PeerUser"]
        with pytest.raises(RpcError, match="USER_NOT_PARTICIPANT"):
            await lab.call(sub, CH.LeaveChannel(channel=input_channel(peer)))

    run(database, body)


def test_a_post_is_edited_by_its_author_or_an_admin(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        owner, sub = await lab.user("Owner"), await lab.user("Sub")
        peer = lab.channel(await lab.call(owner, CH.CreateChannel(broadcast=True, title="News", about="")))
        await lab.call(sub, CH.JoinChannel(channel=input_channel(peer)))
        await lab.call(owner, F.SendMessage(peer=peer, message="tpyo", random_id=1))
        edited = await lab.call(owner, F.EditMessage(peer=peer, id=2, message="typo"))
        [update] = edited.updates
        assert isinstance(update, api.types.UpdateEditChannelMessage) and update.pts == 3
        assert (update.message.message, update.message.edit_date is not None) == ("typo", True)
        page = await history(lab, sub, peer)
        assert page.messages[0].message == "typo" and page.pts == 3
        with pytest.raises(RpcError, match="MESSAGE_AUTHOR_REQUIRED"):
            await lab.call(sub, F.EditMessage(peer=peer, id=2, message="mine now"))
        with pytest.raises(RpcError, match="MESSAGE_NOT_MODIFIED"):
            await lab.call(owner, F.EditMessage(peer=peer, id=2, message="typo"))
        with pytest.raises(RpcError, match="MESSAGE_ID_INVALID"):
            await lab.call(owner, F.EditMessage(peer=peer, id=1, message="the creation notice"))
        kinds = [r["kind"] for r in await lab.shard_rows(
            "SELECT kind FROM channel_update_log WHERE channel_id = $1 ORDER BY pts", peer.channel_id)]
        assert kinds == ["updateNewChannelMessage", "updateNewChannelMessage", "updateEditChannelMessage"]

    run(database, body)
