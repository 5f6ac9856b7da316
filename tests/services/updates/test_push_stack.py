"""Live push on a whole stack (`mtlab up --detach`): a message reaches every online device of its recipient (and
the sender's other devices) as an update, without any polling; a channel post reaches online subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack as ExitStack
from typing import Any

import anyio
import pytest
from telethon import TelegramClient, events
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import MemorySession

from mtlab.client import Client, ClientConfig, account
from mtproto.tl import api
from tests.helpers.auth import fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.stack import Stack, running_stack

F = api.functions.messages


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


def peer(user: api.types.User) -> api.types.InputPeerUser:
    assert user.access_hash is not None
    return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash)


async def next_update(client: Client, want: Callable[[Any], bool] = lambda u: True) -> Any:
    """The next pushed Updates object ``want`` accepts (the ones before it are skipped)."""
    with anyio.fail_after(20):
        async for received in client.updates():
            if isinstance(received.obj, api.types.TypeUpdates) and want(received.obj):
                return received.obj
    raise AssertionError("the update stream ended")


def inner(updates: Any) -> list[Any]:
    """The updates a container or an updateShort carries."""
    if isinstance(updates, api.types.UpdateShort):
        return [updates.update]
    return list(getattr(updates, "updates", []))


def texts(updates: Any) -> list[str]:
    """The texts of the new messages an Updates object carries, in whichever shape."""
    if isinstance(updates, (api.types.UpdateShortMessage, api.types.UpdateShortChatMessage)):
        return [updates.message]
    return [x.message.message for x in inner(updates)
            if isinstance(x, api.types.UpdateNewMessage) and isinstance(x.message, api.types.Message)]


async def users(config: ClientConfig, n: int, stack_: ExitStack) -> list[tuple[Client, api.types.User]]:
    out = []
    for i in range(n):
        client = await stack_.enter_async_context(Client(config))
        phone, code = fresh_test_number()
        me = await account.sign_in_or_up(client.invoke, phone, code, first_name=f"User{i}")
        await client.invoke(api.functions.updates.GetState())  # subscribes the session to pushes
        out.append((client, me))
    return out


def test_a_message_reaches_every_device_of_both_users(stack: Stack) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()

    async def main() -> None:
        async with Client(config) as a1, Client(config) as a2, Client(config) as b1, Client(config) as b2, \
                Client(config) as b3:
            alice = await account.sign_in_or_up(a1.invoke, alice_phone, alice_code, first_name="Alice")
            await account.sign_in_or_up(a2.invoke, alice_phone, alice_code, first_name="Alice")
            bob = await account.sign_in_or_up(b1.invoke, bob_phone, bob_code, first_name="Bob")
            for device in (b2, b3):
                await account.sign_in_or_up(device.invoke, bob_phone, bob_code, first_name="Bob")
            for device in (a2, b1, b2, b3):  # a call subscribes the session to pushes
                await device.invoke(api.functions.updates.GetState())
            sent = await a1.invoke(F.SendMessage(peer=peer(bob), message="live, hello", random_id=7))
            assert isinstance(sent, api.types.UpdateShortSentMessage)
            for device in (b1, b2, b3):
                got = await next_update(device)
                assert isinstance(got, api.types.UpdateShortMessage), got
                assert (got.message, got.user_id, got.out, got.pts, got.pts_count) == (
                    "live, hello", alice.id, False, 1, 1)
            mine = await next_update(a2)  # the sender's other device
            assert isinstance(mine, api.types.UpdateShortMessage), mine
            assert (mine.message, mine.user_id, mine.out) == ("live, hello", bob.id, True)

    anyio.run(main)


def test_group_messages_channel_posts_typing_and_presence_are_pushed(stack: Stack) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)

    async def main() -> None:
        async with ExitStack() as stack_:
            (a, alice), (b, bob), (c, carol) = await users(config, 3, stack_)
            inputs = [api.types.InputUser(user_id=u.id, access_hash=u.access_hash or 0) for u in (bob, carol)]
            made = await a.invoke(F.CreateChat(users=inputs, title="Trio"))
            chat_id = made.updates.chats[0].id
            await a.invoke(F.SendMessage(peer=api.types.InputPeerChat(chat_id=chat_id), message="hi all",
                                         random_id=1))
            for client in (b, c):
                # Short when it is pushed alone; in an updatesCombined when the push also carries the chat's
                # creation, read from the log in the same round.
                got = await next_update(client, lambda u: "hi all" in texts(u))
                if isinstance(got, api.types.UpdateShortChatMessage):
                    assert (got.chat_id, got.from_id) == (chat_id, alice.id)
                else:
                    [m] = [x.message for x in inner(got) if isinstance(x, api.types.UpdateNewMessage)
                           and getattr(x.message, "message", None) == "hi all"]
                    assert (m.peer_id, m.from_id) == (api.types.PeerChat(chat_id=chat_id),
                                                      api.types.PeerUser(user_id=alice.id))

            created = await a.invoke(api.functions.channels.CreateChannel(broadcast=True, title="News", about=""))
            [channel] = created.chats
            for client in (b, c):
                await client.invoke(api.functions.channels.JoinChannel(channel=api.types.InputChannel(
                    channel_id=channel.id, access_hash=channel.access_hash)))
            channel_peer = api.types.InputPeerChannel(channel_id=channel.id, access_hash=channel.access_hash)
            await a.invoke(F.SendMessage(peer=channel_peer, message="breaking", random_id=2))
            for client in (b, c):
                got = await next_update(client, lambda u: any(
                    isinstance(x, api.types.UpdateNewChannelMessage) for x in inner(u)))
                [post] = [x for x in inner(got) if isinstance(x, api.types.UpdateNewChannelMessage)]
                assert post.message.message == "breaking"
                assert [ch.id for ch in got.chats] == [channel.id]  # the channel object comes with the post

            await a.invoke(F.SetTyping(peer=api.types.InputPeerUser(user_id=bob.id, access_hash=bob.access_hash or 0),
                                       action=api.types.SendMessageTypingAction()))
            got = await next_update(b, lambda u: isinstance(u, api.types.UpdateShort))
            assert isinstance(got.update, api.types.UpdateUserTyping) and got.update.user_id == alice.id
            await b.invoke(F.SetTyping(peer=api.types.InputPeerChat(chat_id=chat_id),
                                       action=api.types.SendMessageTypingAction()))
            for client in (a, c):
                got = await next_update(client, lambda u: isinstance(u, api.types.UpdateShort))
                assert isinstance(got.update, api.types.UpdateChatUserTyping)
                assert got.update.from_id == api.types.PeerUser(user_id=bob.id)

            # Alice and Bob share a group, not a private chat: Bob sends one, and then sees Alice's status.
            bob_peer = api.types.InputPeerUser(user_id=bob.id, access_hash=bob.access_hash or 0)
            await a.invoke(F.SendMessage(peer=bob_peer, message="psst", random_id=3))
            assert await a.invoke(api.functions.account.UpdateStatus(offline=False)) is True
            got = await next_update(b, lambda u: isinstance(u, api.types.UpdateShort) and isinstance(
                u.update, api.types.UpdateUserStatus))
            assert got.update.user_id == alice.id and isinstance(got.update.status, api.types.UserStatusOnline)
            [seen] = await b.invoke(api.functions.users.GetUsers(id=[api.types.InputUser(
                user_id=alice.id, access_hash=alice.access_hash or 0)]))
            assert isinstance(seen.status, api.types.UserStatusOnline)
            await a.invoke(api.functions.account.UpdateStatus(offline=True))
            got = await next_update(b, lambda u: isinstance(u, api.types.UpdateShort) and isinstance(
                u.update, api.types.UpdateUserStatus))
            assert isinstance(got.update.status, api.types.UserStatusOffline)

            # Typing at someone you were never shown is refused.
            with pytest.raises(Exception, match="PEER_ID_INVALID"):
                await c.invoke(F.SetTyping(peer=api.types.InputPeerUser(user_id=alice.id, access_hash=1),
                                           action=api.types.SendMessageTypingAction()))

    anyio.run(main)


def test_telethon_receives_a_new_message_as_an_update(stack: Stack) -> None:
    """Stock Telethon, with its own update handling on: an SDK user's message fires its NewMessage event."""
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()

    async def accounts() -> tuple[api.types.User, api.types.User]:
        async with Client(config) as a, Client(config) as b:
            alice = await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
            bob = await account.sign_in_or_up(b.invoke, bob_phone, bob_code, first_name="Bob")
            # a first message, so that Telethon (signed in as Bob) knows Alice from its dialogs
            await a.invoke(F.SendMessage(peer=peer(bob), message="first", random_id=1))
            return alice, bob

    alice, bob = anyio.run(accounts)
    telethon_rsa.add_key(public_pem(stack), old=False)

    async def telethon_side() -> tuple[str, int, bool]:
        session = MemorySession()
        session.set_dc(2, "127.0.0.1", stack.port)
        client = TelegramClient(session, 1, "lab", connection_retries=1, request_retries=1)
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        @client.on(events.NewMessage(incoming=True))
        async def on_message(event: Any) -> None:
            if not got.done():
                got.set_result(event.message)

        await asyncio.wait_for(client.connect(), 30)
        try:
            await client.send_code_request(bob_phone)
            await client.sign_in(bob_phone, bob_code)
            await client.get_dialogs()
            await client.catch_up()

            async def alice_sends() -> None:
                async with Client(config) as a:
                    await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
                    await a.invoke(F.SendMessage(peer=peer(bob), message="live to Telethon", random_id=2))

            await asyncio.get_running_loop().run_in_executor(None, anyio.run, alice_sends)
            message = await asyncio.wait_for(got, 30)
            return message.message, message.sender_id, message.out
        finally:
            await client.disconnect()

    assert asyncio.run(telethon_side()) == ("live to Telethon", alice.id, False)


def test_a_revoked_device_stops_getting_pushes_at_once(stack: Stack) -> None:
    """account.resetAuthorization from another device: the revoked one's open connection gets no more pushes
    (the gateway hears it on keys.watch), before it ever calls again."""
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()

    async def main() -> None:
        async with Client(config) as a, Client(config) as lost, Client(config) as kept:
            await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
            bob = await account.sign_in_or_up(lost.invoke, bob_phone, bob_code, first_name="Bob")
            await account.sign_in_or_up(kept.invoke, bob_phone, bob_code, first_name="Bob")
            for device in (lost, kept):
                await device.invoke(api.functions.updates.GetState())
            await a.invoke(F.SendMessage(peer=peer(bob), message="to both", random_id=1))
            for device in (lost, kept):
                assert "to both" in texts(await next_update(device, lambda u: "to both" in texts(u)))

            found = await kept.invoke(api.functions.account.GetAuthorizations())
            [other] = [x for x in found.authorizations if not x.current]
            assert await kept.invoke(api.functions.account.ResetAuthorization(hash=other.hash)) is True
            await a.invoke(F.SendMessage(peer=peer(bob), message="only the kept one", random_id=2))
            assert "only the kept one" in texts(await next_update(kept, lambda u: "only the kept one" in texts(u)))
            with anyio.move_on_after(2):  # it would have come with the kept device's, long before this
                got = await next_update(lost, lambda u: "only the kept one" in texts(u))
                raise AssertionError(f"a revoked device was pushed to: {got}")

    anyio.run(main)
