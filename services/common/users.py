"""Users as other services see them: rows of the main database's ``users`` table, rendered as TL ``user`` objects.

The auth service owns the table (it creates users at sign-up); the message service only reads it, to name the
people in the messages and dialogs it returns and to check the ``access_hash`` a client gives with a user id:
knowing the hash is what proves the client was shown that user (core.telegram.org/api/peers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtproto.tl import api
from services.common.db import Connection


@dataclass(frozen=True)
class UserRow:
    id: int
    access_hash: int
    first_name: str
    last_name: str
    phone: str
    username: str | None = None


_SELECT = ("SELECT u.id, u.access_hash, u.first_name, u.last_name, coalesce(p.phone, '') AS phone, u.username "
           "FROM users u LEFT JOIN phones p ON p.user_id = u.id ")


def _row(r: Any) -> UserRow:
    return UserRow(r["id"], r["access_hash"], r["first_name"], r["last_name"], r["phone"], r["username"])


async def by_id(con: Connection, user_ids: list[int] | set[int]) -> dict[int, UserRow]:
    rows = await con.fetch(_SELECT + "WHERE u.id = ANY($1::bigint[])", sorted(set(user_ids)))
    return {r["id"]: _row(r) for r in rows}


async def by_phone(con: Connection, phones: list[str]) -> dict[str, UserRow]:
    rows = await con.fetch(_SELECT + "WHERE p.phone = ANY($1::text[])", phones)
    return {r["phone"]: _row(r) for r in rows}


async def by_username(con: Connection, username: str) -> UserRow | None:
    row = await con.fetchrow(_SELECT + "WHERE lower(u.username) = lower($1)", username)
    return _row(row) if row is not None else None


async def search(con: Connection, text: str, limit: int) -> list[UserRow]:
    """Users whose username starts with ``text``, or whose name contains it (case-insensitive)."""
    like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await con.fetch(_SELECT + "WHERE lower(u.username) LIKE lower($1) || '%' OR "
                           "(u.first_name || ' ' || u.last_name) ILIKE '%' || $1 || '%' ORDER BY u.id LIMIT $2",
                           like, limit)
    return [_row(r) for r in rows]


def render(row: UserRow, *, viewer: int, contact: bool = False,
           status: api.types.TypeUserStatus | None = None) -> api.types.User:
    """The ``user`` object ``viewer`` is shown: the phone number only to its owner and to users who have it as a
    contact (they knew the number already). ``status``: from ``presence.statuses``; without it, others show as
    seen recently."""
    me = row.id == viewer
    return api.types.User(id=row.id, self=me, contact=contact, access_hash=row.access_hash,
                          first_name=row.first_name, last_name=row.last_name or None, username=row.username,
                          phone=row.phone if me or contact else None,
                          status=status if status is not None else None if me else api.types.UserStatusRecently())
