"""Private chats in the message service, on real Postgres with two physical shards (tests/helpers/messages.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mtproto.tl import api
from services.common.rpc import RpcError
from services.messages import outbox, store
from tests.helpers.messages import MessageLab, User

F = api.functions.messages


def run(main_dsn: str, body: Callable[[MessageLab], Awaitable[Any]], **kw: Any) -> Any:
    async def go() -> Any:
        async with MessageLab(main_dsn, **kw) as lab:
            return await body(lab)

    return asyncio.run(go())


async def send(lab: MessageLab, sender: User, to: User, text: str, **kw: Any) -> Any:
    return await lab.call(sender, F.SendMessage(peer=lab.peer(to), message=text, random_id=lab.random_id(), **kw))


async def history(lab: MessageLab, owner: User, peer: User, **kw: Any) -> list[api.types.Message]:
    page = await lab.call(owner, F.GetHistory(peer=lab.peer(peer), offset_id=kw.pop("offset_id", 0), offset_date=0,
                                              add_offset=kw.pop("add_offset", 0), limit=kw.pop("limit", 100),
                                              max_id=kw.pop("max_id", 0), min_id=kw.pop("min_id", 0), hash=0))
    return list(page.messages)


async def _on_different_shards(lab: MessageLab) -> tuple[User, User]:
    alice = await lab.user("Alice")
    while True:
        bob = await lab.user("Bob")
        if lab.shards.map.physical_of(lab.shards.for_user(bob.id)) != lab.shards.map.physical_of(
                lab.shards.for_user(alice.id)):
            return alice, bob


def test_a_message_lands_in_both_boxes_with_their_own_ids_and_pts(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob = await _on_different_shards(lab)
        carol = await lab.user("Carol")
        await send(lab, alice, carol, "warm-up")  # alice's box ids now run ahead of bob's
        sent = await send(lab, alice, bob, "hello bob")
        assert isinstance(sent, api.types.UpdateShortSentMessage)
        assert (sent.out, sent.id, sent.pts, sent.pts_count) == (True, 2, 2, 1)

        [mine] = await history(lab, alice, bob)
        [theirs] = await history(lab, bob, alice)
        assert (mine.id, mine.out, mine.message) == (2, True, "hello bob")
        assert (theirs.id, bool(theirs.out), theirs.message) == (1, False, "hello bob")
        assert theirs.peer_id == api.types.PeerUser(user_id=alice.id)
        assert mine.peer_id == api.types.PeerUser(user_id=bob.id)

        state = await lab.call(bob, api.functions.updates.GetState())
        assert (state.pts, state.unread_count) == (1, 1)
        dialogs = await lab.call(bob, F.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                   limit=10, hash=0))
        assert [(d.peer, d.top_message, d.unread_count) for d in dialogs.dialogs] == [
            (api.types.PeerUser(user_id=alice.id), 1, 1)]
        assert {u.id for u in dialogs.users} == {alice.id, bob.id}

    run(database, body)


def test_resending_a_random_id_answers_the_first_send_again(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob = await _on_different_shards(lab)
        request = F.SendMessage(peer=lab.peer(bob), message="once", random_id=77)
        first = await lab.call(alice, request)
        again = await lab.call(alice, request)
        assert (again.id, again.pts) == (first.id, first.pts)
        assert len(await history(lab, bob, alice)) == 1
        with pytest.raises(RpcError, match="RANDOM_ID_DUPLICATE"):  # one random_id used before, one new
            await lab.call(alice, F.ForwardMessages(from_peer=lab.peer(bob), id=[first.id, first.id],
                                                    random_id=[77, 78], to_peer=lab.peer(bob)))

    run(database, body)


def test_edit_delete_and_read_reach_the_other_box(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob = await _on_different_shards(lab)
        first = await send(lab, alice, bob, "one")
        await send(lab, alice, bob, "two")
        await lab.call(alice, F.EditMessage(peer=lab.peer(bob), id=first.id, message="one, edited"))
        assert [m.message for m in await history(lab, bob, alice)] == ["two", "one, edited"]
        assert (await history(lab, bob, alice))[1].edit_date is not None

        read = await lab.call(bob, F.ReadHistory(peer=lab.peer(alice), max_id=0))
        assert read.pts_count == 1
        dialogs = await lab.call(alice, F.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                     limit=10, hash=0))
        assert dialogs.dialogs[0].read_outbox_max_id == 2  # alice's own id of "two"

        gone = await lab.call(bob, F.DeleteMessages(revoke=True, id=[1]))  # bob's id of "one, edited"
        assert gone.pts_count == 1
        assert [m.message for m in await history(lab, alice, bob)] == ["two"]
        assert [m.message for m in await history(lab, bob, alice)] == ["two"]
        only_mine = await lab.call(alice, F.DeleteMessages(revoke=False, id=[2]))
        assert only_mine.pts_count == 1
        assert await history(lab, alice, bob) == []
        assert [m.message for m in await history(lab, bob, alice)] == ["two"]

        with pytest.raises(RpcError, match="MESSAGE_AUTHOR_REQUIRED"):
            await lab.call(bob, F.EditMessage(peer=lab.peer(alice), id=2, message="not mine"))
        with pytest.raises(RpcError, match="MESSAGE_ID_INVALID"):
            await lab.call(alice, F.EditMessage(peer=lab.peer(bob), id=99, message="none"))

    run(database, body)


def test_errors_are_telegrams(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob = await _on_different_shards(lab)
        with pytest.raises(RpcError, match="PEER_ID_INVALID"):
            await lab.call(alice, F.SendMessage(peer=api.types.InputPeerUser(user_id=bob.id, access_hash=1),
                                                message="guessing", random_id=5))
        with pytest.raises(RpcError, match="MESSAGE_EMPTY"):
            await send(lab, alice, bob, "   ")
        with pytest.raises(RpcError, match="MESSAGE_TOO_LONG"):
            await send(lab, alice, bob, "x" * 4097)
        with pytest.raises(RpcError, match="RANDOM_ID_INVALID"):
            await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message="zero", random_id=0))

    run(database, body)


def test_history_paging_and_search(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob = await _on_different_shards(lab)
        for i in range(1, 31):
            await send(lab, alice, bob, f"message {i}" + (" needle" if i % 10 == 0 else ""))
        page = await lab.call(bob, F.GetHistory(peer=lab.peer(alice), offset_id=0, offset_date=0, add_offset=0,
                                                limit=10, max_id=0, min_id=0, hash=0))
        assert isinstance(page, api.types.messages.MessagesSlice)
        assert page.count == 30
        assert [m.id for m in page.messages] == list(range(30, 20, -1))
        older = await history(lab, bob, alice, offset_id=21, limit=5)
        assert [m.id for m in older] == [20, 19, 18, 17, 16]
        around = await history(lab, bob, alice, offset_id=15, add_offset=-3, limit=6)
        assert [m.id for m in around] == [17, 16, 15, 14, 13, 12]
        bounded = await history(lab, bob, alice, min_id=25, max_id=28)
        assert [m.id for m in bounded] == [27, 26]
        found = await lab.call(bob, F.Search(peer=lab.peer(alice), q="NEEDLE",
                                             filter=api.types.InputMessagesFilterEmpty(), min_date=0, max_date=0,
                                             offset_id=0, add_offset=0, limit=10, max_id=0, min_id=0, hash=0))
        assert [m.message for m in found.messages] == ["message 30 needle", "message 20 needle", "message 10 needle"]

    run(database, body)


def test_a_delivery_applied_twice_changes_the_box_once(database: str) -> None:
    """The crash window: the sender's copy and its outbox row are committed, the delivery is not yet known to be
    done. Applying the row again (the sweeper after a restart) must not duplicate anything."""

    async def body(lab: MessageLab) -> None:
        alice, bob = await _on_different_shards(lab)
        shard = lab.shards.for_user(alice.id)
        lab.deps.config = dataclasses.replace(lab.config, deliver_inline=False)  # "dies" after the commit
        await send(lab, alice, bob, "survives a crash")
        assert await history(lab, bob, alice) == []
        rows = await lab.shards.txn(shard, "test", lambda con: store.pending_outbox(con, shard, alice.id, 10))
        assert [r.kind for r in rows] == ["deliver"]
        assert await outbox.apply(lab.deps, rows[0]) is True
        assert await outbox.apply(lab.deps, rows[0]) is False  # a second process, or a retry after a crash
        assert await outbox.sweep(lab.deps, older_than=0, batch=10) == 1  # deletes it; applies nothing new
        assert [m.message for m in await history(lab, bob, alice)] == ["survives a crash"]
        assert await outbox.sweep(lab.deps, older_than=0, batch=10) == 0
        state = await lab.call(bob, api.functions.updates.GetState())
        assert state.pts == 1

    run(database, body)
