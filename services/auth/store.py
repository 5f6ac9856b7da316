"""Every SQL statement of the auth service (tables: services/auth/migrations/*.sql).

Each function takes a connection that is already inside a named transaction (``services.common.db.run_txn``)
and does plain SQL on it; the handlers decide which functions make up one transaction. No ORM: what runs is what
a DBA student reads here, and ``pg_stat_statements`` shows the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from asyncpg import Record

from services.common.db import Connection
from services.common.users import UserRow


@dataclass(frozen=True)
class KeyRow:
    id: int
    auth_key: bytes
    handshake_salt: int
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    user_id: int | None  # None: not signed in (for a bound temporary key: its permanent key is not)
    perm_auth_key_id: int | None = None  # a temporary key bound to this permanent key (auth.bindTempAuthKey)


@dataclass(frozen=True)
class ClientRow:
    """What a device said about itself (initConnection) and where it connected from."""

    api_id: int = 0
    device_model: str = ""
    system_version: str = ""
    app_version: str = ""
    lang_code: str = ""
    ip: str = ""


@dataclass(frozen=True)
class AuthorizationRow:
    auth_key_id: int
    hash: int
    client: ClientRow
    created_at: datetime
    active_at: datetime


_KEY = ("SELECT id, auth_key, handshake_salt, created_at, expires_at, revoked_at, user_id, perm_auth_key_id "
        "FROM auth_key_records")


def _key(r: Record) -> KeyRow:
    return KeyRow(r["id"], bytes(r["auth_key"]), r["handshake_salt"], r["created_at"], r["expires_at"],
                  r["revoked_at"] is not None, r["user_id"], r["perm_auth_key_id"])


# -- auth keys ----------------------------------------------------------------------------------------------


async def insert_key(con: Connection, key_id: int, auth_key: bytes, handshake_salt: int,
                     expires_in: int | None) -> KeyRow:
    # ON CONFLICT: a gateway that timed out and stores the same key again gets the row it made the first time.
    await con.execute(
        "INSERT INTO auth_keys (id, auth_key, handshake_salt, expires_at) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT (id) DO NOTHING",
        key_id, auth_key, handshake_salt, expires_in)
    row = await con.fetchrow(_KEY + " WHERE id = $1", key_id)
    if row is None:  # cannot happen inside the transaction that just inserted it
        raise LookupError(f"auth key {key_id} vanished")
    return _key(row)


async def get_key(con: Connection, key_id: int) -> KeyRow | None:
    row = await con.fetchrow(_KEY + " WHERE id = $1", key_id)
    return None if row is None else _key(row)


@dataclass(frozen=True)
class Acting:
    """Which key's authorization a key acts with: its own, or its permanent key's when it is a bound temporary key."""

    key_id: int
    temporary: bool
    bound: bool


async def acting_key(con: Connection, key_id: int) -> Acting | None:
    """How ``key_id`` signs in (None: no such key). An unbound temporary key acts as itself, which callers refuse."""
    row = await con.fetchrow(
        "SELECT k.expires_at IS NOT NULL AS temporary, b.perm_auth_key_id FROM auth_keys k "
        "LEFT JOIN auth_key_bindings b ON b.temp_auth_key_id = k.id WHERE k.id = $1", key_id)
    if row is None:
        return None
    perm = row["perm_auth_key_id"]
    return Acting(int(perm) if perm is not None else key_id, bool(row["temporary"]), perm is not None)


async def with_bound_keys(con: Connection, key_ids: list[int]) -> list[int]:
    """``key_ids`` and the temporary keys bound to them: every key whose record changes with theirs."""
    bound = await con.fetch(
        "SELECT temp_auth_key_id FROM auth_key_bindings WHERE perm_auth_key_id = ANY($1::bigint[])", key_ids)
    return key_ids + [int(r["temp_auth_key_id"]) for r in bound if r["temp_auth_key_id"] not in key_ids]


async def signed_in_user(con: Connection, key_id: int) -> tuple[int | None, bool]:
    """(the user ``key_id`` is signed in as or None, whether its authorization was revoked); marks it active.

    ``active_at`` is written at most once a minute per device: a write on every request would turn each read
    into a row update (and a dead tuple for VACUUM) for a date shown to the minute anyway.
    """
    user_id = await con.fetchval(
        "UPDATE authorizations SET active_at = now() "
        "WHERE auth_key_id = $1 AND active_at < now() - interval '1 minute' RETURNING user_id", key_id)
    if user_id is None:
        row = await con.fetchrow("SELECT user_id, revoked_at FROM auth_key_records WHERE id = $1", key_id)
        if row is None:
            return None, False
        user_id = row["user_id"]
        return user_id, user_id is None and row["revoked_at"] is not None
    return int(user_id), False


# -- temporary keys bound to permanent ones (PFS) -------------------------------------------------------------


async def lock_keys(con: Connection, key_ids: list[int]) -> None:
    """Lock the rows of ``key_ids`` until the transaction ends, always in id order (two binders never deadlock):
    concurrent bindings of the same temporary or permanent key then run one after the other."""
    await con.execute("SELECT id FROM auth_keys WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", key_ids)


async def bound_to(con: Connection, temp_key_id: int) -> int | None:
    """The permanent key ``temp_key_id`` is bound to, or None."""
    perm = await con.fetchval("SELECT perm_auth_key_id FROM auth_key_bindings WHERE temp_auth_key_id = $1",
                              temp_key_id)
    return None if perm is None else int(perm)


async def bind(con: Connection, temp_key_id: int, perm_key_id: int, nonce: int, expires_at: int) -> list[int]:
    """Bind ``temp_key_id`` to ``perm_key_id`` until ``expires_at`` (unix time) at the latest.

    Returns the temporary keys this unbinds: a permanent key has one temporary key at a time, and a new binding
    replaces the old one. The temporary key's own expiry moves to ``expires_at`` if that comes first
    (bind_auth_key_inner's expires_at is "the timestamp to invalidate the temporary key").
    """
    replaced = await con.fetch(
        "DELETE FROM auth_key_bindings WHERE perm_auth_key_id = $2 AND temp_auth_key_id <> $1 "
        "RETURNING temp_auth_key_id", temp_key_id, perm_key_id)
    await con.execute(
        "INSERT INTO auth_key_bindings (temp_auth_key_id, perm_auth_key_id, nonce) VALUES ($1, $2, $3) "
        "ON CONFLICT (temp_auth_key_id) DO UPDATE SET nonce = excluded.nonce, bound_at = now()",
        temp_key_id, perm_key_id, nonce)
    await con.execute("UPDATE auth_keys SET expires_at = least(expires_at, to_timestamp($2)) WHERE id = $1",
                      temp_key_id, expires_at)
    return [int(r["temp_auth_key_id"]) for r in replaced]


# -- users --------------------------------------------------------------------------------------------------


# Reading users (by id, by phone) and showing them is services/common/users.py, shared with the message service.


async def create_user(con: Connection, phone: str, first_name: str, last_name: str, access_hash: int) -> UserRow:
    """A new user with ``phone``; raises asyncpg.UniqueViolationError when the number is taken."""
    user_id = await con.fetchval(
        "INSERT INTO users (access_hash, first_name, last_name) VALUES ($1, $2, $3) RETURNING id",
        access_hash, first_name, last_name)
    await con.execute("INSERT INTO phones (phone, user_id) VALUES ($1, $2)", phone, user_id)
    return UserRow(int(user_id), access_hash, first_name, last_name, phone)


# -- authorizations -----------------------------------------------------------------------------------------


async def sign_in(con: Connection, key_id: int, user_id: int, hash_: int, client: ClientRow) -> None:
    """Sign ``key_id`` in as ``user_id`` (replacing whoever it was signed in as) and clear a revocation."""
    await con.execute(
        "INSERT INTO authorizations (auth_key_id, user_id, hash, api_id, device_model, system_version, "
        "app_version, lang_code, ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (auth_key_id) DO UPDATE SET user_id = excluded.user_id, hash = excluded.hash, "
        "api_id = excluded.api_id, device_model = excluded.device_model, system_version = excluded.system_version, "
        "app_version = excluded.app_version, lang_code = excluded.lang_code, ip = excluded.ip, "
        "created_at = now(), active_at = now()",
        key_id, user_id, hash_, client.api_id, client.device_model, client.system_version, client.app_version,
        client.lang_code, client.ip)
    await con.execute("UPDATE auth_keys SET revoked_at = NULL WHERE id = $1 AND revoked_at IS NOT NULL", key_id)


async def log_out(con: Connection, key_id: int) -> bool:
    """Delete the key's authorization; False when it was not signed in."""
    return await con.fetchval("DELETE FROM authorizations WHERE auth_key_id = $1 RETURNING true", key_id) is not None


async def authorizations(con: Connection, user_id: int) -> list[AuthorizationRow]:
    rows = await con.fetch(
        "SELECT auth_key_id, hash, api_id, device_model, system_version, app_version, lang_code, ip, created_at, "
        "active_at FROM authorizations WHERE user_id = $1 ORDER BY active_at DESC", user_id)
    return [AuthorizationRow(r["auth_key_id"], r["hash"], ClientRow(
        r["api_id"], r["device_model"], r["system_version"], r["app_version"], r["lang_code"], r["ip"]),
        r["created_at"], r["active_at"]) for r in rows]


async def revoke(con: Connection, user_id: int, hash_: int, *, keep: int) -> int | None:
    """End the authorization ``hash_`` of ``user_id``: the revoked key id, or None. Never the key ``keep`` (the
    caller's own, which ends its session with auth.logOut)."""
    key_id = await con.fetchval(
        "DELETE FROM authorizations WHERE user_id = $1 AND hash = $2 AND auth_key_id <> $3 RETURNING auth_key_id",
        user_id, hash_, keep)
    if key_id is None:
        return None
    await con.execute("UPDATE auth_keys SET revoked_at = now() WHERE id = $1", key_id)
    return int(key_id)


# -- usernames ----------------------------------------------------------------------------------------------


async def username_owner(con: Connection, username: str) -> int | None:
    """Who has ``username`` (compared without regard to case), if anybody."""
    value = await con.fetchval("SELECT id FROM users WHERE lower(username) = lower($1)", username)
    return int(value) if value is not None else None


async def set_username(con: Connection, user_id: int, username: str | None) -> None:
    """Raises asyncpg.UniqueViolationError when somebody else took it first."""
    await con.execute("UPDATE users SET username = $2 WHERE id = $1", user_id, username)
