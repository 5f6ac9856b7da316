"""Perfect forward secrecy end to end (core.telegram.org/api/pfs): a device signs in with its permanent key (the
SDK), makes a temporary key and binds it with auth.bindTempAuthKey (a hand-written client, tests/helpers/
raw_client.py, since the binding message must name the msg_id it is sent under), then works through the temporary
key as if it were the permanent one. Real gateway, real auth service, real Postgres and Redis.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from mtlab.client import Client, ClientConfig, account, session_file
from mtlab.client import RpcError as SdkRpcError
from mtproto import pfs
from mtproto.session import AuthKey
from mtproto.tl import api
from tests.helpers.auth import Stack, fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.raw_client import CallFailed, Closed, RawClient, raw_client

pytestmark = pytest.mark.anyio

ME = api.functions.users.GetUsers(id=[api.types.InputUserSelf()])


@pytest.fixture(scope="module")
def stack(stack_factory: Any) -> Stack:
    s: Stack = stack_factory(MTLAB_AUTH_CODES_PER_IP="1000")
    s.gateway()
    return s


async def sign_in_or_up(invoke: Any, phone: str, code: str) -> api.types.User:
    return await account.sign_in_or_up(invoke, phone, code, first_name="Perfect", last_name="Forward")


@asynccontextmanager
async def device(gw: Any, tmp: Path) -> AsyncIterator[tuple[Client, AuthKey]]:
    """The SDK on a permanent key, and that key (read from the session file the SDK writes before using it)."""
    path = tmp / f"perm-{random.getrandbits(32)}.json"
    config = ClientConfig(server_keys=public_pem(gw), port=gw.port, device_model="perm device", ping_interval=None,
                          session_file=path)
    with anyio.fail_after(30):
        async with Client(config) as client:
            stored = session_file.load(path)
            assert stored is not None
            yield client, stored.auth_key


def bind(perm: AuthKey, temp: RawClient, *, inner: dict[str, Callable[[int], int]] | None = None,
         query: dict[str, Callable[[Any], Any]] | None = None) -> Callable[[int], api.functions.auth.BindTempAuthKey]:
    """What the client builds once it knows the msg_id; ``inner`` spoils a fact the binding message states,
    ``query`` a field of the query around it (each a function of the right value)."""
    assert temp.expires_at is not None
    expires_at = temp.expires_at

    def build(msg_id: int) -> api.functions.auth.BindTempAuthKey:
        facts = {"temp_auth_key_id": temp.key_id, "temp_session_id": temp.session_id, "expires_at": expires_at,
                 "msg_id": msg_id}
        facts |= {name: change(facts[name]) for name, change in (inner or {}).items()}
        made = pfs.bind_query(perm, randbytes=os.urandom, **facts)
        return replace(made, **{name: change(made) for name, change in (query or {}).items()})

    return build


async def fails(temp: RawClient, query: Any) -> str:
    with anyio.fail_after(20):
        try:
            await temp.call(query)
        except CallFailed as exc:
            return f"{exc.code} {exc.message}"
    return "ok"


def edge_errors(gw: Any, error: str) -> float:
    return float(gw.metric("mtlab_gateway_rpc_errors_total", error=error, service="gateway"))


async def test_a_bound_temporary_key_works_as_the_signed_in_permanent_key(stack: Stack, tmp_path: Path) -> None:
    gw = stack.gateways[0]
    phone, code = fresh_test_number()
    async with device(gw, tmp_path) as (sdk, perm), raw_client(gw, expires_in=3600) as temp:
        me = await sign_in_or_up(sdk.invoke, phone, code)
        # Before binding, a temporary key may fetch the config and bind, nothing else (core.telegram.org/api/pfs)
        assert isinstance(await temp.call(api.functions.help.GetConfig()), api.types.Config)
        assert await fails(temp, ME) == "401 AUTH_KEY_PERM_EMPTY"
        assert await fails(temp, api.functions.auth.SendCode(phone_number=phone, api_id=1, api_hash="lab",
                                                             settings=api.types.CodeSettings())) == (
            "401 AUTH_KEY_PERM_EMPTY")

        assert await temp.call(bind(perm, temp)) is True
        [user] = await temp.call(ME)  # signed in: the permanent key is
        assert (user.id, user.self) == (me.id, True)
        [authorization] = (await temp.call(api.functions.account.GetAuthorizations())).authorizations
        assert (authorization.current, authorization.device_model) == (True, "perm device")

        # Logging out through the permanent key ends the temporary key's sign-in at once, refused by the gateway
        # itself: keys.watch named the temporary key too, so its cached record was dropped.
        refused = edge_errors(gw, "AUTH_KEY_UNREGISTERED")
        assert isinstance(await sdk.invoke(api.functions.auth.LogOut()), api.types.auth.LoggedOut)
        assert await fails(temp, ME) == "401 AUTH_KEY_UNREGISTERED"
        assert edge_errors(gw, "AUTH_KEY_UNREGISTERED") == refused + 1

        # Signing in through the temporary key signs the permanent key in; logging out through it signs both out.
        assert (await sign_in_or_up(temp.call, phone, code)).id == me.id
        [again] = await sdk.invoke(ME)
        assert again.id == me.id
        assert isinstance(await temp.call(api.functions.auth.LogOut()), api.types.auth.LoggedOut)
        with anyio.fail_after(5):
            while True:  # the SDK's key was cached as signed in; keys.watch drops it (a moment, no more)
                try:
                    await sdk.invoke(ME)
                except SdkRpcError as exc:
                    assert exc.message == "AUTH_KEY_UNREGISTERED"
                    break
                await anyio.sleep(0.02)


async def test_binding_messages_that_do_not_match_the_call_are_refused(stack: Stack, tmp_path: Path) -> None:
    gw = stack.gateways[0]
    async with device(gw, tmp_path) as (sdk, perm), raw_client(gw, expires_in=3600) as temp:
        await sign_in_or_up(sdk.invoke, *fresh_test_number())
        invalid = "400 ENCRYPTED_MESSAGE_INVALID"
        assert await fails(temp, bind(perm, temp, query={"nonce": lambda q: q.nonce + 1})) == invalid
        assert await fails(temp, bind(perm, temp, query={"expires_at": lambda q: q.expires_at + 1})) == invalid
        assert await fails(temp, bind(perm, temp, inner={"temp_session_id": lambda s: s + 1})) == invalid
        assert await fails(temp, bind(perm, temp, inner={"msg_id": lambda m: m - 4})) == invalid  # an older message

        def flip(q: api.functions.auth.BindTempAuthKey) -> bytes:
            return q.encrypted_message[:50] + bytes([q.encrypted_message[50] ^ 1]) + q.encrypted_message[51:]

        assert await fails(temp, bind(perm, temp, query={"encrypted_message": flip})) == invalid
        unknown = AuthKey.from_bytes(os.urandom(256))  # a permanent key the server never made
        assert await fails(temp, bind(unknown, temp)) == invalid
        # and over the permanent key itself (the SDK's own invoke): there is no temporary key to bind
        with pytest.raises(SdkRpcError, match="TEMP_AUTH_KEY_EMPTY"):
            await sdk.invoke(bind(perm, temp)(4))
        # none of that bound anything, or closed the connection
        assert await fails(temp, ME) == "401 AUTH_KEY_PERM_EMPTY"
        assert await temp.call(bind(perm, temp)) is True
        assert len(await temp.call(ME)) == 1

        # A temporary key is bound once: to another permanent key, never.
        async with device(gw, tmp_path) as (_, other):
            assert await fails(temp, bind(other, temp)) == "400 TEMP_AUTH_KEY_ALREADY_BOUND"
        assert await temp.call(bind(perm, temp)) is True  # the same pair again is fine (a lost answer, retried)


async def test_a_new_temporary_key_replaces_the_old_one(stack: Stack, tmp_path: Path) -> None:
    gw = stack.gateways[0]
    async with device(gw, tmp_path) as (sdk, perm), raw_client(gw, expires_in=3600) as old, \
            raw_client(gw, expires_in=3600) as new:
        await sign_in_or_up(sdk.invoke, *fresh_test_number())
        assert await old.call(bind(perm, old)) is True
        assert len(await old.call(ME)) == 1
        assert await new.call(bind(perm, new)) is True  # "binding a new temporary key overwrites the previous one"
        assert len(await new.call(ME)) == 1
        assert await fails(old, ME) == "401 AUTH_KEY_PERM_EMPTY"


async def test_the_binding_ends_with_its_expires_at(stack: Stack, tmp_path: Path) -> None:
    gw = stack.gateways[0]
    async with device(gw, tmp_path) as (sdk, perm), raw_client(gw, expires_in=3600) as temp:
        await sign_in_or_up(sdk.invoke, *fresh_test_number())
        soon = int(time.time()) + 2
        assert await temp.call(bind(perm, temp, inner={"expires_at": lambda _: soon})) is True
        assert len(await temp.call(ME)) == 1
        await anyio.sleep(soon + 1.1 - time.time())
        # expires_at invalidates the temporary key itself: the gateway no longer knows it (-404)
        with pytest.raises(Closed) as closed:
            await temp.call(ME)
        assert closed.value.code == -404
