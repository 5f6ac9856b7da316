"""Basic groups as rows: what groups.py writes and what any handler needs to show a group (``chat`` objects)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mtproto.tl import api
from services.common import db


@dataclass(frozen=True)
class ChatRow:
    id: int
    title: str
    creator_id: int
    date: int
    version: int
    last_msg_id: int
    members: tuple[tuple[int, int, int], ...]  # (user_id, inviter_id, date)

    @property
    def member_ids(self) -> list[int]:
        return [m[0] for m in self.members]


async def load(con: db.Connection, shard: int, chat_id: int, *, lock: bool = False) -> ChatRow | None:
    lock_clause = " FOR UPDATE" if lock else ""
    row = await con.fetchrow("SELECT id, title, creator_id, date, version, last_msg_id FROM chats "  # noqa: S608
                             f"WHERE shard = $1 AND id = $2{lock_clause}", shard, chat_id)
    if row is None:
        return None
    members = await con.fetch("SELECT user_id, inviter_id, date FROM chat_members WHERE shard = $1 AND chat_id = $2 "
                              "ORDER BY date, user_id", shard, chat_id)
    return ChatRow(row["id"], row["title"], row["creator_id"], row["date"], row["version"], row["last_msg_id"],
                   tuple((m["user_id"], m["inviter_id"], m["date"]) for m in members))


def render_chat(c: ChatRow, *, viewer: int) -> api.types.TypeChat:
    if viewer not in c.member_ids:
        return api.types.ChatForbidden(id=c.id, title=c.title)
    return api.types.Chat(id=c.id, title=c.title, photo=api.types.ChatPhotoEmpty(), creator=c.creator_id == viewer,
                          participants_count=len(c.members), date=c.date, version=c.version)


def loader(shard: int, chat_id: int) -> Callable[[db.Connection], Awaitable[ChatRow | None]]:
    """``load`` as a transaction body, for ``Shards.txn``."""
    return lambda con: load(con, shard, chat_id)
