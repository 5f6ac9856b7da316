"""Contacts and finding people (core.telegram.org/api/contacts): how a user learns another user's id and access
hash, which every other method needs to name them.

- ``contacts.importContacts``: phone numbers (with the names the caller gives them) become contacts when an
  account has that number; the answer carries those users with their access hashes. Numbers nobody uses are left
  out (Telegram keeps them for later; mtlab does not).
- ``contacts.getContacts``: the list, each marked ``mutual`` when the other user has the caller as a contact too.
- ``contacts.resolveUsername``: a public username (set with ``account.updateUsername``) to its user.
- ``contacts.search``: users whose username starts with, or whose name contains, the query; the caller's
  contacts come first (``my_results``).

Users live in the main database (the auth service owns them); the contact list lives on the owner's shard.
Errors (400): LIMIT_INVALID, USERNAME_INVALID, USERNAME_NOT_OCCUPIED, SEARCH_QUERY_EMPTY.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import TLFunction
from services.common import db, presence, users
from services.common.rpc import RpcError, signed_in
from services.messages.handlers import Messages, Method

#: Telegram's limit on contacts imported per call.
IMPORT_MAX = 1000
SEARCH_MAX = 100
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")
_DECORATION = re.compile(r"[\s()+\-.]")


async def _contact_ids(deps: Messages, me: int) -> set[int]:
    shard = deps.shards.for_user(me)
    rows = await deps.txn(shard, "contacts_list", lambda con: con.fetch(
        "SELECT user_id FROM contacts WHERE shard = $1 AND owner_id = $2", shard, me))
    return {r["user_id"] for r in rows}


async def import_contacts(deps: Messages, ctx: rpc.Context,
                          q: api.functions.contacts.ImportContacts) -> api.types.contacts.ImportedContacts:
    me = signed_in(ctx)
    if len(q.contacts) > IMPORT_MAX:
        raise RpcError(400, "LIMIT_INVALID")
    wanted = [(c, _DECORATION.sub("", c.phone)) for c in q.contacts if isinstance(c, api.types.InputPhoneContact)]
    async with deps.main.acquire() as con:
        found = await users.by_phone(con, [phone for _, phone in wanted])
    matches = [(c, found[phone]) for c, phone in wanted if phone in found and found[phone].id != me]
    shard = deps.shards.for_user(me)

    async def txn(con: db.Connection) -> None:
        for c, row in matches:
            await con.execute(
                "INSERT INTO contacts (shard, owner_id, user_id, first_name, last_name) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (shard, owner_id, user_id) DO UPDATE SET first_name = $4, last_name = $5",
                shard, me, row.id, c.first_name, c.last_name)

    if matches:
        await deps.txn(shard, "contacts_import", txn)
    imported: list[api.types.TypeImportedContact] = [
        api.types.ImportedContact(user_id=row.id, client_id=c.client_id) for c, row in matches]
    shown = {row.id: row for _, row in matches}
    return api.types.contacts.ImportedContacts(
        imported=imported, popular_invites=[], retry_contacts=[],
        users=[users.render(row, viewer=me, contact=True) for row in shown.values()])


def _who_has(shard: int, owners: list[int], user_id: int) -> Callable[[db.Connection], Awaitable[set[int]]]:
    """Which of ``owners`` (all on ``shard``) have ``user_id`` as a contact."""

    async def txn(con: db.Connection) -> set[int]:
        rows = await con.fetch("SELECT owner_id FROM contacts WHERE shard = $1 AND owner_id = ANY($2) AND user_id = $3",
                               shard, owners, user_id)
        return {r["owner_id"] for r in rows}

    return txn


async def get_contacts(deps: Messages, ctx: rpc.Context,
                       q: api.functions.contacts.GetContacts) -> api.types.contacts.Contacts:
    me = signed_in(ctx)
    mine = sorted(await _contact_ids(deps, me))
    by_shard: dict[int, list[int]] = {}
    for uid in mine:
        by_shard.setdefault(deps.shards.for_user(uid), []).append(uid)
    mutual: set[int] = set()
    for shard, owners in sorted(by_shard.items()):
        mutual.update(await deps.txn(shard, "contacts_mutual", _who_has(shard, owners, me)))
    rows = await deps.users(mine)
    contacts: list[api.types.TypeContact] = [api.types.Contact(user_id=uid, mutual=uid in mutual)
                                             for uid in mine if uid in rows]
    seen = await presence.statuses(deps.redis, rows, deps.now())
    return api.types.contacts.Contacts(contacts=contacts, saved_count=len(contacts), users=[
        users.render(rows[uid], viewer=me, contact=True, status=seen.get(uid)) for uid in sorted(rows)])


async def resolve_username(deps: Messages, ctx: rpc.Context,
                           q: api.functions.contacts.ResolveUsername) -> api.types.contacts.ResolvedPeer:
    me = signed_in(ctx)
    name = q.username.removeprefix("@")
    if not _USERNAME.fullmatch(name):
        raise RpcError(400, "USERNAME_INVALID")
    async with deps.main.acquire() as con:
        row = await users.by_username(con, name)
    if row is None:
        raise RpcError(400, "USERNAME_NOT_OCCUPIED")
    contact = row.id in await _contact_ids(deps, me)
    return api.types.contacts.ResolvedPeer(peer=api.types.PeerUser(user_id=row.id), chats=[],
                                           users=[users.render(row, viewer=me, contact=contact)])


async def search(deps: Messages, ctx: rpc.Context, q: api.functions.contacts.Search) -> api.types.contacts.Found:
    me = signed_in(ctx)
    text = q.q.strip().removeprefix("@")
    if not text:
        raise RpcError(400, "SEARCH_QUERY_EMPTY")
    limit = min(max(q.limit, 1), SEARCH_MAX)
    async with deps.main.acquire() as con:
        rows = await users.search(con, text, limit)
    contacts = await _contact_ids(deps, me)
    mine: list[api.types.TypePeer] = [api.types.PeerUser(user_id=r.id) for r in rows if r.id in contacts]
    others: list[api.types.TypePeer] = [api.types.PeerUser(user_id=r.id) for r in rows if r.id not in contacts]
    return api.types.contacts.Found(my_results=mine, results=others, chats=[],
                                    users=[users.render(r, viewer=me, contact=r.id in contacts) for r in rows])


METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.contacts.ImportContacts: import_contacts,
    api.functions.contacts.GetContacts: get_contacts,
    api.functions.contacts.ResolveUsername: resolve_username,
    api.functions.contacts.Search: search,
}
