"""Login codes and flood limits, kept in Redis (never in process memory: every replica must agree).

The "SMS" is simulated: ``issue`` makes a code, keeps it in Redis with a TTL and logs it on the ``mtlab.auth.sms``
logger, which stands in for the phone network; ``mtlab codes`` reads the same Redis entries (``pending``).
Telegram's test numbers work as on its test servers (core.telegram.org/api/auth#test-accounts): 99966XYYYY
always gets the code X repeated five times.

One Redis hash per phone number, ``mtlab:auth:code:<digits>``, expiring after ``code_ttl`` seconds::

    hash      the phone_code_hash auth.sendCode returned (a new sendCode replaces the entry, so an older hash
              is "expired")
    code      the digits
    attempts  wrong guesses so far; at ``code_attempts`` the entry is deleted
    verified  "1" once auth.signIn accepted the code for a number with no account: auth.signUp then needs
              only the hash (it carries no code), as Telegram's sign-up has since layer 104
    sent_at   unix time it was issued

The checks are Lua scripts: Redis runs each one atomically, so ten guesses sent at once still count as ten and
a guess can never slip in between reading the attempt counter and updating it.

Flood limits are fixed windows: ``mtlab:auth:flood:phone:<digits>`` and ``mtlab:auth:flood:ip:<addr>`` count
codes sent; the first request of a window sets its expiry. Over a limit the caller must wait until the window
ends: ``420 FLOOD_WAIT_<seconds>``.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from enum import Enum

from services.common.redis import Redis

sms = logging.getLogger("mtlab.auth.sms")

CODE_PREFIX = "mtlab:auth:code:"
FLOOD_PREFIX = "mtlab:auth:flood:"
TEST_NUMBER = re.compile(r"^99966(\d)\d{4}$")

_CHECK = """
-- KEYS[1]: the code entry. ARGV: the phone_code_hash, the code typed, the attempts allowed.
local entry = redis.call('HMGET', KEYS[1], 'hash', 'code')
if not entry[1] or entry[1] ~= ARGV[1] then return 'EXPIRED' end
if entry[2] == ARGV[2] then
    redis.call('HSET', KEYS[1], 'verified', '1')
    return 'OK'
end
if redis.call('HINCRBY', KEYS[1], 'attempts', 1) >= tonumber(ARGV[3]) then
    redis.call('DEL', KEYS[1])
end
return 'INVALID'
"""

_VERIFIED = """
-- KEYS[1]: the code entry. ARGV[1]: the phone_code_hash. Did auth.signIn accept this code?
local entry = redis.call('HMGET', KEYS[1], 'hash', 'verified')
if not entry[1] or entry[1] ~= ARGV[1] then return 'EXPIRED' end
if entry[2] ~= '1' then return 'UNVERIFIED' end
return 'OK'
"""

_CONSUME = """
-- KEYS[1]: the code entry. ARGV[1]: the phone_code_hash. Delete it, unless a newer code replaced it meanwhile.
if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_FLOOD = """
-- KEYS: one counter per limit. ARGV[1]: the window in seconds; ARGV[2..]: each counter's limit.
-- Returns {0, 0}, or {the exceeded limit's position (1-based), the seconds left in its window}.
for i, key in ipairs(KEYS) do
    local n = redis.call('INCR', key)
    if n == 1 then redis.call('EXPIRE', key, ARGV[1]) end
    if n > tonumber(ARGV[i + 1]) then
        local ttl = redis.call('TTL', key)
        if ttl < 1 then ttl = tonumber(ARGV[1]) end
        return {i, ttl}
    end
end
return {0, 0}
"""


class Check(Enum):
    OK = "OK"
    INVALID = "INVALID"  # wrong digits (the attempt was counted)
    EXPIRED = "EXPIRED"  # no code for this hash: never sent, expired, replaced, or destroyed after too many tries
    UNVERIFIED = "UNVERIFIED"  # auth.signUp before auth.signIn accepted the code


@dataclass(frozen=True)
class Pending:
    """A code waiting to be typed (what ``mtlab codes`` shows)."""

    phone: str
    code: str
    attempts: int
    expires_in: int


def code_for_test_number(phone: str) -> str | None:
    """The fixed code of a test number 99966XYYYY (X five times), None for any other number."""
    match = TEST_NUMBER.match(phone)
    return match.group(1) * 5 if match else None


class LoginCodes:
    def __init__(self, redis: Redis, *, ttl: int, attempts: int, length: int) -> None:
        self.redis = redis
        self.ttl, self.attempts, self.length = ttl, attempts, length
        self._check = redis.register_script(_CHECK)
        self._verified = redis.register_script(_VERIFIED)
        self._consume = redis.register_script(_CONSUME)
        self._flood = redis.register_script(_FLOOD)

    async def flood_wait(self, limits: list[tuple[str, int]], window: int) -> tuple[str, int] | None:
        """Count one more code against each (counter, limit): None, or (the counter exceeded, seconds to wait)."""
        keys = [FLOOD_PREFIX + name for name, _ in limits]
        position, wait = await self._flood(keys=keys, args=[window, *(limit for _, limit in limits)])
        return None if not position else (limits[int(position) - 1][0], int(wait))

    async def issue(self, phone: str, now: int) -> tuple[str, str]:
        """A new code for ``phone`` (replacing any pending one): (phone_code_hash, code)."""
        code = code_for_test_number(phone) or "".join(secrets.choice("0123456789") for _ in range(self.length))
        phone_code_hash = secrets.token_hex(8)
        key = CODE_PREFIX + phone
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"hash": phone_code_hash, "code": code, "attempts": 0, "verified": 0,
                                    "sent_at": now})
            pipe.expire(key, self.ttl)
            await pipe.execute()
        sms.info("SMS to +%s: your mtlab login code is %s (valid %d s)", phone, code, self.ttl)
        return phone_code_hash, code

    async def check(self, phone: str, phone_code_hash: str, code: str) -> Check:
        return Check(await self._check(keys=[CODE_PREFIX + phone], args=[phone_code_hash, code, self.attempts]))

    async def verified(self, phone: str, phone_code_hash: str) -> Check:
        return Check(await self._verified(keys=[CODE_PREFIX + phone], args=[phone_code_hash]))

    async def consume(self, phone: str, phone_code_hash: str) -> None:
        await self._consume(keys=[CODE_PREFIX + phone], args=[phone_code_hash])


async def pending(redis: Redis) -> list[Pending]:
    """Every code waiting to be typed, newest first: what ``mtlab codes`` prints."""
    found = []
    async for key in redis.scan_iter(match=CODE_PREFIX + "*", count=500):
        entry = await redis.hgetall(key)
        ttl = await redis.ttl(key)
        if entry and ttl > 0:
            found.append((int(entry.get("sent_at", 0)), Pending(str(key).removeprefix(CODE_PREFIX),
                                                                str(entry["code"]), int(entry.get("attempts", 0)),
                                                                ttl)))
    return [p for _, p in sorted(found, key=lambda item: -item[0])]
