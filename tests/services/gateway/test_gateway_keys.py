"""AuthServiceKeyStore's cache against a real internal-RPC server, on trio (the gateway's loop) and asyncio.

The server is a small stand-in for the auth service that speaks keys.get / keys.watch over real TCP, so each test
can decide when a record changes, when a lookup answers, and when the stream breaks: the races the cache must
survive. The real auth service behind a real gateway is tested in tests/services/auth/.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from mtproto.crypto import kdf
from mtproto.tl.internal.functions import keys as keys_fn
from mtproto.tl.internal.types import keys
from services.common.rpc import RpcClient, RpcServer
from services.gateway.keys import AuthServiceKeyStore, KeyStoreUnavailable, key_id_int

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FakeAuth:
    """Answers keys.get from ``users`` (key id -> user id), counting lookups; pushes keys.watch items on demand."""

    def __init__(self) -> None:
        self.auth_key = os.urandom(256)
        self.key_id = kdf.auth_key_id(self.auth_key)
        self.user_id: int | None = None
        self.lookups = 0
        self.hold: anyio.Event | None = None  # when set, a lookup waits for it before answering
        self.watchers: list[Any] = []
        self.subscribed = anyio.Event()

    async def get(self, ctx: Any, query: bytes) -> bytes:
        self.lookups += 1
        user_id = self.user_id  # read before waiting: the answer may be stale by the time it arrives
        if self.hold is not None:
            await self.hold.wait()
        return keys.KeyRecord(auth_key_id=key_id_int(self.key_id), auth_key=self.auth_key, handshake_salt=1,
                              created=1, user_id=user_id).to_bytes()

    async def watch(self, ctx: Any, query: bytes) -> AsyncIterator[bytes]:
        send, receive = anyio.create_memory_object_stream[bytes](16)
        self.watchers.append(send)
        yield keys.Resync().to_bytes()
        self.subscribed.set()
        async with receive:
            async for item in receive:
                yield item

    async def change(self, user_id: int | None) -> None:
        self.user_id = user_id
        for w in self.watchers:
            await w.send(keys.Changed(key_ids=[key_id_int(self.key_id)]).to_bytes())

    def server(self) -> RpcServer:
        return RpcServer("fake-auth", {keys_fn.Get.CONSTRUCTOR_ID: self.get},
                         {keys_fn.Watch.CONSTRUCTOR_ID: self.watch})


async def settle(condition: Any) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.005)


async def serve(tg: TaskGroup, fake: FakeAuth, port: int = 0) -> tuple[int, anyio.CancelScope]:
    scope = anyio.CancelScope()

    async def run(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        with scope:
            await fake.server().serve("127.0.0.1", port, task_status=task_status)

    return await tg.start(run), scope


async def test_records_are_cached_only_while_watched_and_dropped_on_change() -> None:
    fake = FakeAuth()
    async with anyio.create_task_group() as tg:
        port, _ = await serve(tg, fake)
        async with RpcClient("auth", "127.0.0.1", port) as client:
            store = AuthServiceKeyStore(client)
            with anyio.fail_after(5):
                await client.wait_connected()
            await store.get(fake.key_id)
            await store.get(fake.key_id)
            assert fake.lookups == 2  # no watch stream yet: nothing may be cached

            tg.start_soon(store.watch)
            await settle(lambda: store.live)
            first = await store.get(fake.key_id)
            again = await store.get(fake.key_id)
            assert (fake.lookups, first.user_id, again.user_id) == (3, None, None)  # the second came from the cache

            await fake.change(7)  # signed in somewhere: the record is dropped, the next get asks again
            await settle(lambda: not store._cache)
            assert (await store.get(fake.key_id)).user_id == 7 and fake.lookups == 4
            tg.cancel_scope.cancel()


async def test_a_lookup_that_raced_an_invalidation_is_not_cached() -> None:
    fake = FakeAuth()
    async with anyio.create_task_group() as tg:
        port, _ = await serve(tg, fake)
        async with RpcClient("auth", "127.0.0.1", port) as client:
            store = AuthServiceKeyStore(client)
            tg.start_soon(store.watch)
            await settle(lambda: store.live)
            fake.hold = anyio.Event()
            results: list[Any] = []

            async def lookup() -> None:
                results.append(await store.get(fake.key_id))

            tg.start_soon(lookup)
            await settle(lambda: fake.lookups == 1)  # the lookup read "not signed in" and is on its way back
            await fake.change(7)  # ...when the key signs in
            await settle(lambda: store.epoch > 1)
            fake.hold.set()
            await settle(lambda: bool(results))
            assert results[0].user_id is None  # the stale answer serves the request it was for...
            fake.hold = None
            assert (await store.get(fake.key_id)).user_id == 7  # ...but was not cached for the next one
            tg.cancel_scope.cancel()


async def test_a_broken_stream_empties_the_cache_and_a_returning_service_is_watched_again() -> None:
    fake = FakeAuth()
    async with anyio.create_task_group() as tg:
        port, scope = await serve(tg, fake)
        async with RpcClient("auth", "127.0.0.1", port, backoff_max=0.1) as client:
            store = AuthServiceKeyStore(client)
            tg.start_soon(store.watch)
            await settle(lambda: store.live)
            await store.get(fake.key_id)
            assert store._cache

            scope.cancel()  # the service goes away (its listener closes; the connection breaks)
            await settle(lambda: not store.live)
            assert not store._cache
            with pytest.raises(KeyStoreUnavailable):
                await store.get(fake.key_id)

            fake2 = FakeAuth()
            fake2.auth_key, fake2.key_id, fake2.user_id = fake.auth_key, fake.key_id, 9
            await serve(tg, fake2, port)  # back, on the same port
            await settle(lambda: store.live and store.subscriptions == 2)
            assert (await store.get(fake.key_id)).user_id == 9
            tg.cancel_scope.cancel()
