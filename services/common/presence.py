"""Presence: who is online, and since when someone is not, kept in Redis only (it may be lost; nothing durable
depends on it).

``account.updateStatus`` (services/updates/presence.py) writes ``mtlab:presence:<user_id>`` as ``on:<expires>``
or ``off:<was_online>``. Online lapses by itself after ``ONLINE_FOR`` seconds (Telegram clients repeat
updateStatus while in the foreground); the key keeps ``off`` for ``REMEMBER_FOR``. Every service that renders
``user`` objects asks ``statuses`` for the status to put in them; with Redis away a user shows as seen
recently, never as an error.
"""

from __future__ import annotations

from collections.abc import Iterable

from mtproto.tl import api
from services.common.redis import Redis, RedisError

ONLINE_FOR = 300  # seconds an updateStatus(offline=false) counts for
REMEMBER_FOR = 30 * 86400


def _key(user_id: int) -> str:
    return f"mtlab:presence:{user_id}"


def status(value: str | None, now: int) -> api.types.TypeUserStatus:
    """The status a stored value means at ``now`` (None: never seen since Redis was empty)."""
    if value is None:
        return api.types.UserStatusRecently()
    kind, _, stamp = value.partition(":")
    when = int(stamp) if stamp.isdigit() else 0
    if kind == "on" and when > now:
        return api.types.UserStatusOnline(expires=when)
    if kind == "on":  # lapsed: last seen when it ran out
        return api.types.UserStatusOffline(was_online=when)
    return api.types.UserStatusOffline(was_online=when)


async def set_status(redis: Redis, user_id: int, *, online: bool, now: int) -> api.types.TypeUserStatus:
    value = f"on:{now + ONLINE_FOR}" if online else f"off:{now}"
    await redis.set(_key(user_id), value, ex=REMEMBER_FOR)
    return status(value, now)


async def statuses(redis: Redis | None, user_ids: Iterable[int], now: int) -> dict[int, api.types.TypeUserStatus]:
    """Each user's status; empty when Redis is not there (callers then show the default)."""
    ids = list(dict.fromkeys(user_ids))
    if redis is None or not ids:
        return {}
    try:
        values = await redis.mget([_key(i) for i in ids])
    except (RedisError, OSError):
        return {}
    return {i: status(v.decode() if isinstance(v, bytes) else v, now) for i, v in zip(ids, values, strict=True)}
