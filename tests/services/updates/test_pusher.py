"""The updates service's pusher in-process, on real Postgres (two shard databases) with the real message
handlers writing the logs: what it pushes, in which shape, to which gateway, and what it forgets.

Notes are handed to ``Pusher.note`` as the Redis subscription would (one test goes through a real Redis), and a
gateway is the ``push.attach`` stream itself, read item by item."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import redis.asyncio as aioredis

from mtproto.tl import api
from mtproto.tl.internal.functions import push as push_fn
from mtproto.tl.internal.types import push
from mtproto.tl.runtime import Reader
from services.common.rpc import context
from services.updates.push import Pusher
from tests.helpers.messages import MessageLab, User

F, CH = api.functions.messages, api.functions.channels


class Gateway:
    """One attached gateway: the stream the pusher writes, read as the gateway would (by a task of its own, so
    that waiting for an item with a timeout never cancels the stream itself)."""

    def __init__(self, pusher: Pusher, gateway_id: int) -> None:
        self.pusher = pusher
        self.gateway_id = gateway_id
        self.items: AsyncGenerator[bytes, None] = pusher.attach(context(), push_fn.Attach(
            gateway_id=gateway_id).to_bytes())
        self._send, self._received = anyio.create_memory_object_stream[bytes](1000)
        self._scope = anyio.CancelScope()
        self.closed = anyio.Event()

    async def attach(self, tg: anyio.abc.TaskGroup) -> None:
        assert isinstance(Reader(await self.items.__anext__()).read_object(), push.Ok)
        tg.start_soon(self._read)

    async def _read(self) -> None:
        with self._scope:
            async with contextlib.aclosing(self.items):
                async for item in self.items:
                    await self._send.send(item)
        self.closed.set()

    async def close(self) -> None:
        """The stream ends, as when the gateway dies or its connection breaks."""
        self._scope.cancel()
        await self.closed.wait()

    def online(self, *users: User, pts: int = 0) -> None:
        self.pusher.online(self.gateway_id, [u.id for u in users], [pts] * len(users))

    async def next(self) -> push.Deliver:
        with anyio.fail_after(10):
            item = Reader(await self._received.receive()).read_object()
        assert isinstance(item, push.Deliver)
        return item

    async def nothing(self) -> None:
        with anyio.move_on_after(0.3):
            item = await self._received.receive()
            raise AssertionError(f"unexpected push: {Reader(item).read_object()}")


def updates_of(d: push.Deliver) -> Any:
    return Reader(d.updates).read_object()


def logged(user: User) -> tuple[str, bytes]:
    return f"mtlab:updates:{user.id}", push.Logged(pts=0).to_bytes()


Body = Callable[[MessageLab, Pusher, anyio.abc.TaskGroup], Awaitable[None]]


def run(main_dsn: str, body: Body, **pusher: Any) -> None:
    async def go() -> None:
        async with MessageLab(main_dsn) as lab, anyio.create_task_group() as tg:
            p = Pusher(lab.shards, lab.main, **pusher)
            tg.start_soon(p.run, 2)
            await body(lab, p, tg)
            tg.cancel_scope.cancel()

    asyncio.run(go())


def test_shapes_batches_and_continuation(database: str) -> None:
    async def body(lab: MessageLab, pusher: Pusher, tg: anyio.abc.TaskGroup) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        g = Gateway(pusher, 1)
        await g.attach(tg)
        g.online(bob)
        await g.nothing()  # online with nothing known: the current pts is read, the past is not pushed

        await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message="one", random_id=1))
        pusher.note(*logged(bob))
        first = await g.next()
        short = updates_of(first)
        assert isinstance(short, api.types.UpdateShortMessage)
        assert (first.user_ids, first.pts, short.message, short.user_id, short.pts) == ([bob.id], 1, "one",
                                                                                        alice.id, 1)

        for i in range(4):  # four commits, one note: one read, one updatesCombined (at most 3 rows a round)
            await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message=f"m{i}", random_id=10 + i))
        pusher.note(*logged(bob))
        combined, rest = await g.next(), await g.next()
        c, r = updates_of(combined), updates_of(rest)
        assert isinstance(c, api.types.UpdatesCombined) and (c.seq_start, c.seq) == (0, 0)
        assert [u.pts for u in c.updates] == [2, 3, 4] and combined.pts == 4
        assert [u.id for u in c.users] == [alice.id]  # the sender; bob knows himself
        assert isinstance(r, api.types.UpdateShortMessage) and (r.pts, r.message) == (5, "m3")
        await g.nothing()

        # The alice side: her own log is not pushed while she has no registration.
        pusher.note(*logged(alice))
        await g.nothing()

    run(database, body, rows_per_user=3)


def test_a_registration_with_a_pts_or_a_hint_pushes_what_came_since(database: str) -> None:
    async def body(lab: MessageLab, pusher: Pusher, tg: anyio.abc.TaskGroup) -> None:
        alice, bob, carol = await lab.user("Alice"), await lab.user("Bob"), await lab.user("Carol")
        for i in range(3):
            await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message=f"b{i}", random_id=i + 1))
            await lab.call(alice, F.SendMessage(peer=lab.peer(carol), message=f"c{i}", random_id=i + 11))
        g = Gateway(pusher, 1)
        await g.attach(tg)
        g.online(bob, pts=1)  # a gateway that delivered pts 1 before this service restarted
        got = updates_of(await g.next())
        assert [u.message.message for u in got.updates] == ["b1", "b2"]

        pusher.client_at(carol.id, 2)  # getState told carol's new session pts 2, before its registration came
        g.online(carol)
        got = updates_of(await g.next())
        assert isinstance(got, api.types.UpdateShortMessage) and (got.message, got.pts) == ("c2", 3)

    run(database, body)


def test_a_channel_post_is_one_frame_per_gateway_with_its_online_members(database: str) -> None:
    async def body(lab: MessageLab, pusher: Pusher, tg: anyio.abc.TaskGroup) -> None:
        owner, bob, carol, dave = [await lab.user(n) for n in ("Owner", "Bob", "Carol", "Dave")]
        made = await lab.call(owner, CH.CreateChannel(broadcast=True, title="News", about=""))
        peer = lab.channel(made)
        for u in (bob, carol, dave):
            await lab.call(u, CH.JoinChannel(channel=api.types.InputChannel(channel_id=peer.channel_id,
                                                                            access_hash=peer.access_hash)))
        g1, g2 = Gateway(pusher, 1), Gateway(pusher, 2)
        await g1.attach(tg)
        await g2.attach(tg)
        g1.online(bob, owner)
        g2.online(carol)  # dave is offline
        sent = await lab.call(owner, F.SendMessage(peer=peer, message="breaking", random_id=1))
        pts = next(u.pts for u in sent.updates if isinstance(u, api.types.UpdateNewChannelMessage))
        pusher.note(f"mtlab:channel:{peer.channel_id}", push.Logged(pts=pts).to_bytes())
        for g, members in ((g1, {bob.id, owner.id}), (g2, {carol.id})):
            d = await g.next()
            assert set(d.user_ids) == members and d.pts is None
            post = updates_of(d)
            assert [type(u).__name__ for u in post.updates] == ["UpdateNewChannelMessage"]
            assert post.updates[0].message.message == "breaking" and [c.id for c in post.chats] == [peer.channel_id]
        pusher.note(f"mtlab:channel:{peer.channel_id}", push.Logged(pts=pts).to_bytes())  # the same note again
        await g1.nothing()
        await g2.nothing()

    run(database, body)


def test_a_gateway_that_goes_away_leaves_nothing_behind(database: str) -> None:
    async def body(lab: MessageLab, pusher: Pusher, tg: anyio.abc.TaskGroup) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        g1, g2 = Gateway(pusher, 1), Gateway(pusher, 2)
        await g1.attach(tg)
        await g2.attach(tg)
        g1.online(alice, bob)
        g2.online(bob)
        await g1.close()
        assert set(pusher.registry.online) == {bob.id} and list(pusher.registry.gateways) == [2]
        assert set(pusher.pts) == {bob.id}  # alice is nobody's any more
        pusher.offline(2, [bob.id])
        assert pusher.registry.online == {} and pusher.pts == {}

    run(database, body)


def test_direct_updates_and_a_real_redis_subscription(database: str, redis_url: str) -> None:
    async def body(lab: MessageLab, pusher: Pusher, tg: anyio.abc.TaskGroup) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        ready = anyio.Event()
        async with anyio.create_task_group() as inner:
            inner.start_soon(lambda: pusher.listen(redis_url, ready=ready))
            await ready.wait()
            g = Gateway(pusher, 1)
            await g.attach(tg)
            g.online(bob)
            await g.nothing()
            client = aioredis.Redis.from_url(redis_url)
            try:
                typing = api.types.UpdateUserTyping(user_id=alice.id, action=api.types.SendMessageTypingAction())
                await client.publish(f"mtlab:updates:{bob.id}", push.Direct(auth_key_id=42,
                                                                             update=typing.to_bytes()).to_bytes())
                d = await g.next()
                assert d.auth_key_id == 42 and updates_of(d).update == typing  # only that device's sessions

                await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message="via redis", random_id=1))
                await client.publish(f"mtlab:updates:{bob.id}", push.Logged(pts=1).to_bytes())
                assert updates_of(await g.next()).message == "via redis"
                await client.publish(f"mtlab:updates:{bob.id}", b"not TL at all")  # counted, ignored
                await g.nothing()
            finally:
                await client.aclose()
            inner.cancel_scope.cancel()

    run(database, body)
