"""One function per RPC method the auth service answers (core.telegram.org/api/auth, /method/account.*).

Each takes the service's dependencies (``Auth``), the caller's ``rpc.Context`` (its auth key, session, client
info) and the decoded query, and returns a TL object or raises ``RpcError`` with Telegram's error name. SQL lives
in ``store.py``; login codes and flood limits in ``codes.py``; each database step is one named transaction.

Who the caller is comes from the database, by the context's auth key id, not from the context's user id: this
service owns that fact, so a gateway whose cache is a moment stale cannot act for a revoked device here.

Temporary keys (core.telegram.org/api/pfs): a temporary key bound to a permanent one with auth.bindTempAuthKey
*acts as* that permanent key. The authorization belongs to the permanent key, so signing in, signing up, logging
out, listing and revoking authorizations through the temporary key all read and change the permanent key's, and
every change is announced for the permanent key and the temporary keys bound to it (``store.with_bound_keys``). A
temporary key that is not bound may not sign in at all: 401 AUTH_KEY_PERM_EMPTY (the gateway refuses the other
methods at its edge).

Errors (400 unless noted): PHONE_NUMBER_INVALID, PHONE_CODE_EMPTY, PHONE_CODE_HASH_EMPTY, PHONE_CODE_INVALID
(wrong digits, the attempt counted), PHONE_CODE_EXPIRED (no such code: expired, replaced by a newer sendCode,
destroyed after too many wrong tries, or a signUp whose code signIn never accepted), PHONE_NUMBER_OCCUPIED,
FIRSTNAME_INVALID, LASTNAME_INVALID, USER_ID_INVALID, HASH_INVALID, ENCRYPTED_MESSAGE_INVALID, EXPIRES_AT_INVALID,
TEMP_AUTH_KEY_EMPTY, TEMP_AUTH_KEY_ALREADY_BOUND, 401 AUTH_KEY_UNREGISTERED, 401 SESSION_REVOKED, 401
AUTH_KEY_PERM_EMPTY, 420 FLOOD_WAIT_<seconds>.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Counter

from mtproto import pfs
from mtproto.crypto import kdf
from mtproto.session import AuthKey
from mtproto.tl import api
from mtproto.tl.internal.functions import keys as keys_fn
from mtproto.tl.internal.types import keys, rpc
from mtproto.tl.runtime import TLFunction, TLObject
from services.auth import dc, store
from services.auth.changes import KeyChanges
from services.auth.codes import Check, LoginCodes
from services.common import db, presence, users
from services.common.config import AuthConfig
from services.common.redis import Redis
from services.common.rpc import RpcError

log = logging.getLogger("mtlab.auth")

T = TypeVar("T")

CODES_SENT = Counter("mtlab_auth_login_codes_sent_total", "Login codes issued (the simulated SMS)", ["kind"])
SIGN_INS = Counter("mtlab_auth_sign_in_total", "auth.signIn and auth.signUp by outcome", ["method", "outcome"])
FLOODS = Counter("mtlab_auth_flood_waits_total", "auth.sendCode refused with FLOOD_WAIT, by limit (phone, ip)",
                 ["limit"])
KEY_LOOKUPS = Counter("mtlab_auth_key_lookups_total", "keys.get by result", ["result"])
REVOCATIONS = Counter("mtlab_auth_revocations_total", "Authorizations ended, by how", ["how"])

_PHONE = re.compile(r"[0-9]{5,15}")
_PHONE_DECORATION = re.compile(r"[\s()+\-.]")


@dataclass
class Auth:
    """What the handlers need, injected by server.py (the clock too, so a test can move time)."""

    config: AuthConfig
    pool: db.Pool
    codes: LoginCodes
    changes: KeyChanges
    clock: Callable[[], float] = field(default=time.time)
    redis: Redis | None = None  # presence (user statuses), when the process has Redis

    def now(self) -> int:
        return int(self.clock())

    async def txn(self, name: str, fn: Callable[[db.Connection], Awaitable[T]]) -> T:
        return await db.run_txn(self.pool, f"auth.{name}", fn, retries=self.config.txn_retries)


# -- helpers ------------------------------------------------------------------------------------------------


def _phone(raw: str) -> str:
    """The number as digits only (E.164 without '+'); spaces, dashes, dots and brackets are allowed around them."""
    digits = _PHONE_DECORATION.sub("", raw)
    if not _PHONE.fullmatch(digits):
        raise RpcError(400, "PHONE_NUMBER_INVALID")
    return digits


def _masked(phone: str) -> str:
    return f"+{phone[:3]}{'*' * (len(phone) - 5)}{phone[-2:]}"


def _client(ctx: rpc.Context) -> store.ClientRow:
    c = ctx.client
    if c is None:
        return store.ClientRow()
    return store.ClientRow(c.api_id, c.device_model[:128], c.system_version[:128], c.app_version[:128],
                           c.lang_code[:16], c.ip[:64])


def _new_hash() -> int:
    """A random non-zero authorization hash (0 means "the current session" on the wire)."""
    return secrets.randbits(63) + 1


def _hex(key_id: int) -> str:
    """An auth key id as the logs and the gateway print it (the 8 bytes as an unsigned hex number)."""
    return f"{key_id & (2**64 - 1):016x}"


async def _acting(con: db.Connection, ctx: rpc.Context) -> int:
    """The key whose authorization the caller's key acts with: its own, or its permanent key's once bound."""
    acting = await store.acting_key(con, ctx.auth_key_id)
    if acting is None:
        raise RpcError(401, "AUTH_KEY_UNREGISTERED")
    if acting.temporary and not acting.bound:
        raise RpcError(401, "AUTH_KEY_PERM_EMPTY")  # core.telegram.org/api/pfs: bind it first
    return acting.key_id


async def _signed_in(con: db.Connection, ctx: rpc.Context) -> tuple[int, int]:
    """(the acting key, the user it is signed in as), or the 401 Telegram gives (core.telegram.org/api/errors#401)."""
    key = await _acting(con, ctx)
    user_id, revoked = await store.signed_in_user(con, key)
    if user_id is None:
        raise RpcError(401, "SESSION_REVOKED" if revoked else "AUTH_KEY_UNREGISTERED")
    return key, user_id


async def _me(con: db.Connection, ctx: rpc.Context) -> int:
    """The user the caller's key is signed in as, or the 401."""
    return (await _signed_in(con, ctx))[1]


def _record(row: store.KeyRow) -> keys.KeyRecord:
    return keys.KeyRecord(
        auth_key_id=row.id, auth_key=row.auth_key, handshake_salt=row.handshake_salt,
        created=int(row.created_at.timestamp()),
        expires=int(row.expires_at.timestamp()) if row.expires_at is not None else None,
        user_id=row.user_id, revoked=row.revoked and row.user_id is None, perm_auth_key_id=row.perm_auth_key_id,
    )


# -- internal: auth keys for the gateways -------------------------------------------------------------------


async def store_key(auth: Auth, ctx: rpc.Context, q: keys_fn.Store) -> keys.KeyRecord:
    if len(q.auth_key) != 256:
        raise RpcError(400, "AUTH_KEY_INVALID")
    key_id = int.from_bytes(kdf.auth_key_id(q.auth_key), "little", signed=True)  # derived, not taken on trust
    row = await auth.txn("store_key", lambda con: store.insert_key(con, key_id, q.auth_key, q.handshake_salt,
                                                                     q.expires_in))
    return _record(row)


async def get_key(auth: Auth, ctx: rpc.Context, q: keys_fn.Get) -> keys.TypeKeyRecord:
    row = await auth.txn("get_key", lambda con: store.get_key(con, q.auth_key_id))
    KEY_LOOKUPS.labels("found" if row is not None else "missing").inc()
    return _record(row) if row is not None else keys.NoKey(auth_key_id=q.auth_key_id)


# -- auth.* -------------------------------------------------------------------------------------------------


async def send_code(auth: Auth, ctx: rpc.Context, q: api.functions.auth.SendCode) -> api.types.auth.SentCode:
    phone = _phone(q.phone_number)
    cfg = auth.config
    # Per number (someone pestering one phone) and per client address (one client pestering many numbers);
    # without a gateway-reported address, the auth key stands in for it.
    origin = ctx.client.ip if ctx.client is not None and ctx.client.ip else f"key{ctx.auth_key_id}"
    limits = [(f"phone:{phone}", cfg.codes_per_phone), (f"ip:{origin}", cfg.codes_per_ip)]
    flood = await auth.codes.flood_wait(limits, cfg.flood_window)
    if flood is not None:
        counter, wait = flood
        FLOODS.labels(counter.split(":", 1)[0]).inc()
        log.info("sendCode for %s refused: FLOOD_WAIT_%d (%s)", _masked(phone), wait, counter.split(":", 1)[0])
        raise RpcError(420, f"FLOOD_WAIT_{wait}")
    phone_code_hash, code = await auth.codes.issue(phone, auth.now())
    CODES_SENT.labels("test_number" if phone.startswith("99966") else "sms").inc()
    return api.types.auth.SentCode(type=api.types.auth.SentCodeTypeSms(length=len(code)),
                                   phone_code_hash=phone_code_hash)


async def sign_in(auth: Auth, ctx: rpc.Context, q: api.functions.auth.SignIn) -> api.types.auth.TypeAuthorization:
    phone = _phone(q.phone_number)
    if not q.phone_code_hash:
        raise RpcError(400, "PHONE_CODE_HASH_EMPTY")
    if not q.phone_code:
        raise RpcError(400, "PHONE_CODE_EMPTY")
    checked = await auth.codes.check(phone, q.phone_code_hash, q.phone_code)
    if checked is not Check.OK:
        error = "PHONE_CODE_INVALID" if checked is Check.INVALID else "PHONE_CODE_EXPIRED"
        SIGN_INS.labels("signIn", error).inc()
        log.info("signIn for %s: %s", _masked(phone), error)
        raise RpcError(400, error)
    hash_ = _new_hash()

    async def txn(con: db.Connection) -> tuple[users.UserRow | None, list[int]]:
        key = await _acting(con, ctx)
        user = (await users.by_phone(con, [phone])).get(phone)
        if user is None:
            return None, []
        await store.sign_in(con, key, user.id, hash_, _client(ctx))
        return user, await store.with_bound_keys(con, [key])

    user, changed = await _signing_in(auth.txn("sign_in", txn))
    if user is None:
        # The code was right but the number has no account: auth.signUp with the same hash finishes (the code
        # entry stays, marked verified).
        SIGN_INS.labels("signIn", "sign_up_required").inc()
        return api.types.auth.AuthorizationSignUpRequired()
    await auth.codes.consume(phone, q.phone_code_hash)
    await auth.changes.publish(changed)
    SIGN_INS.labels("signIn", "ok").inc()
    log.info("user %d signed in on key %016x (%s)", user.id, ctx.auth_key_id & (2**64 - 1), _client(ctx).device_model)
    return api.types.auth.Authorization(user=users.render(user, viewer=user.id))


async def sign_up(auth: Auth, ctx: rpc.Context, q: api.functions.auth.SignUp) -> api.types.auth.TypeAuthorization:
    phone = _phone(q.phone_number)
    first_name, last_name = q.first_name.strip(), q.last_name.strip()
    if not first_name or len(first_name) > 64:
        raise RpcError(400, "FIRSTNAME_INVALID")
    if len(last_name) > 64:
        raise RpcError(400, "LASTNAME_INVALID")
    if not q.phone_code_hash:
        raise RpcError(400, "PHONE_CODE_HASH_EMPTY")
    if await auth.codes.verified(phone, q.phone_code_hash) is not Check.OK:
        SIGN_INS.labels("signUp", "PHONE_CODE_EXPIRED").inc()
        raise RpcError(400, "PHONE_CODE_EXPIRED")
    access_hash, hash_ = secrets.randbits(63), _new_hash()

    async def txn(con: db.Connection) -> tuple[users.UserRow, list[int]]:
        key = await _acting(con, ctx)
        if (await users.by_phone(con, [phone])).get(phone) is not None:
            raise RpcError(400, "PHONE_NUMBER_OCCUPIED")
        user = await store.create_user(con, phone, first_name, last_name, access_hash)
        await store.sign_in(con, key, user.id, hash_, _client(ctx))
        return user, await store.with_bound_keys(con, [key])

    try:
        user, changed = await _signing_in(auth.txn("sign_up", txn))
    except asyncpg.UniqueViolationError:  # another signUp for the number committed between our check and insert
        raise RpcError(400, "PHONE_NUMBER_OCCUPIED") from None
    await auth.codes.consume(phone, q.phone_code_hash)
    await auth.changes.publish(changed)
    SIGN_INS.labels("signUp", "ok").inc()
    log.info("user %d signed up with %s on key %016x", user.id, _masked(phone), ctx.auth_key_id & (2**64 - 1))
    return api.types.auth.Authorization(user=users.render(user, viewer=user.id))


async def _signing_in(txn: Awaitable[T]) -> T:
    try:
        return await txn
    except asyncpg.ForeignKeyViolationError:  # the context names a key this service never stored
        raise RpcError(401, "AUTH_KEY_UNREGISTERED") from None


async def log_out(auth: Auth, ctx: rpc.Context, q: api.functions.auth.LogOut) -> api.types.auth.LoggedOut:
    async def txn(con: db.Connection) -> list[int] | None:
        key = await _acting(con, ctx)
        return await store.with_bound_keys(con, [key]) if await store.log_out(con, key) else None

    changed = await auth.txn("log_out", txn)
    if changed is None:
        raise RpcError(401, "AUTH_KEY_UNREGISTERED")
    await auth.changes.publish(changed)
    REVOCATIONS.labels("log_out").inc()
    return api.types.auth.LoggedOut()


def _invalid_binding(ctx: rpc.Context, reason: str) -> RpcError:
    # One answer for every cause, as for a message that does not decrypt; the reason goes to the log only.
    log.info("bindTempAuthKey from key %s refused: ENCRYPTED_MESSAGE_INVALID (%s)", _hex(ctx.auth_key_id), reason)
    return RpcError(400, "ENCRYPTED_MESSAGE_INVALID")


async def bind_temp_auth_key(auth: Auth, ctx: rpc.Context, q: api.functions.auth.BindTempAuthKey) -> bool:
    """auth.bindTempAuthKey (core.telegram.org/api/pfs): from now on the calling temporary key acts as the
    permanent key named, whose holder proved itself with the binding message (``mtproto.pfs``)."""
    now = auth.now()

    async def txn(con: db.Connection) -> list[int]:
        await store.lock_keys(con, [ctx.auth_key_id, q.perm_auth_key_id])
        temp = await store.get_key(con, ctx.auth_key_id)
        if temp is None or temp.expires_at is None:
            raise RpcError(400, "TEMP_AUTH_KEY_EMPTY")  # called over a permanent key
        perm = await store.get_key(con, q.perm_auth_key_id)
        # A permanent key this server does not have gets ENCRYPTED_MESSAGE_INVALID: that is the answer after
        # which core.telegram.org/api/pfs tells clients to drop both keys and make new ones.
        if perm is None or perm.expires_at is not None:
            raise _invalid_binding(ctx, "no such permanent key" if perm is None else "the key named is temporary")
        if ctx.msg_id is None:
            raise _invalid_binding(ctx, "the gateway did not say which message carried the call")
        try:
            pfs.open_bind_message(AuthKey.from_bytes(perm.auth_key), q, temp_auth_key_id=temp.id,
                                  temp_session_id=ctx.session_id, msg_id=ctx.msg_id)
        except pfs.BindMessageInvalid as exc:
            raise _invalid_binding(ctx, exc.reason) from None
        if q.expires_at <= now:
            raise RpcError(400, "EXPIRES_AT_INVALID")
        bound = await store.bound_to(con, temp.id)
        if bound is not None and bound != perm.id:
            raise RpcError(400, "TEMP_AUTH_KEY_ALREADY_BOUND")
        # Binding the same pair again (a client whose answer was lost tries again) is accepted, as the spec's
        # error says "already bound to *another* perm_auth_key_id".
        replaced = await store.bind(con, temp.id, perm.id, q.nonce, q.expires_at)
        return [temp.id, *replaced]

    changed = await auth.txn("bind_temp_auth_key", txn)
    await auth.changes.publish(changed)
    log.info("temporary key %s bound to key %s until %d%s", _hex(ctx.auth_key_id), _hex(q.perm_auth_key_id),
             q.expires_at, f"; unbound {', '.join(map(_hex, changed[1:]))}" if changed[1:] else "")
    return True


# -- account.* ----------------------------------------------------------------------------------------------


async def get_authorizations(auth: Auth, ctx: rpc.Context,
                             q: api.functions.account.GetAuthorizations) -> api.types.account.Authorizations:
    async def txn(con: db.Connection) -> tuple[int, list[store.AuthorizationRow]]:
        key, me = await _signed_in(con, ctx)
        return key, await store.authorizations(con, me)

    key, rows = await auth.txn("get_authorizations", txn)
    listed = []
    for row in rows:
        current = row.auth_key_id == key  # a bound temporary key's authorization is its permanent key's
        c = row.client
        listed.append(api.types.Authorization(
            current=current, hash=0 if current else row.hash, device_model=c.device_model, platform="",
            system_version=c.system_version, api_id=c.api_id, app_name=f"api_id {c.api_id}",
            app_version=c.app_version, date_created=int(row.created_at.timestamp()),
            date_active=int(row.active_at.timestamp()), ip=c.ip, country="", region=""))
    return api.types.account.Authorizations(authorization_ttl_days=auth.config.authorization_ttl_days,
                                            authorizations=listed)


async def reset_authorization(auth: Auth, ctx: rpc.Context, q: api.functions.account.ResetAuthorization) -> bool:
    if q.hash == 0:  # 0 is the caller's own session, which ends with auth.logOut instead
        raise RpcError(400, "HASH_INVALID")

    async def txn(con: db.Connection) -> list[int] | None:
        key, me = await _signed_in(con, ctx)
        revoked = await store.revoke(con, me, q.hash, keep=key)
        return None if revoked is None else await store.with_bound_keys(con, [revoked])

    changed = await auth.txn("reset_authorization", txn)
    if changed is None:
        raise RpcError(400, "HASH_INVALID")
    await auth.changes.publish(changed)
    REVOCATIONS.labels("reset_authorization").inc()
    log.info("key %s revoked by key %s", _hex(changed[0]), _hex(ctx.auth_key_id))
    return True


# -- users.* ------------------------------------------------------------------------------------------------


async def _resolve(auth: Auth, ctx: rpc.Context, wanted: list[api.types.TypeInputUser],
                   name: str) -> tuple[int, list[users.UserRow | None]]:
    """The caller's id and, for each input user, the user it names (None: unknown, or a wrong access_hash)."""

    async def txn(con: db.Connection) -> tuple[int, dict[int, users.UserRow]]:
        me = await _me(con, ctx)
        ids = {me} | {u.user_id for u in wanted if isinstance(u, api.types.InputUser)}
        return me, await users.by_id(con, ids)

    me, rows = await auth.txn(name, txn)
    found: list[users.UserRow | None] = []
    for u in wanted:
        if isinstance(u, api.types.InputUserSelf):
            found.append(rows.get(me))
        elif isinstance(u, api.types.InputUser):
            row = rows.get(u.user_id)
            # Knowing the access_hash is what proves a client was shown this user (core.telegram.org/api/peers).
            found.append(row if row is not None and (row.id == me or row.access_hash == u.access_hash) else None)
        else:  # inputUserEmpty, inputUserFromMessage (no messages exist yet)
            found.append(None)
    return me, found


async def get_users(auth: Auth, ctx: rpc.Context, q: api.functions.users.GetUsers) -> list[api.types.TypeUser]:
    if len(q.id) > 200:
        raise RpcError(400, "LIMIT_INVALID")
    me, rows = await _resolve(auth, ctx, q.id, "get_users")
    # Telegram leaves out the users it cannot show rather than failing the whole call.
    seen = await presence.statuses(auth.redis, (row.id for row in rows if row is not None), auth.now())
    return [users.render(row, viewer=me, status=seen.get(row.id)) for row in rows if row is not None]


#: Telegram's username rule: 5-32 characters, a letter first, letters, digits and single underscores, and no
#: underscore at the end (migrations/003_usernames.sql checks the same in Postgres).
_USERNAME = re.compile(r"[A-Za-z](?!.*__)[A-Za-z0-9_]{3,30}[A-Za-z0-9]")


def _username(raw: str) -> str:
    name = raw.removeprefix("@")
    if not _USERNAME.fullmatch(name):
        raise RpcError(400, "USERNAME_INVALID")
    return name


async def update_username(auth: Auth, ctx: rpc.Context, q: api.functions.account.UpdateUsername) -> api.types.User:
    """Set (or, with an empty string, remove) the caller's public username; the answer is the caller's user."""
    name = _username(q.username) if q.username else None

    async def txn(con: db.Connection) -> users.UserRow:
        me = await _me(con, ctx)
        row = (await users.by_id(con, [me]))[me]
        if row.username == name:
            raise RpcError(400, "USERNAME_NOT_MODIFIED")
        owner = await store.username_owner(con, name) if name else None
        if owner is not None and owner != me:
            raise RpcError(400, "USERNAME_OCCUPIED")
        try:
            await store.set_username(con, me, name)
        except asyncpg.UniqueViolationError:  # taken between the check and the update
            raise RpcError(400, "USERNAME_OCCUPIED") from None
        return (await users.by_id(con, [me]))[me]

    row = await auth.txn("update_username", txn)
    return users.render(row, viewer=row.id)


async def check_username(auth: Auth, ctx: rpc.Context, q: api.functions.account.CheckUsername) -> bool:
    """True when the name is valid and free (or the caller's own); 400 USERNAME_INVALID when it is malformed."""
    name = _username(q.username)

    async def txn(con: db.Connection) -> bool:
        me = await _me(con, ctx)
        return await store.username_owner(con, name) in (None, me)

    return await auth.txn("check_username", txn)


async def get_full_user(auth: Auth, ctx: rpc.Context, q: api.functions.users.GetFullUser) -> api.types.users.UserFull:
    me, [row] = await _resolve(auth, ctx, [q.id], "get_full_user")
    if row is None:
        raise RpcError(400, "USER_ID_INVALID")
    full = api.types.UserFull(id=row.id, settings=api.types.PeerSettings(),
                              notify_settings=api.types.PeerNotifySettings(), common_chats_count=0)
    seen = await presence.statuses(auth.redis, [row.id], auth.now())
    return api.types.users.UserFull(full_user=full, chats=[], users=[users.render(row, viewer=me,
                                                                                  status=seen.get(row.id))])


# -- help.*, updates.* --------------------------------------------------------------------------------------


async def get_config(auth: Auth, ctx: rpc.Context, q: api.functions.help.GetConfig) -> api.types.Config:
    cfg = auth.config
    return dc.config(cfg.dc_id, cfg.dc_host, cfg.dc_port, auth.now())


async def get_state(auth: Auth, ctx: rpc.Context, q: api.functions.updates.GetState) -> api.types.updates.State:
    # No update log exists yet (the messages and updates services come later): every box is at its start.
    await auth.txn("get_state", lambda con: _me(con, ctx))
    return api.types.updates.State(pts=0, qts=0, date=auth.now(), seq=0, unread_count=0)


async def get_difference(auth: Auth, ctx: rpc.Context,
                         q: api.functions.updates.GetDifference) -> api.types.updates.DifferenceEmpty:
    # Stock clients call this right after signing in (Telethon's sign_in does); nothing has happened yet.
    await auth.txn("get_difference", lambda con: _me(con, ctx))
    return api.types.updates.DifferenceEmpty(date=auth.now(), seq=0)


#: The methods this service answers, by the TL function class whose bytes arrive.
METHODS: dict[type[TLFunction[Any]], Callable[[Auth, rpc.Context, Any], Awaitable[TLObject | list[Any] | bool]]] = {
    keys_fn.Store: store_key,
    keys_fn.Get: get_key,
    api.functions.auth.SendCode: send_code,
    api.functions.auth.SignIn: sign_in,
    api.functions.auth.SignUp: sign_up,
    api.functions.auth.LogOut: log_out,
    api.functions.auth.BindTempAuthKey: bind_temp_auth_key,
    api.functions.account.GetAuthorizations: get_authorizations,
    api.functions.account.ResetAuthorization: reset_authorization,
    api.functions.account.UpdateUsername: update_username,
    api.functions.account.CheckUsername: check_username,
    api.functions.users.GetUsers: get_users,
    api.functions.users.GetFullUser: get_full_user,
    api.functions.help.GetConfig: get_config,
    api.functions.updates.GetState: get_state,
    api.functions.updates.GetDifference: get_difference,
}
