"""Messages end to end on a whole stack (`mtlab up --detach`: gateway, auth, messages, Postgres with two shard
databases, Redis): the bundled SDK and stock Telethon send to each other and read history and dialogs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from telethon import TelegramClient
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


async def texts(client: Client, other: api.types.User) -> list[str]:
    page = await client.invoke(F.GetHistory(peer=peer(other), offset_id=0, offset_date=0, add_offset=0, limit=100,
                                            max_id=0, min_id=0, hash=0))
    return [m.message for m in page.messages]


def test_sdk_and_telethon_talk_through_the_stack(stack: Stack) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()

    async def sdk_side() -> tuple[api.types.User, api.types.User]:
        with anyio.fail_after(60):
            async with Client(config) as a, Client(config) as b:
                alice = await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
                # Telethon 1.45 cannot sign up: the SDK makes Bob's account
                bob = await account.sign_in_or_up(b.invoke, bob_phone, bob_code, first_name="Bob")
                sent = await a.invoke(F.SendMessage(peer=peer(bob), message="hi bob, from the SDK", random_id=11))
                assert isinstance(sent, api.types.UpdateShortSentMessage) and sent.id == 1
                assert await texts(b, alice) == ["hi bob, from the SDK"]
                return alice, bob

    alice, bob = anyio.run(sdk_side)
    telethon_rsa.add_key(public_pem(stack), old=False)

    async def telethon_side() -> tuple[list[str], list[Any], int]:
        session = MemorySession()
        session.set_dc(2, "127.0.0.1", stack.port)
        client = TelegramClient(session, 1, "lab", receive_updates=False, connection_retries=1, request_retries=1)
        await asyncio.wait_for(client.connect(), 30)
        try:
            await client.send_code_request(bob_phone)
            await client.sign_in(bob_phone, bob_code)
            dialogs = await client.get_dialogs()
            history = [m.message async for m in client.iter_messages(alice.id, limit=10)]
            reply = await client.send_message(alice.id, "hello alice, from Telethon")
            return history, [(d.id, d.message.message, d.unread_count) for d in dialogs], reply.id
        finally:
            await client.disconnect()

    history, dialogs, reply_id = asyncio.run(telethon_side())
    assert history == ["hi bob, from the SDK"]
    assert dialogs == [(alice.id, "hi bob, from the SDK", 1)]
    assert reply_id == 2  # bob's box: alice's message was 1

    async def alice_reads() -> list[str]:
        async with Client(config) as a:
            await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
            return await texts(a, bob)

    assert anyio.run(alice_reads) == ["hello alice, from Telethon", "hi bob, from the SDK"]
