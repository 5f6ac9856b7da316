"""updates.getDifference and getChannelDifference from the logs the message service writes: a client that was away
catches up exactly, in slices when it is far behind, and learns nothing twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mtproto.tl import api
from mtproto.tl.runtime import Reader
from services.common.config import UpdatesConfig
from services.common.rpc import RpcError, context
from services.common.service import rpc_handler
from services.updates.difference import METHODS, Updates
from tests.helpers.messages import MessageLab, User

F, U, CH = api.functions.messages, api.functions.updates, api.functions.channels
log = logging.getLogger("tests.updates")


class UpdatesLab:
    def __init__(self, lab: MessageLab, **config: Any) -> None:
        self.deps = Updates(UpdatesConfig(**config), lab.shards, lab.main)
        self.handlers = {cls.CONSTRUCTOR_ID: rpc_handler("updates_test", self.deps, cls, fn, log)
                         for cls, fn in METHODS.items()}

    async def call(self, user: User, request: Any) -> Any:
        data = await self.handlers[request.CONSTRUCTOR_ID](context(user_id=user.id), request.to_bytes())
        return request.read_result(Reader(data))

    async def difference(self, user: User, pts: int, limit: int | None = None) -> Any:
        return await self.call(user, U.GetDifference(pts=pts, pts_total_limit=limit, date=0, qts=0))


def run(main_dsn: str, body: Callable[[MessageLab, UpdatesLab], Awaitable[Any]], **config: Any) -> Any:
    async def go() -> Any:
        async with MessageLab(main_dsn) as lab:
            return await body(lab, UpdatesLab(lab, **config))

    return asyncio.run(go())


def test_a_device_that_was_away_catches_up_exactly(database: str) -> None:
    async def body(lab: MessageLab, updates: UpdatesLab) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        assert isinstance(await updates.difference(bob, 0), api.types.updates.DifferenceEmpty)
        for i in range(5):
            await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message=f"m{i}", random_id=i + 1))
        await lab.call(alice, F.EditMessage(peer=lab.peer(bob), id=2, message="m1, edited"))
        await lab.call(bob, F.ReadHistory(peer=lab.peer(alice), max_id=0))

        state = await updates.call(bob, U.GetState())
        assert (state.pts, state.unread_count) == (7, 0)  # 5 messages, 1 edit, 1 read
        whole = await updates.difference(bob, 0)
        assert isinstance(whole, api.types.updates.Difference)
        assert [m.message for m in whole.new_messages] == ["m0", "m1", "m2", "m3", "m4"]  # as they were sent
        assert [type(u).__name__ for u in whole.other_updates] == ["UpdateEditMessage", "UpdateReadHistoryInbox"]
        assert whole.state.pts == 7 and {u.id for u in whole.users} == {alice.id, bob.id}

        first = await updates.difference(bob, 0, limit=3)
        assert isinstance(first, api.types.updates.DifferenceSlice) and first.intermediate_state.pts == 3
        rest = await updates.difference(bob, first.intermediate_state.pts)
        assert isinstance(rest, api.types.updates.Difference)
        assert [m.message for m in first.new_messages + rest.new_messages] == ["m0", "m1", "m2", "m3", "m4"]
        assert isinstance(await updates.difference(bob, 7), api.types.updates.DifferenceEmpty)
        assert isinstance(await updates.difference(bob, 99), api.types.updates.DifferenceTooLong)

        alice_view = await updates.difference(alice, 0)
        assert [m.out for m in alice_view.new_messages] == [True] * 5  # her other devices learn her sends

    run(database, body)


def test_far_behind_is_too_long(database: str) -> None:
    async def body(lab: MessageLab, updates: UpdatesLab) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        for i in range(4):
            await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message=f"m{i}", random_id=i + 1))
        assert await updates.difference(bob, 0) == api.types.updates.DifferenceTooLong(pts=4)
        assert isinstance(await updates.difference(bob, 1), api.types.updates.Difference)

    run(database, body, too_long=3)


def test_a_subscriber_reads_the_channel_log(database: str) -> None:
    async def body(lab: MessageLab, updates: UpdatesLab) -> None:
        owner, sub, outsider = await lab.user("Owner"), await lab.user("Sub"), await lab.user("Outsider")
        peer = lab.channel(await lab.call(owner, CH.CreateChannel(broadcast=True, title="News", about="")))
        channel = api.types.InputChannel(channel_id=peer.channel_id, access_hash=peer.access_hash)
        await lab.call(sub, CH.JoinChannel(channel=channel))
        for i in range(3):
            await lab.call(owner, F.SendMessage(peer=peer, message=f"post {i}", random_id=i + 1))
        await lab.call(owner, CH.DeleteMessages(channel=channel, id=[3]))

        def ask(pts: int, limit: int = 100) -> Any:
            return U.GetChannelDifference(channel=channel, filter=api.types.ChannelMessagesFilterEmpty(), pts=pts,
                                          limit=limit)

        diff = await updates.call(sub, ask(1))
        assert isinstance(diff, api.types.updates.ChannelDifference) and diff.final and diff.pts == 5
        assert [m.message for m in diff.new_messages] == ["post 0", "post 1", "post 2"]
        assert [type(u).__name__ for u in diff.other_updates] == ["UpdateDeleteChannelMessages"]
        assert [c.id for c in diff.chats] == [peer.channel_id]
        part = await updates.call(sub, ask(1, limit=2))
        assert (part.final, part.pts) == (False, 3)
        assert isinstance(await updates.call(sub, ask(5)), api.types.updates.ChannelDifferenceEmpty)
        with pytest.raises(RpcError, match="CHANNEL_PRIVATE"):
            await updates.call(outsider, ask(0))
        # The user's own log learned only that they joined: no row per post.
        bob_diff = await updates.difference(sub, 0)
        assert [type(u).__name__ for u in bob_diff.other_updates] == ["UpdateChannel"]
        assert bob_diff.new_messages == []

    run(database, body)
