"""Basic groups: the message stored once on the group's shard, and a copy with its own id in every member's box."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mtproto.tl import api
from services.common.rpc import RpcError
from tests.helpers.messages import MessageLab, User

F = api.functions.messages


def run(main_dsn: str, body: Callable[[MessageLab], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with MessageLab(main_dsn) as lab:
            return await body(lab)

    return asyncio.run(go())


def input_user(u: User) -> api.types.InputUser:
    return api.types.InputUser(user_id=u.id, access_hash=u.access_hash)


async def texts(lab: MessageLab, user: User, chat_id: int) -> list[str]:
    page = await lab.call(user, F.GetHistory(peer=api.types.InputPeerChat(chat_id=chat_id), offset_id=0,
                                             offset_date=0, add_offset=0, limit=50, max_id=0, min_id=0, hash=0))
    return [m.message if isinstance(m, api.types.Message) else type(m.action).__name__ for m in page.messages]


def test_a_group_message_lands_in_every_members_box(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob, carol, dave = [await lab.user(n) for n in ("Alice", "Bob", "Carol", "Dave")]
        await lab.call(bob, F.SendMessage(peer=lab.peer(carol), message="private, first", random_id=1))
        made = await lab.call(alice, F.CreateChat(users=[input_user(bob), input_user(carol)], title="Trio"))
        [chat] = made.updates.chats
        assert (chat.title, chat.participants_count, chat.creator) == ("Trio", 3, True)
        chat_id = chat.id
        sent = await lab.call(alice, F.SendMessage(peer=api.types.InputPeerChat(chat_id=chat_id), message="hi all",
                                                   random_id=7))
        [msg_id] = [u.id for u in sent.updates if isinstance(u, api.types.UpdateMessageID)]
        assert msg_id == 2  # alice's box: the creation notice, then this
        again = await lab.call(alice, F.SendMessage(peer=api.types.InputPeerChat(chat_id=chat_id), message="hi all",
                                                    random_id=7))
        assert [u.id for u in again.updates if isinstance(u, api.types.UpdateMessageID)] == [2]  # a resend

        for user in (alice, bob, carol):
            assert await texts(lab, user, chat_id) == ["hi all", "MessageActionChatCreate"]
        bob_page = await lab.call(bob, F.GetHistory(peer=api.types.InputPeerChat(chat_id=chat_id), offset_id=0,
                                                    offset_date=0, add_offset=0, limit=50, max_id=0, min_id=0, hash=0))
        assert [m.id for m in bob_page.messages] == [3, 2]  # bob's own ids (his private message was 1)
        assert bob_page.chats[0].id == chat_id and not bob_page.messages[0].out
        assert len(await lab.shard_rows("SELECT id FROM chat_messages WHERE chat_id = $1", chat_id)) == 2

        with pytest.raises(RpcError, match="CHAT_ID_INVALID"):
            await lab.call(dave, F.SendMessage(peer=api.types.InputPeerChat(chat_id=chat_id), message="let me in",
                                               random_id=1))
        await lab.call(bob, F.AddChatUser(chat_id=chat_id, user_id=input_user(dave), fwd_limit=0))
        await lab.call(dave, F.SendMessage(peer=api.types.InputPeerChat(chat_id=chat_id), message="thanks",
                                           random_id=2))
        assert await texts(lab, dave, chat_id) == ["thanks", "MessageActionChatAddUser"]
        assert (await texts(lab, carol, chat_id))[:2] == ["thanks", "MessageActionChatAddUser"]

        with pytest.raises(RpcError, match="CHAT_ADMIN_REQUIRED"):  # carol neither made the group nor added dave
            await lab.call(carol, F.DeleteChatUser(chat_id=chat_id, user_id=input_user(dave)))
        await lab.call(carol, F.DeleteChatUser(chat_id=chat_id, user_id=api.types.InputUserSelf()))  # leaves
        await lab.call(alice, F.SendMessage(peer=api.types.InputPeerChat(chat_id=chat_id), message="bye carol",
                                            random_id=8))
        assert (await texts(lab, carol, chat_id))[0] == "MessageActionChatDeleteUser"  # and nothing after it
        assert (await texts(lab, bob, chat_id))[0] == "bye carol"

        full = await lab.call(bob, F.GetFullChat(chat_id=chat_id))
        assert sorted(p.user_id for p in full.full_chat.participants.participants) == sorted([alice.id, bob.id,
                                                                                             dave.id])
        chats = await lab.call(carol, F.GetChats(id=[chat_id]))
        assert isinstance(chats.chats[0], api.types.ChatForbidden)
        dialogs = await lab.call(bob, F.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                   limit=10, hash=0))
        assert {type(d.peer).__name__ for d in dialogs.dialogs} == {"PeerChat", "PeerUser"}

    run(database, body)


def test_editing_and_deleting_for_everyone_in_a_group(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob, carol = [await lab.user(n) for n in ("Alice", "Bob", "Carol")]
        await lab.call(carol, F.SendMessage(peer=lab.peer(bob), message="shifts bob's ids", random_id=1))
        made = await lab.call(alice, F.CreateChat(users=[input_user(bob), input_user(carol)], title="Edits"))
        chat_id = made.updates.chats[0].id
        peer = api.types.InputPeerChat(chat_id=chat_id)
        sent = await lab.call(bob, F.SendMessage(peer=peer, message="tpyo", random_id=5))
        [bob_id] = [u.id for u in sent.updates if isinstance(u, api.types.UpdateMessageID)]
        await lab.call(alice, F.SendMessage(peer=peer, message="keep me", random_id=6))

        with pytest.raises(RpcError, match="MESSAGE_AUTHOR_REQUIRED"):
            await lab.call(alice, F.EditMessage(peer=peer, id=2, message="not hers"))  # alice's copy of bob's
        edited = await lab.call(bob, F.EditMessage(peer=peer, id=bob_id, message="typo"))
        assert edited.updates[0].message.message == "typo"
        for user in (alice, bob, carol):
            assert (await texts(lab, user, chat_id))[:2] == ["keep me", "typo"]
        assert [r["message"] for r in await lab.shard_rows(
            "SELECT message FROM chat_messages WHERE chat_id = $1 AND from_id = $2", chat_id, bob.id)] == ["typo"]

        done = await lab.call(bob, F.DeleteMessages(revoke=True, id=[bob_id]))
        assert done.pts_count == 1
        for user in (alice, bob, carol):
            assert (await texts(lab, user, chat_id))[0] == "keep me" and "typo" not in await texts(lab, user, chat_id)
        # alice "deletes for everyone" a message she did not write: only her own copy goes
        carol_copy = await lab.call(carol, F.GetHistory(peer=peer, offset_id=0, offset_date=0, add_offset=0,
                                                        limit=1, max_id=0, min_id=0, hash=0))
        await lab.call(carol, F.DeleteMessages(revoke=True, id=[carol_copy.messages[0].id]))
        assert "keep me" not in await texts(lab, carol, chat_id)
        assert (await texts(lab, alice, chat_id))[0] == "keep me"
        assert await lab.shard_rows("SELECT id FROM outbox") == []
        dialogs = await lab.call(carol, F.GetDialogs(offset_date=0, offset_id=0,
                                                     offset_peer=api.types.InputPeerEmpty(), limit=10, hash=0))
        assert all(d.unread_count >= 0 for d in dialogs.dialogs)

        # out of the group into a private chat: a forward names the group message's author
        alice_copy = await lab.call(alice, F.GetHistory(peer=peer, offset_id=0, offset_date=0, add_offset=0,
                                                        limit=1, max_id=0, min_id=0, hash=0))
        fwd = await lab.call(alice, F.ForwardMessages(from_peer=peer, id=[alice_copy.messages[0].id], random_id=[9],
                                                      to_peer=lab.peer(carol)))
        [new] = [u.message for u in fwd.updates if isinstance(u, api.types.UpdateNewMessage)]
        assert (new.message, new.fwd_from.from_id) == ("keep me", api.types.PeerUser(user_id=alice.id))
        with pytest.raises(RpcError, match="PEER_ID_INVALID"):  # into a group: not built
            await lab.call(alice, F.ForwardMessages(from_peer=lab.peer(carol), id=[new.id], random_id=[10],
                                                    to_peer=peer))

    run(database, body)
