"""Contacts: importing phone numbers, the contact list with mutual marks, usernames and search."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mtproto.tl import api
from services.common.rpc import RpcError
from tests.helpers.messages import MessageLab, User

C = api.functions.contacts


def run(main_dsn: str, body: Callable[[MessageLab], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with MessageLab(main_dsn) as lab:
            return await body(lab)

    return asyncio.run(go())


def phone(user: User) -> str:
    return f"44{user.id:010d}"  # what MessageLab.user gives each user


def test_import_finds_accounts_by_number_and_get_contacts_marks_mutual_ones(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob, carol = await lab.user("Alice"), await lab.user("Bob"), await lab.user("Carol")
        imported = await lab.call(alice, C.ImportContacts(contacts=[
            api.types.InputPhoneContact(client_id=1, phone="+" + phone(bob), first_name="Bobby", last_name=""),
            api.types.InputPhoneContact(client_id=2, phone=phone(carol)[:4] + " " + phone(carol)[4:],
                                        first_name="C", last_name=""),
            api.types.InputPhoneContact(client_id=3, phone="449999999999", first_name="Nobody", last_name=""),
        ]))
        assert sorted((c.user_id, c.client_id) for c in imported.imported) == [(bob.id, 1), (carol.id, 2)]
        assert {u.id: (u.access_hash, u.phone, u.contact) for u in imported.users} == {
            bob.id: (bob.access_hash, phone(bob), True), carol.id: (carol.access_hash, phone(carol), True)}

        await lab.call(bob, C.ImportContacts(contacts=[
            api.types.InputPhoneContact(client_id=9, phone=phone(alice), first_name="A", last_name="")]))
        listed = await lab.call(alice, C.GetContacts(hash=0))
        assert sorted((c.user_id, c.mutual) for c in listed.contacts) == [(bob.id, True), (carol.id, False)]
        assert listed.saved_count == 2

    run(database, body)


def test_usernames_resolve_and_search_finds_people(database: str) -> None:
    async def body(lab: MessageLab) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob Builder")
        await lab.main.execute("UPDATE users SET username = 'bob_the_builder' WHERE id = $1", bob.id)
        resolved = await lab.call(alice, C.ResolveUsername(username="@Bob_The_Builder"))
        assert resolved.peer == api.types.PeerUser(user_id=bob.id)
        assert (resolved.users[0].access_hash, resolved.users[0].username) == (bob.access_hash, "bob_the_builder")
        with pytest.raises(RpcError, match="USERNAME_NOT_OCCUPIED"):
            await lab.call(alice, C.ResolveUsername(username="nobody_here"))
        with pytest.raises(RpcError, match="USERNAME_INVALID"):
            await lab.call(alice, C.ResolveUsername(username="1x"))

        found = await lab.call(alice, C.Search(q="bob_th", limit=10))
        assert found.results == [api.types.PeerUser(user_id=bob.id)] and found.my_results == []
        by_name = await lab.call(alice, C.Search(q="BUILDER", limit=10))
        assert by_name.results == [api.types.PeerUser(user_id=bob.id)]
        await lab.call(alice, C.ImportContacts(contacts=[
            api.types.InputPhoneContact(client_id=1, phone=phone(bob), first_name="B", last_name="")]))
        mine = await lab.call(alice, C.Search(q="bob", limit=10))
        assert mine.my_results == [api.types.PeerUser(user_id=bob.id)] and mine.results == []
        with pytest.raises(RpcError, match="SEARCH_QUERY_EMPTY"):
            await lab.call(alice, C.Search(q="  ", limit=10))

    run(database, body)
