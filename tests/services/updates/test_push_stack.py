"""Live push on a whole stack (`mtlab up --detach`): a message reaches every online device of its recipient (and
the sender's other devices) as an update, without any polling; a channel post reaches online subscribers."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from mtlab.client import Client, ClientConfig, account
from mtproto.tl import api
from tests.helpers.auth import fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.stack import Stack, new_stack

F = api.functions.messages


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with new_stack() as s:
        done = s.up()
        assert done.returncode == 0, done.stdout + done.stderr
        yield s


def peer(user: api.types.User) -> api.types.InputPeerUser:
    assert user.access_hash is not None
    return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash)


async def next_update(client: Client) -> api.types.TypeUpdates:
    with anyio.fail_after(20):
        async for received in client.updates():
            if isinstance(received.obj, api.types.TypeUpdates):
                return received.obj
    raise AssertionError("the update stream ended")


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
