"""Redis for the services: one ``redis.asyncio`` client per process, from ``MTLAB_REDIS_URL``.

Redis holds what may be lost: login codes with their TTL, rate-limit counters, pub/sub notifications. Nothing
that must survive a restart lives only here (ARCHITECTURE.md). The client is a connection pool; commands fail
fast while Redis is away (a short socket timeout, no silent retry loop), so a request that needs Redis gets a
clean error instead of hanging, and the service's /healthz says Redis is the problem.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

__all__ = ["Redis", "RedisError", "connect", "ping"]


def connect(url: str, *, timeout: float = 2.0) -> Redis:
    """A client for ``url`` (``redis://host:port/db``); connections are made on first use."""
    # decode_responses: every value mtlab keeps in Redis is text (codes, hashes, counters, ids).
    # One quick retry only: it replaces a pooled connection that died with a restarted Redis; more would just
    # make a request wait longer for a Redis that is down.
    client: Redis = Redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                   socket_connect_timeout=timeout, health_check_interval=30,
                                   retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1))
    return client


async def ping(client: Redis) -> bool:
    """True when Redis answers now (the health check)."""
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
