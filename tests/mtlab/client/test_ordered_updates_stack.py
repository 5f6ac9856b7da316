"""The SDK's ordered update stream (``Client.ordered_updates``) against a whole stack (`mtlab up --detach`).

Alice has two devices, Bob one. Alice's first device reaches the gateway through a TCP proxy the test can cut, as a
network drop would. What she misses while it is cut (Bob's messages, her own from her other device, a channel's
posts) must come to her stream exactly once, in order, once the device reconnects: getDifference in slices (the
stack's MTLAB_UPDATES_DIFFERENCE_LIMIT is 3) and getChannelDifference. What comes while she is online comes live,
pushed, with no call of hers. A client restarted from its session file catches up exactly from where its
application stopped reading.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from mtlab.client import Client, ClientConfig, Update, account
from mtproto.tl import api
from tests.helpers.auth import fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.stack import Stack, running_stack

F = api.functions
FAST_RECONNECT: dict[str, Any] = {"reconnect": True, "reconnect_attempts": 200, "reconnect_delay": 0.05,
                                  "reconnect_max_delay": 0.2}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(MTLAB_UPDATES_DIFFERENCE_LIMIT="3") as s:  # catching up takes slices
        yield s


class Proxy:
    """A TCP proxy to the gateway that can be cut (every connection closed, new ones refused) and restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.open = True
        self._streams: set[SocketStream] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._handle)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _handle(self, client: SocketStream) -> None:
        if not self.open:
            await client.aclose()
            return
        async with client, await anyio.connect_tcp("127.0.0.1", self.target) as server:
            self._streams |= {client, server}
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, client, server, tg.cancel_scope)
                    tg.start_soon(self._pump, server, client, tg.cancel_scope)
            finally:
                self._streams -= {client, server}

    @staticmethod
    async def _pump(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for data in source:
                await sink.send(data)
        scope.cancel()

    async def cut(self) -> None:
        self.open = False
        for stream in list(self._streams):
            await stream.aclose()


class Stream:
    """Reads a client's ordered stream in the background; ``texts`` are the messages it got, in order."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[Any] = []
        self._changed = anyio.Event()

    async def read(self) -> None:
        async for event in self.client.ordered_updates():
            self.events.append(event)
            self._changed.set()
            self._changed = anyio.Event()

    def texts(self, kind: type = api.types.UpdateNewMessage) -> list[str]:
        return [e.update.message.message for e in self.events
                if isinstance(e, Update) and isinstance(e.update, kind) and isinstance(e.update.message,
                                                                                     api.types.Message)]

    async def until(self, done: Callable[[], bool], timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while not done():
                await self._changed.wait()


def config(stack: Stack, port: int | None = None, **extra: Any) -> ClientConfig:
    return ClientConfig(server_keys=public_pem(stack), port=port or stack.port, ping_interval=None, **extra)


def peer(user: api.types.User) -> api.types.InputPeerUser:
    return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash or 0)


def send(text: str, to: api.types.User) -> F.messages.SendMessage:
    return F.messages.SendMessage(peer=peer(to), message=text, random_id=abs(hash(text)) + 1)


def test_a_device_away_gets_what_it_missed_once_and_in_order(stack: Stack) -> None:
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()

    async def main() -> None:
        async with Proxy(stack.port).running() as proxy, \
                Client(config(stack, proxy.port, **FAST_RECONNECT)) as a1, Client(config(stack)) as a2, \
                Client(config(stack)) as b, anyio.create_task_group() as tg:
            await account.sign_in_or_up(a1.invoke, alice_phone, alice_code, first_name="Alice")
            alice = await account.sign_in_or_up(a2.invoke, alice_phone, alice_code, first_name="Alice")
            bob = await account.sign_in_or_up(b.invoke, bob_phone, bob_code, first_name="Bob")
            created = await b.invoke(F.channels.CreateChannel(broadcast=True, title="News", about=""))
            [channel] = created.chats
            channel_peer = api.types.InputPeerChannel(channel_id=channel.id, access_hash=channel.access_hash)
            await a1.invoke(F.channels.JoinChannel(channel=api.types.InputChannel(
                channel_id=channel.id, access_hash=channel.access_hash)))
            await a1.start_updates()
            stream = Stream(a1)
            tg.start_soon(stream.read)

            # Online: pushed, no call of a1's brings it.
            calls = a1.stats.rpc_calls
            await b.invoke(send("live 1", alice))
            await b.invoke(F.messages.SendMessage(peer=channel_peer, message="post 0", random_id=900))
            await stream.until(lambda: stream.texts() == ["live 1"]
                               and stream.texts(api.types.UpdateNewChannelMessage) == ["post 0"])
            assert a1.stats.rpc_calls == calls and a1.stats.differences == 0

            # Away: Bob writes, Alice writes from her other device, the channel posts.
            await proxy.cut()
            with anyio.fail_after(10):
                while a1.connected:
                    await anyio.sleep(0.01)
            missed = []
            for i in range(8):
                text = f"away {i}"
                await (b.invoke(send(text, alice)) if i % 3 else a2.invoke(send(text, bob)))
                missed.append(text)
            for i in range(1, 5):
                await b.invoke(F.messages.SendMessage(peer=channel_peer, message=f"post {i}", random_id=900 + i))
            differences = a1.stats.differences

            proxy.open = True
            await stream.until(lambda: len(stream.texts()) >= 1 + len(missed)
                               and len(stream.texts(api.types.UpdateNewChannelMessage)) >= 5)
            await b.invoke(send("after", alice))  # anything late (a duplicate) comes before this one
            await stream.until(lambda: "after" in stream.texts())
            assert stream.texts() == ["live 1", *missed, "after"]
            assert stream.texts(api.types.UpdateNewChannelMessage) == [f"post {i}" for i in range(5)]
            outgoing = [e.update.message.message for e in stream.events
                        if isinstance(e, Update) and isinstance(e.update, api.types.UpdateNewMessage)
                        and e.update.message.out]
            assert outgoing == [t for i, t in enumerate(missed) if i % 3 == 0]  # from her other device
            # 8 updates with at most 3 a difference: slices; 4 posts with at most 3: two channel differences.
            assert a1.stats.differences - differences >= 3 + 2
            assert a1.stats.reconnects >= 1
            tg.cancel_scope.cancel()

    anyio.run(main)


def test_a_restarted_client_catches_up_from_its_session_file(stack: Stack, tmp_path: Path) -> None:
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()
    session = tmp_path / "alice.session"

    async def main() -> None:
        async with Client(config(stack)) as b:
            await account.sign_in_or_up(b.invoke, bob_phone, bob_code, first_name="Bob")
            async with Client(config(stack, session_file=session)) as a, anyio.create_task_group() as tg:
                alice = await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
                # The state first: a message committed before getState is history, not an update (CI caught
                # the race when the stream started it lazily after Bob's send)
                await a.start_updates()
                stream = Stream(a)
                tg.start_soon(stream.read)
                await b.invoke(send("before", alice))
                await stream.until(lambda: stream.texts() == ["before"])
                tg.cancel_scope.cancel()
            for i in range(4):
                await b.invoke(send(f"while closed {i}", alice))
            async with Client(config(stack, session_file=session)) as a, anyio.create_task_group() as tg:
                await a.start_updates()
                assert a.stats.differences >= 1  # from the saved state, not a fresh getState
                stream = Stream(a)
                tg.start_soon(stream.read)
                await b.invoke(send("after", alice))
                await stream.until(lambda: "after" in stream.texts())
                assert stream.texts() == [f"while closed {i}" for i in range(4)] + ["after"]
                tg.cancel_scope.cancel()

    anyio.run(main)
