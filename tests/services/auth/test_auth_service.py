"""The auth service process over its internal RPC, as a gateway calls it: real Postgres, real Redis, real TCP.

Every call carries an rpc.context the way the gateway fills it in (the auth key id, the client's initConnection
fields and address). End-to-end tests through the gateway are in test_auth_gateway.py.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
import redis as redis_sync

from mtproto import pfs
from mtproto.crypto import kdf
from mtproto.session import AuthKey
from mtproto.tl import api
from mtproto.tl.internal.functions import keys as keys_fn
from mtproto.tl.internal.types import keys, rpc
from mtproto.tl.runtime import Reader, TLFunction
from services.auth import codes
from services.common import redis as redis_
from services.common.rpc import RpcClient, RpcError, context
from tests.helpers.auth import fresh_test_number, start_auth
from tests.helpers.proxy import Proxy

pytestmark = pytest.mark.anyio

CODE_TTL = 300


@pytest.fixture(scope="module")
def stack(stack_factory: Any) -> Any:
    return stack_factory(MTLAB_AUTH_CODES_PER_PHONE="4", MTLAB_AUTH_CODES_PER_IP="6", MTLAB_AUTH_CODE_ATTEMPTS="3",
                         MTLAB_AUTH_CODE_TTL=str(CODE_TTL))


class Device:
    """One client device as the auth service sees it: an auth key (stored first, as the gateway does) and the
    context the gateway would attach to its calls."""

    def __init__(self, client: RpcClient, ip: str, model: str = "pytest phone") -> None:
        self.client = client
        self.auth_key = os.urandom(256)
        self.key_id = int.from_bytes(kdf.auth_key_id(self.auth_key), "little", signed=True)
        self.info = rpc.ClientInfo(api_id=7, device_model=model, system_version="test 1", app_version="0.1",
                                   lang_code="en", ip=ip)

    async def call(self, query: TLFunction[Any], *, msg_id: int | None = None) -> Any:
        ctx = context(auth_key_id=self.key_id, session_id=1, msg_id=msg_id, layer=229,
                      trace_id=random.getrandbits(62), client=self.info)
        return query.read_result(Reader(await self.client.call(query.to_bytes(), ctx)))

    async def error(self, query: TLFunction[Any], *, msg_id: int | None = None) -> tuple[int, str]:
        with pytest.raises(RpcError) as caught:
            await self.call(query, msg_id=msg_id)
        return caught.value.code, caught.value.message

    async def store(self, expires_in: int | None = None) -> keys.KeyRecord:
        record = await self.call(keys_fn.Store(auth_key=self.auth_key, handshake_salt=1234, expires_in=expires_in))
        assert isinstance(record, keys.KeyRecord)
        return record

    async def record(self) -> keys.TypeKeyRecord:
        return await self.call(keys_fn.Get(auth_key_id=self.key_id))


@pytest.fixture
async def client(stack: Any) -> AsyncIterator[RpcClient]:
    async with RpcClient("auth", "127.0.0.1", stack.auth.rpc_port) as c:
        with anyio.fail_after(10):
            await c.wait_connected()
        yield c


def ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def phone() -> str:
    return f"1555{random.randrange(10**7):07d}"


def send_code(number: str) -> api.functions.auth.SendCode:
    return api.functions.auth.SendCode(phone_number=number, api_id=7, api_hash="lab",
                                       settings=api.types.CodeSettings())


def pending_code(stack: Any, number: str) -> str:
    r = redis_sync.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        return str(r.hget(codes.CODE_PREFIX + number, "code"))
    finally:
        r.close()


async def sign_up(device: Device, number: str, code: str, first_name: str = "Ada") -> api.types.auth.Authorization:
    return (await sign_up_with_hash(device, number, code, first_name))[0]


async def sign_up_with_hash(device: Device, number: str, code: str,
                            first_name: str = "Ada") -> tuple[api.types.auth.Authorization, str]:
    sent = await device.call(send_code(number))
    result = await device.call(api.functions.auth.SignIn(phone_number=number, phone_code_hash=sent.phone_code_hash,
                                                         phone_code=code))
    assert isinstance(result, api.types.auth.AuthorizationSignUpRequired)
    done = await device.call(api.functions.auth.SignUp(phone_number=number, phone_code_hash=sent.phone_code_hash,
                                                       first_name=first_name, last_name="Lovelace"))
    assert isinstance(done, api.types.auth.Authorization)
    return done, sent.phone_code_hash


async def sign_in(device: Device, number: str, code: str) -> api.types.auth.Authorization:
    sent = await device.call(send_code(number))
    done = await device.call(api.functions.auth.SignIn(phone_number=number, phone_code_hash=sent.phone_code_hash,
                                                       phone_code=code))
    assert isinstance(done, api.types.auth.Authorization)
    return done


# -- keys for the gateway -----------------------------------------------------------------------------------


async def test_keys_are_stored_once_and_read_back(client: RpcClient) -> None:
    device = Device(client, ip())
    stored = await device.store()
    assert (stored.auth_key_id, stored.auth_key, stored.handshake_salt) == (device.key_id, device.auth_key, 1234)
    assert stored.user_id is None and not stored.revoked and stored.expires is None
    assert await device.record() == stored
    assert await device.store() == stored  # a gateway storing the same key again (it timed out) changes nothing
    assert await device.call(keys_fn.Get(auth_key_id=12345)) == keys.NoKey(auth_key_id=12345)
    temp = await device.call(keys_fn.Store(auth_key=os.urandom(256), handshake_salt=1, expires_in=600))
    assert temp.expires is not None and 590 <= temp.expires - temp.created <= 600
    assert await device.error(keys_fn.Store(auth_key=b"short", handshake_salt=1)) == (400, "AUTH_KEY_INVALID")


# -- sign-up, sign-in, users --------------------------------------------------------------------------------


async def test_sign_up_then_users_and_authorizations(stack: Any, client: RpcClient) -> None:
    device = Device(client, ip(), model="Pixel Lab")
    await device.store()
    number, code = fresh_test_number()
    assert await device.error(api.functions.updates.GetState()) == (401, "AUTH_KEY_UNREGISTERED")

    done, used_hash = await sign_up_with_hash(device, number, code)
    me = done.user
    assert isinstance(me, api.types.User) and me.self and me.phone == number and me.first_name == "Ada"
    record = await device.record()
    assert isinstance(record, keys.KeyRecord) and record.user_id == me.id  # what the gateway caches

    [user] = await device.call(api.functions.users.GetUsers(id=[api.types.InputUserSelf()]))
    assert (user.id, user.self, user.phone, user.last_name) == (me.id, True, number, "Lovelace")
    full = await device.call(api.functions.users.GetFullUser(id=api.types.InputUser(user_id=me.id,
                                                                                   access_hash=me.access_hash)))
    assert full.full_user.id == me.id and [u.id for u in full.users] == [me.id]
    state = await device.call(api.functions.updates.GetState())
    assert (state.pts, state.qts, state.seq) == (0, 0, 0) and state.date > 0

    [auth] = (await device.call(api.functions.account.GetAuthorizations())).authorizations
    assert auth.current and auth.hash == 0  # the current session is hash 0 on the wire
    assert (auth.device_model, auth.api_id, auth.ip, auth.app_version) == ("Pixel Lab", 7, device.info.ip, "0.1")

    # the code was used up: it cannot sign in a second device
    other = Device(client, ip())
    await other.store()
    again = api.functions.auth.SignIn(phone_number=number, phone_code_hash=used_hash, phone_code=code)
    assert await other.error(again) == (400, "PHONE_CODE_EXPIRED")


async def test_known_users_only_with_their_access_hash(client: RpcClient) -> None:
    alice, bob = Device(client, ip()), Device(client, ip())
    await alice.store()
    await bob.store()
    a = (await sign_up(alice, *fresh_test_number(), first_name="Alice")).user
    b = (await sign_up(bob, *fresh_test_number(), first_name="Bob")).user
    seen = await alice.call(api.functions.users.GetUsers(id=[
        api.types.InputUser(user_id=b.id, access_hash=b.access_hash),
        api.types.InputUser(user_id=b.id, access_hash=b.access_hash ^ 1),  # a guessed hash shows nothing
        api.types.InputUserEmpty(),
        api.types.InputUserSelf(),
    ]))
    # Bob's phone is hidden from Alice (not a contact); unknown and unprovable users are left out
    assert [(u.id, u.self, u.phone) for u in seen] == [(b.id, False, None), (a.id, True, a.phone)]
    bad = api.functions.users.GetFullUser(id=api.types.InputUser(user_id=b.id, access_hash=0))
    assert await alice.error(bad) == (400, "USER_ID_INVALID")


async def test_reset_authorization_revokes_the_other_device_and_tells_watchers(stack: Any, client: RpcClient) -> None:
    number, code = fresh_test_number()
    laptop, phone_ = Device(client, ip(), "laptop"), Device(client, ip(), "phone")
    await laptop.store()
    await phone_.store()
    await sign_up(laptop, number, code)
    await sign_in(phone_, number, code)

    async with RpcClient("auth", "127.0.0.1", stack.auth.rpc_port) as watcher:
        with anyio.fail_after(10):
            await watcher.wait_connected()
        items = watcher.stream(keys_fn.Watch().to_bytes(), context())
        first = Reader(await anext(items)).read_object()
        assert first == keys.Resync()  # a new subscriber drops whatever it cached

        listed = (await laptop.call(api.functions.account.GetAuthorizations())).authorizations
        assert sorted(a.device_model for a in listed) == ["laptop", "phone"]
        [other] = [a for a in listed if not a.current]
        assert await laptop.error(api.functions.account.ResetAuthorization(hash=0)) == (400, "HASH_INVALID")
        assert await laptop.error(api.functions.account.ResetAuthorization(hash=other.hash ^ 1)) == (400,
                                                                                                      "HASH_INVALID")
        assert await laptop.call(api.functions.account.ResetAuthorization(hash=other.hash)) is True

        with anyio.fail_after(5):
            change = Reader(await anext(items)).read_object()
        assert change == keys.Changed(key_ids=[phone_.key_id])
        await items.aclose()

    record = await phone_.record()
    assert isinstance(record, keys.KeyRecord) and record.user_id is None and record.revoked
    assert await phone_.error(api.functions.updates.GetState()) == (401, "SESSION_REVOKED")
    assert await phone_.error(api.functions.account.ResetAuthorization(hash=1)) == (401, "SESSION_REVOKED")
    # signing in again on the revoked key is allowed, and clears the revocation
    await sign_in(phone_, number, code)
    record = await phone_.record()
    assert isinstance(record, keys.KeyRecord) and record.user_id is not None and not record.revoked
    assert stack.auth.metric("mtlab_auth_revocations_total", how="reset_authorization") >= 1


async def test_log_out(client: RpcClient) -> None:
    device = Device(client, ip())
    await device.store()
    await sign_up(device, *fresh_test_number())
    assert isinstance(await device.call(api.functions.auth.LogOut()), api.types.auth.LoggedOut)
    assert await device.error(api.functions.updates.GetState()) == (401, "AUTH_KEY_UNREGISTERED")  # not "revoked"
    assert await device.error(api.functions.auth.LogOut()) == (401, "AUTH_KEY_UNREGISTERED")


# -- temporary keys bound to permanent ones (PFS) ------------------------------------------------------------


@asynccontextmanager
async def watching(stack: Any) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    """A keys.watch subscriber, as a gateway keeps one; yields "the next change"."""
    async with RpcClient("auth", "127.0.0.1", stack.auth.rpc_port) as watcher:
        with anyio.fail_after(10):
            await watcher.wait_connected()
        items = watcher.stream(keys_fn.Watch().to_bytes(), context())

        async def next_change() -> object:
            with anyio.fail_after(5):
                return Reader(await anext(items)).read_object()

        assert await next_change() == keys.Resync()
        try:
            yield next_change
        finally:
            await items.aclose()


def binding(perm: Device, temp: Device, msg_id: int, expires_at: int) -> api.functions.auth.BindTempAuthKey:
    return pfs.bind_query(AuthKey.from_bytes(perm.auth_key), temp_auth_key_id=temp.key_id, temp_session_id=1,
                          expires_at=expires_at, msg_id=msg_id, randbytes=os.urandom)


async def test_a_bound_temporary_key_acts_as_its_permanent_key(stack: Any, client: RpcClient) -> None:
    perm, temp = Device(client, ip(), "perm"), Device(client, ip(), "temp")
    await perm.store()
    await temp.store(expires_in=3600)
    assert await temp.error(api.functions.updates.GetState()) == (401, "AUTH_KEY_PERM_EMPTY")  # not bound yet
    number, code = fresh_test_number()
    me = (await sign_up(perm, number, code)).user
    expires_at, msg_id = int(time.time()) + 600, random.getrandbits(60) << 2  # a signed long, divisible by 4

    async with watching(stack) as next_change:
        # a gateway that does not say which message carried the call cannot have the binding checked
        assert await temp.error(binding(perm, temp, msg_id, expires_at)) == (400, "ENCRYPTED_MESSAGE_INVALID")
        assert await temp.call(binding(perm, temp, msg_id, expires_at), msg_id=msg_id) is True
        assert await next_change() == keys.Changed(key_ids=[temp.key_id])
        record = await temp.record()
        assert isinstance(record, keys.KeyRecord)
        assert (record.user_id, record.perm_auth_key_id, record.expires) == (me.id, perm.key_id, expires_at)
        # one authorization, the permanent key's, and it is "this session" for the temporary key
        [listed] = (await temp.call(api.functions.account.GetAuthorizations())).authorizations
        assert (listed.current, listed.device_model) == (True, "perm")

        assert isinstance(await perm.call(api.functions.auth.LogOut()), api.types.auth.LoggedOut)
        assert await next_change() == keys.Changed(key_ids=[perm.key_id, temp.key_id])  # both records changed
        assert await temp.error(api.functions.updates.GetState()) == (401, "AUTH_KEY_UNREGISTERED")

        # signing in through the temporary key signs the permanent key in (the authorization is the permanent key's)
        await sign_in(temp, number, code)
        assert await next_change() == keys.Changed(key_ids=[perm.key_id, temp.key_id])
        record = await perm.record()
        assert isinstance(record, keys.KeyRecord) and record.user_id == me.id
        assert isinstance(await temp.call(api.functions.auth.LogOut()), api.types.auth.LoggedOut)
        assert await next_change() == keys.Changed(key_ids=[perm.key_id, temp.key_id])
        assert await perm.error(api.functions.updates.GetState()) == (401, "AUTH_KEY_UNREGISTERED")


async def test_bindings_that_are_refused(stack: Any, client: RpcClient) -> None:
    perm, other, temp, temp2 = (Device(client, ip()) for _ in range(4))
    await perm.store()
    await other.store()
    await temp.store(expires_in=3600)
    await temp2.store(expires_in=3600)
    later = int(time.time()) + 600

    async def bind(device: Device, query: api.functions.auth.BindTempAuthKey, msg_id: int) -> Any:
        try:
            return await device.call(query, msg_id=msg_id)
        except RpcError as exc:
            return exc.message

    assert await bind(perm, binding(other, perm, 4, later), 4) == "TEMP_AUTH_KEY_EMPTY"  # over a permanent key
    assert await bind(temp, binding(temp2, temp, 4, later), 4) == "ENCRYPTED_MESSAGE_INVALID"  # "permanent" is temp
    assert await bind(temp, binding(perm, temp, 4, int(time.time()) - 1), 4) == "EXPIRES_AT_INVALID"
    assert await bind(temp, binding(perm, temp, 4, later), 4) is True
    assert await bind(temp, binding(perm, temp, 8, later), 8) is True  # the same pair again: the answer was lost
    assert await bind(temp, binding(other, temp, 12, later), 12) == "TEMP_AUTH_KEY_ALREADY_BOUND"
    # a permanent key has one temporary key at a time: binding temp2 unbinds temp
    async with watching(stack) as next_change:
        assert await bind(temp2, binding(perm, temp2, 16, later), 16) is True
        assert await next_change() == keys.Changed(key_ids=[temp2.key_id, temp.key_id])
    record = await temp.record()
    assert isinstance(record, keys.KeyRecord) and record.perm_auth_key_id is None
    assert await temp.error(api.functions.updates.GetState()) == (401, "AUTH_KEY_PERM_EMPTY")


# -- codes: wrong, expired, replaced, exhausted; flood limits -----------------------------------------------


async def test_code_errors(stack: Any, client: RpcClient) -> None:
    device = Device(client, ip())
    await device.store()
    number = phone()
    for bad in ("12ab5", "123", "+1 555 000 000 000 000 0"):
        assert await device.error(send_code(bad)) == (400, "PHONE_NUMBER_INVALID")

    sent = await device.call(send_code("+1 (555) " + number[4:7] + "-" + number[7:]))  # decorations are fine
    assert isinstance(sent.type, api.types.auth.SentCodeTypeSms) and sent.type.length == 5
    code = pending_code(stack, number)
    assert len(code) == 5 and code.isdigit()

    def sign_in_with(c: str, h: str = sent.phone_code_hash) -> api.functions.auth.SignIn:
        return api.functions.auth.SignIn(phone_number=number, phone_code_hash=h, phone_code=c)

    wrong = str((int(code) + 1) % 100000).zfill(5)
    assert await device.error(sign_in_with("")) == (400, "PHONE_CODE_EMPTY")
    assert await device.error(sign_in_with(code, "")) == (400, "PHONE_CODE_HASH_EMPTY")
    assert await device.error(sign_in_with(wrong)) == (400, "PHONE_CODE_INVALID")
    signup = api.functions.auth.SignUp(phone_number=number, phone_code_hash=sent.phone_code_hash, first_name="X",
                                       last_name="")
    assert await device.error(signup) == (400, "PHONE_CODE_EXPIRED")  # signUp before signIn accepted the code

    newer = await device.call(send_code(number))  # a new code replaces the old one: its hash is expired
    assert await device.error(sign_in_with(code)) == (400, "PHONE_CODE_EXPIRED")
    code = pending_code(stack, number)
    wrong = str((int(code) + 1) % 100000).zfill(5)
    for _ in range(3):  # MTLAB_AUTH_CODE_ATTEMPTS=3 wrong guesses destroy the code...
        assert await device.error(sign_in_with(wrong, newer.phone_code_hash)) == (400, "PHONE_CODE_INVALID")
    # ...so even the right one no longer works
    assert await device.error(sign_in_with(code, newer.phone_code_hash)) == (400, "PHONE_CODE_EXPIRED")

    third = await device.call(send_code(number))
    code = pending_code(stack, number)
    ok = await device.call(sign_in_with(code, third.phone_code_hash))
    assert isinstance(ok, api.types.auth.AuthorizationSignUpRequired)
    too_long = api.functions.auth.SignUp(phone_number=number, phone_code_hash=third.phone_code_hash,
                                         first_name=" " * 3, last_name="")
    assert await device.error(too_long) == (400, "FIRSTNAME_INVALID")
    signup = api.functions.auth.SignUp(phone_number=number, phone_code_hash=third.phone_code_hash, first_name="X",
                                       last_name="")
    assert isinstance(await device.call(signup), api.types.auth.Authorization)

    # the number has an account now: the next verified code signs in instead of asking for a sign-up
    other = Device(client, ip())
    await other.store()
    fourth = await other.call(send_code(number))
    done = await other.call(sign_in_with(pending_code(stack, number), fourth.phone_code_hash))
    assert isinstance(done, api.types.auth.Authorization)  # an existing account signs in


async def test_codes_expire(stack: Any, client: RpcClient) -> None:
    device = Device(client, ip())
    await device.store()
    number = phone()
    sent = await device.call(send_code(number))
    r = redis_sync.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        key = codes.CODE_PREFIX + number
        assert CODE_TTL - 5 <= r.ttl(key) <= CODE_TTL  # the configured TTL is on the code
        r.pexpire(key, 1)  # ...and when Redis expires it, it is gone
        await anyio.sleep(0.05)
    finally:
        r.close()
    expired = api.functions.auth.SignIn(phone_number=number, phone_code_hash=sent.phone_code_hash,
                                        phone_code="11111")
    assert await device.error(expired) == (400, "PHONE_CODE_EXPIRED")


async def test_flood_limits_per_phone_and_per_address(stack: Any, client: RpcClient) -> None:
    device = Device(client, ip())
    number = phone()
    for _ in range(4):  # MTLAB_AUTH_CODES_PER_PHONE=4
        await device.call(send_code(number))
    code, message = await device.error(send_code(number))
    assert code == 420 and message.startswith("FLOOD_WAIT_")
    assert 0 < int(message.removeprefix("FLOOD_WAIT_")) <= 600  # the rest of the window
    await Device(client, ip()).call(send_code(phone()))  # other numbers are unaffected

    crowd = Device(client, ip())  # one address asking for many numbers: MTLAB_AUTH_CODES_PER_IP=6
    for _ in range(6):
        await crowd.call(send_code(phone()))
    assert (await crowd.error(send_code(phone())))[0] == 420
    assert stack.auth.metric("mtlab_auth_flood_waits_total", limit="phone") >= 1
    assert stack.auth.metric("mtlab_auth_flood_waits_total", limit="ip") >= 1


async def test_pending_codes_are_listed_for_mtlab_codes(stack: Any, client: RpcClient) -> None:
    number, code = fresh_test_number()
    await Device(client, ip()).call(send_code(number))
    r = redis_.connect(stack.redis_url)
    try:
        listed = {p.phone: p for p in await codes.pending(r)}
    finally:
        await r.aclose()
    assert listed[number].code == code and 0 < listed[number].expires_in <= CODE_TTL
    assert "your mtlab login code is " + code in stack.auth.log.read_text()  # the simulated SMS


# -- the process --------------------------------------------------------------------------------------------


async def test_health_metrics_and_malformed_queries(stack: Any, client: RpcClient) -> None:
    assert stack.auth.healthz() == 200
    device = Device(client, ip())
    with pytest.raises(RpcError) as caught:
        await client.call(api.functions.auth.SendCode.CONSTRUCTOR_ID.to_bytes(4, "little") + b"\x01",
                          context(auth_key_id=device.key_id))
    assert (caught.value.code, caught.value.message) == (400, "INPUT_FETCH_ERROR")
    with pytest.raises(RpcError) as caught:
        await client.call(api.functions.InvokeWithoutUpdates(query=api.functions.help.GetConfig()).to_bytes(),
                          context())
    assert caught.value.code == 400 and caught.value.message.startswith("INPUT_METHOD_INVALID")
    metrics = stack.auth.metrics()
    assert 'mtlab_auth_rpc_total{method="auth.sendCode",outcome="INPUT_FETCH_ERROR"}' in metrics
    assert "mtlab_db_txn_seconds_count" in metrics and 'txn="auth.store_key"' in metrics
    assert stack.auth.metric("mtlab_auth_key_watchers") >= 0


def _via(proxy: Proxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")))


def test_postgres_or_redis_down_fails_requests_cleanly_and_health_says_so(tmp_path: Path, databases: Any,
                                                                         redis_databases: Any) -> None:
    dsn, url = databases.create(), redis_databases.create()
    pg = Proxy("127.0.0.1", urlsplit(dsn).port or 5432)
    cache = Proxy("127.0.0.1", urlsplit(url).port or 6379)
    auth = start_auth(tmp_path, _via(pg, dsn), _via(cache, url))

    async def attempt(query: TLFunction[Any]) -> str:
        async with RpcClient("auth", "127.0.0.1", auth.rpc_port) as c:
            with anyio.fail_after(15):
                await c.wait_connected()
                try:
                    await c.call(query.to_bytes(), context(auth_key_id=1))
                except RpcError as exc:
                    return f"{exc.code} {exc.message}"
                return "ok"

    get_key, code = keys_fn.Get(auth_key_id=1), send_code(phone())
    try:
        assert auth.healthz() == 200
        pg.cut()
        assert auth.healthz() == 503
        assert anyio.run(attempt, get_key) == "500 STORAGE_UNAVAILABLE"  # a clean error, not a hang
        assert anyio.run(attempt, code) == "ok"  # sendCode needs only Redis
        pg.restore()
        assert anyio.run(attempt, get_key) == "ok"  # the pool replaced its dead connections
        assert auth.healthz() == 200

        cache.cut()
        assert auth.healthz() == 503
        assert anyio.run(attempt, code) == "500 STORAGE_UNAVAILABLE"
        assert anyio.run(attempt, get_key) == "ok"  # key lookups need only Postgres
        cache.restore()
        assert anyio.run(attempt, code) == "ok"
        assert auth.healthz() == 200
        assert "unhealthy: postgres DOWN" in auth.log.read_text()
    finally:
        auth.stop()
        pg.cut()
        cache.cut()


# -- usernames ------------------------------------------------------------------------------------------------


async def test_usernames_are_unique_without_regard_to_case(client: RpcClient) -> None:
    ada, bob = Device(client, ip()), Device(client, ip())
    await ada.store()
    await bob.store()
    await sign_up(ada, *fresh_test_number())
    await sign_up(bob, *fresh_test_number(), first_name="Bob")
    name = f"ada_{random.randrange(10**6)}"
    assert await ada.call(api.functions.account.CheckUsername(username=name)) is True
    me = await ada.call(api.functions.account.UpdateUsername(username=name))
    assert (me.username, me.self) == (name, True)
    assert await bob.call(api.functions.account.CheckUsername(username=name.upper())) is False
    assert await bob.error(api.functions.account.UpdateUsername(username=name.upper())) == (400, "USERNAME_OCCUPIED")
    assert await ada.error(api.functions.account.UpdateUsername(username=name)) == (400, "USERNAME_NOT_MODIFIED")
    for bad in ("ab", "1abcde", "abc__de", "abcde_", "a" * 33, "ab cd e"):
        assert await bob.error(api.functions.account.CheckUsername(username=bad)) == (400, "USERNAME_INVALID")
    [seen] = await bob.call(api.functions.users.GetUsers(id=[api.types.InputUser(user_id=me.id,
                                                                                access_hash=me.access_hash)]))
    assert seen.username == name
    cleared = await ada.call(api.functions.account.UpdateUsername(username=""))
    assert cleared.username is None
    assert await bob.call(api.functions.account.UpdateUsername(username=name.upper())) is not None  # free again
