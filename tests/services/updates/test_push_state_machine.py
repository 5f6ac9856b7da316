"""A hypothesis state machine over a whole stack (`mtlab up --detach`, real processes): Alice sends to Bob, whose
three devices (SDK clients reading ``Client.ordered_updates``, each behind a TCP proxy the machine can cut) come
and go, while the updates service is killed, Redis restarted and the gateway killed. The model is the list of
messages sent; Bob's devices must each show exactly that list, in order, with nothing twice:

- at every step, what a device has shown is a prefix of what was sent (no gap filled out of order, no duplicate);
- at the end, with every device back, each has shown all of it (pushes, getDifference after a gap, a reconnect
  or a new session: whatever the failures made necessary).

Each step drives real processes, so the examples are few and short; a failure is shrunk to a short story.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mtlab import servers
from mtlab.client import Client, ClientConfig, ConnectionLost, RpcError, Update, account
from mtproto.tl import api
from tests.helpers.auth import fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.proxy import Proxy
from tests.helpers.stack import Stack, kill_and_wait, running_stack

DEVICES = 3
RECONNECT: dict[str, Any] = {"reconnect": True, "reconnect_attempts": 100_000, "reconnect_delay": 0.05,
                             "reconnect_max_delay": 0.3, "ping_interval": None}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(MTLAB_UPDATES_DIFFERENCE_LIMIT="4") as s:  # catching up takes slices
        yield s




class Device:
    def __init__(self, client: Client, proxy: Proxy) -> None:
        self.client = client
        self.proxy = proxy
        self.shown: list[str] = []
        self.cut = False

    async def read(self) -> None:
        async for event in self.client.ordered_updates():
            if isinstance(event, Update) and isinstance(event.update, api.types.UpdateNewMessage) \
                    and isinstance(event.update.message, api.types.Message):
                self.shown.append(event.update.message.message)


class World:
    """Alice, Bob's devices and the tasks reading them, alive in the portal's event loop."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.sent: list[str] = []
        self.devices: list[Device] = []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[World]:
        pem = public_pem(self.stack)
        (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()
        proxies = [Proxy("127.0.0.1", self.stack.port) for _ in range(DEVICES)]
        try:
            async with contextlib.AsyncExitStack() as exits:
                self.alice = await exits.enter_async_context(Client(ClientConfig(
                    server_keys=pem, port=self.stack.port, **RECONNECT)))
                await account.sign_in_or_up(self.alice.invoke, alice_phone, alice_code, first_name="Alice")
                tg = await exits.enter_async_context(anyio.create_task_group())
                for proxy in proxies:
                    client = await exits.enter_async_context(Client(ClientConfig(
                        server_keys=pem, port=proxy.port, **RECONNECT)))
                    self.bob = await account.sign_in_or_up(client.invoke, bob_phone, bob_code, first_name="Bob")
                    await client.start_updates()
                    device = Device(client, proxy)
                    self.devices.append(device)
                    tg.start_soon(device.read)
                yield self
                tg.cancel_scope.cancel()
        finally:
            for proxy in proxies:
                proxy.cut()

    async def send(self, text: str) -> None:
        self.sent.append(text)  # first: a push may overtake the answer
        peer = api.types.InputPeerUser(user_id=self.bob.id, access_hash=self.bob.access_hash or 0)
        query = api.functions.messages.SendMessage(peer=peer, message=text, random_id=len(self.sent))
        with anyio.fail_after(90):
            while True:  # through kills: sent again with the same random_id, which the server answers once
                try:
                    await self.alice.invoke(query)
                    return
                except (ConnectionLost, RpcError):
                    await anyio.sleep(0.2)

    async def everyone_has_everything(self) -> None:
        with anyio.fail_after(90):
            while any(d.shown != self.sent for d in self.devices):
                for d in self.devices:
                    assert d.shown == self.sent[:len(d.shown)], (d.shown, self.sent)
                await anyio.sleep(0.05)


class PushMachine(RuleBasedStateMachine):
    stack: Stack

    def __init__(self) -> None:
        super().__init__()
        self.portal_cm = start_blocking_portal()
        self.portal: BlockingPortal = self.portal_cm.__enter__()
        self.world = World(self.stack)
        self.world_cm = self.portal.wrap_async_context_manager(self.world.running())
        self.world_cm.__enter__()

    @initialize()
    def first(self) -> None:
        self.portal.call(self.world.send, "hello")

    @rule(n=st.integers(min_value=1, max_value=4))
    def send(self, n: int) -> None:
        for _ in range(n):
            self.portal.call(self.world.send, f"m{len(self.world.sent)}")

    @rule(i=st.integers(0, DEVICES - 1))
    def disconnect(self, i: int) -> None:
        device = self.world.devices[i]
        if not device.cut:
            device.proxy.cut()
            device.cut = True

    @rule(i=st.integers(0, DEVICES - 1))
    def reconnect(self, i: int) -> None:
        device = self.world.devices[i]
        if device.cut:
            device.proxy.restore()
            device.cut = False

    @precondition(lambda self: self.kills < 2)
    @rule(what=st.sampled_from(["updates", "gateway", "redis"]))
    def kill(self, what: str) -> None:
        self.kills += 1
        if what == "redis":
            [redis] = [s for s in servers.status(self.stack.data_dir) if s.kind == "redis"]
            port = int(redis.dsn.rsplit(":", 1)[1].split("/")[0])
            servers.stop(redis)
            self.portal.call(self.world.send, f"m{len(self.world.sent)} (Redis down)")
            servers.ensure_redis(self.stack.data_dir, port=port)
        else:
            kill_and_wait(self.stack, what)

    kills = 0

    @invariant()
    def nothing_out_of_order_or_twice(self) -> None:
        if not self.world.devices:
            return
        for d in self.world.devices:
            shown = list(d.shown)
            assert shown == self.world.sent[:len(shown)], (shown, self.world.sent)

    def teardown(self) -> None:
        try:
            for i in range(DEVICES):
                self.reconnect(i)
            self.portal.call(self.world.everyone_has_everything)
        finally:
            self.world_cm.__exit__(None, None, None)
            self.portal_cm.__exit__(None, None, None)


def test_every_device_shows_every_message_once_in_order(stack: Stack) -> None:
    PushMachine.stack = stack
    run = PushMachine.TestCase
    run.settings = settings(max_examples=3, stateful_step_count=6, deadline=None,
                            suppress_health_check=list(HealthCheck))
    run().runTest()
