"""Live push through faults, on a whole stack (`mtlab up --detach`, real processes, its own Postgres and Redis):
the updates service killed, Redis restarted, a gateway killed. After each, pushes resume, and the devices of the
recipient get every message sent meanwhile, in pts order, without asking getDifference: the gateway registers
its users again with the pts it last delivered, and the updates service reads the logs again when its Redis
subscription comes back."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from mtlab import servers
from mtlab.client import Client, ClientConfig, account
from mtproto.tl import api
from tests.helpers.auth import fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.stack import Stack, kill_and_wait, running_stack, wait_for

F = api.functions.messages


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


class Device:
    """A signed-in SDK client and the private messages pushed to it, by pts."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pushed: list[tuple[int, str]] = []  # (pts, text) of every new message pushed, as it came

    async def collect(self) -> None:
        async for received in self.client.updates():
            u = received.obj
            if isinstance(u, api.types.UpdateShortMessage):
                self.pushed.append((u.pts, u.message))
            for x in getattr(u, "updates", []):
                if isinstance(x, api.types.UpdateNewMessage) and isinstance(x.message, api.types.Message):
                    self.pushed.append((x.pts, x.message.message))

    async def has(self, texts: list[str], timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while [t for _, t in self.pushed] != texts:
                assert len(self.pushed) <= len(texts), self.pushed
                await anyio.sleep(0.05)
        pts = [p for p, _ in self.pushed]
        assert pts == list(range(1, len(texts) + 1)), self.pushed  # in order, no gap, nothing twice


def metric(stack: Stack, service: str, name: str) -> float:
    url = stack.endpoint(service)["metrics_url"]
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found is not None, name
    return float(found.group(1))




def test_pushes_survive_the_updates_service_redis_and_a_gateway(stack: Stack) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()
    sent: list[str] = []

    async def main() -> None:
        async with Client(config) as a, Client(config) as b1, Client(config) as b2, anyio.create_task_group() as tg:
            await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
            bob = await account.sign_in_or_up(b1.invoke, bob_phone, bob_code, first_name="Bob")
            await account.sign_in_or_up(b2.invoke, bob_phone, bob_code, first_name="Bob")
            bob_peer = api.types.InputPeerUser(user_id=bob.id, access_hash=bob.access_hash or 0)
            devices = [Device(b1), Device(b2)]
            for d in devices:
                await d.client.invoke(api.functions.updates.GetState())  # subscribe
                tg.start_soon(d.collect)

            async def send(text: str) -> None:
                await a.invoke(F.SendMessage(peer=bob_peer, message=text, random_id=len(sent) + 1))
                sent.append(text)

            async def all_have() -> None:
                for d in devices:
                    await d.has(sent)

            await send("before anything")
            await all_have()

            # 1. The updates service dies; messages are sent while it is away; it comes back.
            await anyio.to_thread.run_sync(kill_and_wait, stack, "updates")
            await send("while updates was down")  # committed and noted on Redis; nobody listens
            await send("still down, or just back")
            await all_have()  # pushed once the gateway registered bob again with the pts it last delivered
            assert metric(stack, "updates", "mtlab_updates_gateways") == 1

            # 2. Redis restarts: notes published while it was down are lost; the updates service resubscribes and
            #    reads every online user's log again.
            [redis] = [s for s in servers.status(stack.data_dir) if s.kind == "redis"]
            port = int(redis.dsn.rsplit(":", 1)[1].split("/")[0])
            await anyio.to_thread.run_sync(servers.stop, redis)
            await send("while Redis was down")
            await anyio.to_thread.run_sync(lambda: servers.ensure_redis(stack.data_dir, port=port))
            await all_have()
            await send("after Redis came back")
            await all_have()

            tg.cancel_scope.cancel()

    anyio.run(main)

    # 3. A gateway dies: the updates service forgets its registrations (no stale ones: one gateway attached, with
    #    nobody online), and the clients of the new process get pushes after their first call.
    kill_and_wait(stack, "gateway")
    wait_for("the new gateway to attach", lambda: metric(stack, "updates", "mtlab_updates_gateways") == 1)
    assert metric(stack, "updates", "mtlab_updates_online_users") == 0

    async def after_gateway() -> None:
        async with Client(config) as a, Client(config) as b:
            await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
            bob = await account.sign_in_or_up(b.invoke, bob_phone, bob_code, first_name="Bob")
            state = await b.invoke(api.functions.updates.GetState())
            assert state.pts == len(sent)
            await a.invoke(F.SendMessage(peer=api.types.InputPeerUser(user_id=bob.id, access_hash=bob.access_hash or 0),
                                         message="after the gateway", random_id=99))
            with anyio.fail_after(30):
                async for received in b.updates():
                    u: Any = received.obj
                    if isinstance(u, api.types.UpdateShortMessage):
                        assert (u.message, u.pts) == ("after the gateway", len(sent) + 1)
                        break

    anyio.run(after_gateway)
