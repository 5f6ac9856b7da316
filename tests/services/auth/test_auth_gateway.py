"""Sign-in end to end: a client (mtlab.client, or stock Telethon) -> real gateway -> real auth service -> Postgres
and Redis, over real TCP. Revocation across devices and across replicas, limits, and the auth service going away.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis as redis_sync
from telethon import TelegramClient
from telethon.crypto import rsa as telethon_rsa
from telethon.network import connection as tconn
from telethon.sessions import MemorySession

from mtlab.client import Client, ClientConfig, RpcError, TransportKind, account
from mtproto.tl import api, mt
from services.auth import codes
from tests.helpers.auth import Stack, fresh_test_number, metric_value, start_auth, start_gateway
from tests.helpers.client import COMBINATION_IDS, COMBINATIONS, WEBSOCKET_KINDS, public_pem

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def stack(stack_factory: Any) -> Stack:
    s: Stack = stack_factory(MTLAB_AUTH_CODES_PER_PHONE="3", MTLAB_AUTH_CODE_ATTEMPTS="2",
                             MTLAB_AUTH_CODES_PER_IP="1000")
    s.gateway()
    return s


@asynccontextmanager
async def device(gw: Any, model: str = "pytest", kind: TransportKind = TransportKind.INTERMEDIATE,
                 obfuscated: bool = False, websocket: bool = False) -> AsyncIterator[Client]:
    config = ClientConfig(server_keys=public_pem(gw), port=gw.port, ws_port=gw.ws_port, websocket=websocket,
                          transport=kind, obfuscated=obfuscated, device_model=model, ping_interval=None)
    with anyio.fail_after(30):
        async with Client(config) as client:
            yield client


async def fails(client: Client, query: Any) -> str:
    with anyio.fail_after(20):
        try:
            await client.invoke(query)
        except RpcError as exc:
            return f"{exc.code} {exc.message}"
    return "ok"


def send_code(phone: str) -> api.functions.auth.SendCode:
    return api.functions.auth.SendCode(phone_number=phone, api_id=1, api_hash="lab",
                                       settings=api.types.CodeSettings())


async def sign_in_or_up(client: Client, phone: str, code: str, first_name: str = "Ada") -> api.types.User:
    return await account.sign_in_or_up(client.invoke, phone, code, first_name=first_name)


ME = api.functions.users.GetUsers(id=[api.types.InputUserSelf()])


def edge_refusals(gw: Any) -> float:
    """401 SESSION_REVOKED answered by the gateway itself, from its own (cached or fetched) key record."""
    return float(gw.metric("mtlab_gateway_rpc_errors_total", error="SESSION_REVOKED", service="gateway"))


#: every transport over TCP, and the obfuscated ones over WebSocket
TRANSPORTS = [(k, o, False) for k, o in COMBINATIONS] + [(k, True, True) for k in WEBSOCKET_KINDS]
TRANSPORT_IDS = COMBINATION_IDS + [f"{k.value}+obfuscated+ws" for k in WEBSOCKET_KINDS]


@pytest.mark.parametrize(("kind", "obfuscated", "websocket"), TRANSPORTS, ids=TRANSPORT_IDS)
async def test_sign_up_and_sign_in_over_every_transport(stack: Stack, kind: TransportKind, obfuscated: bool,
                                                        websocket: bool) -> None:
    gw = stack.gateways[0]
    phone, code = fresh_test_number()
    async with device(gw, "first", kind, obfuscated, websocket) as first:
        # help.getConfig (sent by the client on connecting) is the auth service's answer, naming this gateway
        assert first.server_config is not None
        assert [(o.ip_address, o.port) for o in first.server_config.dc_options] == [("127.0.0.1", gw.port)]
        assert await fails(first, api.functions.updates.GetState()) == "401 AUTH_KEY_UNREGISTERED"
        sent = await first.invoke(send_code(phone))
        bad = api.functions.auth.SignIn(phone_number=phone, phone_code_hash=sent.phone_code_hash, phone_code="00000")
        assert await fails(first, bad) == "400 PHONE_CODE_INVALID"
        signed = await first.invoke(api.functions.auth.SignIn(phone_number=phone,
                                                              phone_code_hash=sent.phone_code_hash, phone_code=code))
        assert isinstance(signed, api.types.auth.AuthorizationSignUpRequired)
        done = await first.invoke(api.functions.auth.SignUp(phone_number=phone, phone_code_hash=sent.phone_code_hash,
                                                            first_name="Grace", last_name="Hopper"))
        me = done.user
        # the very next request on this key is signed in (the gateway dropped its cached "not signed in")
        [again] = await first.invoke(ME)
        assert (again.id, again.self, again.phone, again.first_name) == (me.id, True, phone, "Grace")
        state = await first.invoke(api.functions.updates.GetState())
        assert (state.pts, state.qts, state.seq) == (0, 0, 0)
    async with device(gw, "second", kind, obfuscated, websocket) as second:  # a new key signs in to the account
        user = await sign_in_or_up(second, phone, code)
        assert user.id == me.id


async def test_reset_authorization_makes_the_other_device_401(stack: Stack) -> None:
    gw = stack.gateways[0]
    phone, code = fresh_test_number()
    async with device(gw, "laptop") as laptop, device(gw, "phone") as handset:
        await sign_in_or_up(laptop, phone, code)
        await sign_in_or_up(handset, phone, code)
        assert len(await handset.invoke(ME)) == 1  # signed in, and now cached by the gateway

        listed = (await laptop.invoke(api.functions.account.GetAuthorizations())).authorizations
        assert sorted((a.device_model, a.current, a.ip) for a in listed) == [("laptop", True, "127.0.0.1"),
                                                                            ("phone", False, "127.0.0.1")]
        [other] = [a for a in listed if not a.current]
        refused_at_edge = edge_refusals(gw)
        assert await laptop.invoke(api.functions.account.ResetAuthorization(hash=other.hash)) is True
        # Its very next request is refused, though the gateway had it cached as signed in a moment ago; and
        # refused by the gateway itself: keys.watch replaced the cached record before the laptop got its answer
        # (a stale cache would have sent the call on, with the revoked user id in its context).
        assert await fails(handset, ME) == "401 SESSION_REVOKED"
        assert edge_refusals(gw) == refused_at_edge + 1
        assert await fails(handset, api.functions.account.GetAuthorizations()) == "401 SESSION_REVOKED"
        assert isinstance(await handset.invoke(api.functions.help.GetConfig()), api.types.Config)  # no sign-in needed
        assert len(await laptop.invoke(ME)) == 1  # the laptop is unaffected

        assert isinstance(await laptop.invoke(api.functions.auth.LogOut()), api.types.auth.LoggedOut)
        assert await fails(laptop, ME) == "401 AUTH_KEY_UNREGISTERED"
    assert gw.metric("mtlab_gateway_key_cache_total", result="invalidated") >= 1


async def test_a_revocation_on_another_replica_reaches_this_gateway(stack: Stack) -> None:
    # A second auth replica and a second gateway on the same database and Redis: a device revoked through them
    # must lose access on the first gateway too (keys.watch there is fed through Redis pub/sub).
    replica = start_auth(stack.tmp / "replica", stack.postgres_dsn, stack.redis_url)
    gw2 = start_gateway(stack.tmp / "gw-replica", replica)
    try:
        phone, code = fresh_test_number()
        async with device(stack.gateways[0], "on gateway 1") as one, device(gw2, "on gateway 2") as two:
            await sign_in_or_up(one, phone, code)
            await sign_in_or_up(two, phone, code)
            assert len(await one.invoke(ME)) == 1  # cached as signed in on gateway 1
            [other] = [a for a in (await two.invoke(api.functions.account.GetAuthorizations())).authorizations
                       if not a.current]
            refused_at_edge = edge_refusals(stack.gateways[0])
            assert await two.invoke(api.functions.account.ResetAuthorization(hash=other.hash)) is True
            # The auth service refuses the revoked key from the database at once; gateway 1 must also learn it
            # (and refuse at the edge) once the change crosses Redis: a moment, no more.
            with anyio.fail_after(5):
                while edge_refusals(stack.gateways[0]) == refused_at_edge:
                    assert await fails(one, ME) == "401 SESSION_REVOKED"
                    await anyio.sleep(0.02)
        assert replica.metric("mtlab_auth_key_changes_total", origin="local") >= 1
    finally:
        gw2.stop()
        replica.stop()


async def test_codes_attempts_expiry_and_flood_through_the_gateway(stack: Stack) -> None:
    gw = stack.gateways[0]
    phone = f"1444{random.randrange(10**7):07d}"
    async with device(gw) as client:
        sent = await client.invoke(send_code(phone))
        r = redis_sync.Redis.from_url(stack.redis_url, decode_responses=True)
        try:
            code = str(r.hget(codes.CODE_PREFIX + phone, "code"))  # what `mtlab codes` shows
            wrong = str((int(code) + 1) % 100000).zfill(5)

            def sign_in(c: str, h: str = sent.phone_code_hash) -> api.functions.auth.SignIn:
                return api.functions.auth.SignIn(phone_number=phone, phone_code_hash=h, phone_code=c)

            # MTLAB_AUTH_CODE_ATTEMPTS=2: two wrong guesses destroy the code, the right one is then too late
            assert [await fails(client, sign_in(wrong)) for _ in range(2)] == ["400 PHONE_CODE_INVALID"] * 2
            assert await fails(client, sign_in(code)) == "400 PHONE_CODE_EXPIRED"

            sent = await client.invoke(send_code(phone))
            r.pexpire(codes.CODE_PREFIX + phone, 1)  # the code's TTL runs out
            await anyio.sleep(0.05)
            assert await fails(client, sign_in(code, sent.phone_code_hash)) == "400 PHONE_CODE_EXPIRED"
        finally:
            r.close()
        await client.invoke(send_code(phone))  # the third code of MTLAB_AUTH_CODES_PER_PHONE=3
        flood = await fails(client, send_code(phone))
        assert flood.startswith("420 FLOOD_WAIT_") and int(flood.rsplit("_", 1)[1]) > 0
        assert await fails(client, send_code("12")) == "400 PHONE_NUMBER_INVALID"


async def test_the_auth_service_restarting_fails_calls_cleanly_then_recovers(stack: Stack) -> None:
    gw = stack.gateways[0]
    phone, code = fresh_test_number()
    async with device(gw, "survivor") as client:
        me = await sign_in_or_up(client, phone, code)
        stack.auth.kill()  # a crash
        try:
            # The gateway still holds this connection's key, so the session goes on: calls that need the
            # service get a clean rpc_error, and pings are answered at the edge.
            assert await fails(client, ME) == "500 SERVICE_UNAVAILABLE"
            assert await fails(client, api.functions.help.GetConfig()) == "500 SERVICE_UNAVAILABLE"
            pong = await client.invoke(mt.functions.Ping(ping_id=5))
            assert pong.ping_id == 5
        finally:
            stack.auth.start()  # the same ports, database and Redis
        with anyio.fail_after(15):  # the gateway reconnects with backoff (at most 2 s apart)
            while (outcome := await fails(client, ME)) == "500 SERVICE_UNAVAILABLE":
                await anyio.sleep(0.1)
        assert outcome == "ok"
        [again] = await client.invoke(ME)
        assert again.id == me.id  # still signed in: the authorization is in Postgres, not in the service
    async with device(gw) as fresh:  # new keys can be made again
        assert await fails(fresh, api.functions.updates.GetState()) == "401 AUTH_KEY_UNREGISTERED"
    # one answered at the edge (the key's state could not be asked), one by the router (the call could not be sent)
    assert metric_value(gw.metrics(), "mtlab_gateway_rpc_errors_total", error="SERVICE_UNAVAILABLE") >= 2


async def test_a_stalled_service_times_out_while_the_session_goes_on(stack: Stack) -> None:
    gw = stack.gateway(MTLAB_GATEWAY_RPC_TIMEOUT="1")
    phone, code = fresh_test_number()
    async with device(gw) as client:
        await sign_in_or_up(client, phone, code)
        await client.invoke(ME)  # the key's record is cached: the stalled service is needed for the call only
        os.kill(stack.auth.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            results: dict[str, Any] = {}

            async def slow() -> None:
                results["call"] = await fails(client, ME)

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await anyio.sleep(0.2)
                with anyio.fail_after(0.7):  # answered while the call waits: the gateway reads on
                    results["ping"] = (await client.invoke(mt.functions.Ping(ping_id=6))).ping_id
            assert results == {"call": "500 RPC_TIMEOUT", "ping": 6}
        finally:
            os.kill(stack.auth.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        with anyio.fail_after(10):
            assert len(await client.invoke(ME)) == 1


#: Telethon's connection classes over TCP (full is its default), and the gateway's label for what each speaks
TELETHON_CONNECTIONS = {
    "full": (tconn.ConnectionTcpFull, "full"),
    "abridged": (tconn.ConnectionTcpAbridged, "abridged"),
    "intermediate": (tconn.ConnectionTcpIntermediate, "intermediate"),
    "obfuscated": (tconn.ConnectionTcpObfuscated, "abridged+obfuscated"),
}


@pytest.mark.parametrize("connection", sorted(TELETHON_CONNECTIONS))
def test_telethon_signs_in_with_a_test_number_and_reads_itself(stack: Stack, connection: str) -> None:
    gw = stack.gateways[0]
    phone, code = fresh_test_number()

    async def create_account() -> int:
        async with device(gw, "sdk") as client:  # Telethon 1.45 refuses to sign up: the account must exist
            return (await sign_in_or_up(client, phone, code, first_name=f"Stock {connection}")).id

    user_id = anyio.run(create_account)
    telethon_rsa.add_key(public_pem(gw), old=False)
    connection_class, label = TELETHON_CONNECTIONS[connection]
    connections_before = gw.metric("mtlab_gateway_connections_total", transport=label)

    async def telethon() -> Any:
        session = MemorySession()
        session.set_dc(2, "127.0.0.1", gw.port)
        # One retry: Telethon 1.45 drops leading zero bytes of the DH result (rsa.get_byte_array), so about one
        # handshake in 256 (a key starting with a zero byte) fails on its side with "invalid new nonce hash".
        client = TelegramClient(session, 1, "lab", connection=connection_class,
                                receive_updates=False, connection_retries=1, request_retries=1)
        await asyncio.wait_for(client.connect(), 30)
        try:
            assert not await client.is_user_authorized()
            await client.send_code_request(phone)
            await client.sign_in(phone, code)  # Telethon then asks updates.getState and getDifference
            return await client.get_me()
        finally:
            await client.disconnect()

    me = asyncio.run(telethon())
    assert (me.id, me.phone, me.first_name, me.is_self) == (user_id, phone, f"Stock {connection}", True)
    assert gw.metric("mtlab_gateway_connections_total", transport=label) > connections_before  # it spoke that
