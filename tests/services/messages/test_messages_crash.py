"""A real message-service process dies between the sender's commit and the recipient's (fault injection:
MTLAB_MESSAGES_CRASH_AFTER_SENDS), is started again, and its outbox sweeper delivers the message exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import anyio
import asyncpg
import pytest

from mtproto.tl import api
from mtproto.tl.runtime import Reader
from services.common.rpc import RpcClient, ServiceUnavailable, context
from tests.helpers.messages import MessageLab, messages_process

F = api.functions.messages


def test_a_crash_between_the_two_commits_loses_and_duplicates_nothing(tmp_path: Path, database: str,
                                                                       redis_url: str) -> None:
    async def users() -> tuple[tuple[int, int], tuple[int, int]]:
        async with MessageLab(database) as lab:  # makes the users and the shard layout the process will find
            alice, bob = await lab.user("Alice"), await lab.user("Bob")
            return (alice.id, alice.access_hash), (bob.id, bob.access_hash)

    (alice, _), (bob, bob_hash) = asyncio.run(users())
    proc = messages_process(tmp_path, database, redis_url, MTLAB_MESSAGES_OUTBOX_INTERVAL="0.2")
    send = F.SendMessage(peer=api.types.InputPeerUser(user_id=bob, access_hash=bob_hash), message="through a crash",
                         random_id=4242)

    async def call(user: int, query: object) -> object:
        async with RpcClient("messages", "127.0.0.1", proc.rpc_port) as client:
            with anyio.fail_after(20):
                await client.wait_connected()
                return Reader(await client.call(query.to_bytes(), context(user_id=user))).read_object()  # type: ignore[attr-defined]

    proc.start(MTLAB_MESSAGES_CRASH_AFTER_SENDS="1")
    with pytest.raises(ServiceUnavailable):  # the answer never comes: the process is gone
        anyio.run(call, alice, send)
    assert proc.wait() == 70

    async def boxes() -> dict[int, list[tuple[int, str, bool]]]:
        out: dict[int, list[tuple[int, str, bool]]] = {alice: [], bob: []}
        for index in (0, 1):
            con = await asyncpg.connect(f"{database}_shard_{index}")
            try:
                for r in await con.fetch("SELECT owner_id, id, message, out FROM messages ORDER BY owner_id, id"):
                    out[r["owner_id"]].append((r["id"], r["message"], r["out"]))
            finally:
                await con.close()
        return out

    after_crash = asyncio.run(boxes())
    assert after_crash == {alice: [(1, "through a crash", True)], bob: []}  # the sender's copy only

    proc.start()  # no fault now; its sweeper finds the outbox row the crash left
    try:
        deadline = time.monotonic() + 30
        while asyncio.run(boxes())[bob] == [] and time.monotonic() < deadline:
            time.sleep(0.1)
        again = anyio.run(call, alice, send)  # the client's retry of the same random_id: answered, not resent
        assert isinstance(again, api.types.UpdateShortSentMessage) and again.id == 1
        time.sleep(1)  # a few more sweeps: nothing may be applied twice
        assert asyncio.run(boxes()) == {alice: [(1, "through a crash", True)], bob: [(1, "through a crash", False)]}
        state = anyio.run(call, bob, api.functions.updates.GetState())
        assert isinstance(state, api.types.updates.State) and state.pts == 1
    finally:
        proc.stop()
