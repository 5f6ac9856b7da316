"""`mtlab shards move` while users send through the real message handlers: the logical shard of the senders moves to
the other database mid-conversation, and afterwards every box holds exactly the messages whose send returned,
once each, with gap-free pts, and nothing is left in any outbox."""

from __future__ import annotations

import asyncio
import itertools

from mtproto.tl import api
from services.messages import outbox
from shard_db.move import MoveOptions, move
from tests.helpers.messages import MessageLab, User

F = api.functions.messages


async def _scenario(database: str) -> None:
    async with MessageLab(database) as lab:
        users = [await lab.user(f"user{i}") for i in range(24)]
        moving = lab.shards.for_user(users[0].id)
        movers = [u for u in users if lab.shards.for_user(u.id) == moving]  # their box moves
        others = [u for u in users if lab.shards.map.physical_of(lab.shards.for_user(u.id))
                  != lab.shards.map.physical_of(moving)]
        target = lab.shards.map.physical_of(lab.shards.for_user(others[0].id))
        ok: list[tuple[User, User, str]] = []
        stop = asyncio.Event()
        texts = itertools.count()

        async def talk(sender: User, to: User) -> None:
            while not stop.is_set():
                text = f"m{next(texts)}"
                await lab.call(sender, F.SendMessage(peer=lab.peer(to), message=text, random_id=lab.random_id()))
                ok.append((sender, to, text))

        pairs = [(movers[0], others[0]), (others[1], movers[0]), (movers[-1], movers[0]), (others[2], others[3])]
        writers = [asyncio.create_task(talk(a, b)) for a, b in pairs]
        await asyncio.sleep(0.5)
        report = await move(database, moving, target, options=MoveOptions(batch_rows=50))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*writers)
        assert report.version == 2 and lab.shards.map.physical_of(moving) == target  # the router followed
        assert report.changes > 0  # sends landed on the source during the copy and were replayed
        await outbox.sweep(lab.deps, older_than=0, batch=1000)

        sent_before_after = [text for _, _, text in ok]
        assert len(sent_before_after) > 20
        rows = await lab.shard_rows("SELECT owner_id, message, out FROM messages")
        boxes: dict[tuple[int, bool], list[str]] = {}
        for r in rows:
            boxes.setdefault((r["owner_id"], r["out"]), []).append(r["message"])
        expected: dict[tuple[int, bool], list[str]] = {}
        for sender, to, text in ok:
            expected.setdefault((sender.id, True), []).append(text)
            if to.id != sender.id:
                expected.setdefault((to.id, False), []).append(text)
        assert {k: sorted(v) for k, v in boxes.items()} == {k: sorted(v) for k, v in expected.items()}

        logs = await lab.shard_rows("SELECT owner_id, pts, pts_count FROM update_log ORDER BY owner_id, pts")
        at: dict[int, int] = {}
        for r in logs:
            assert r["pts"] - r["pts_count"] == at.get(r["owner_id"], 0)
            at[r["owner_id"]] = r["pts"]
        assert await lab.shard_rows("SELECT id FROM outbox") == []
        gone = await lab.shard_rows("SELECT count(*) AS n FROM messages WHERE shard = $1", moving)
        assert sum(r["n"] for r in gone) == len([1 for (uid, _), v in boxes.items()
                                                 if lab.shards.for_user(uid) == moving for _ in v])


def test_a_shard_moves_while_its_users_send(database: str) -> None:
    asyncio.run(_scenario(database))
