"""The ``keys.watch`` stream: telling every gateway at once that a key's sign-in state changed.

Gateways cache key records (the key, and whom it is signed in as). When a key signs in, logs out or is revoked,
each gateway must drop its copy before that key's next request, or a revoked device would keep working. So the
auth service pushes the key ids on ``keys.watch``, a stream every gateway keeps open (internal.tl):

- ``keys.resync`` first, the moment a subscription starts: whatever the gateway cached before may have missed
  changes, so it drops everything;
- ``keys.changed`` for each committed change, for as long as the gateway listens.

With several replicas of the auth service, a gateway listens to one of them while the change may be committed by
another, so every change is also published on the Redis channel ``mtlab:auth:key_changes`` and each replica
forwards what the others publish to its own watchers. The local watchers are told first, directly, before the
RPC that made the change answers: a gateway connected to this replica has dropped its copy before the client sees
the result. Redis pub/sub loses messages while a subscriber is disconnected, so after every (re)subscription a
replica sends ``keys.resync`` to its watchers; a watcher too slow to take its items is cut off, and its gateway
resubscribes (and resyncs). A missed message can cost a cache refill, never a stale authorization.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncGenerator
from contextlib import suppress

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from prometheus_client import Counter, Gauge

from mtproto.tl.internal.types import keys, rpc
from services.common.redis import Redis, RedisError

log = logging.getLogger("mtlab.auth.changes")

CHANNEL = "mtlab:auth:key_changes"

WATCHERS = Gauge("mtlab_auth_key_watchers", "Gateways subscribed to keys.watch on this replica")
PUSHED = Counter("mtlab_auth_key_changes_total", "Key sign-in changes pushed to watchers, by origin", ["origin"])
RESYNCS = Counter("mtlab_auth_key_resyncs_total", "keys.resync sent to watchers, by reason", ["reason"])


class KeyChanges:
    def __init__(self, redis: Redis, *, buffer: int = 4096) -> None:
        self.redis = redis
        self.buffer = buffer
        self.origin = os.urandom(8).hex()  # tells this replica's own messages apart on the shared channel
        self._watchers: set[MemoryObjectSendStream[bytes]] = set()
        self.subscribed = anyio.Event()  # set once the Redis subscription is up (tests wait for it)

    async def publish(self, key_ids: list[int]) -> None:
        """After a commit: tell this replica's watchers, then the other replicas (through Redis)."""
        self._fan_out(keys.Changed(key_ids=key_ids).to_bytes())
        PUSHED.labels("local").inc(len(key_ids))
        try:
            await self.redis.publish(CHANNEL, json.dumps({"origin": self.origin, "keys": key_ids}))
        except (RedisError, OSError) as exc:
            # The other replicas' subscriptions are down as well, so they resync when Redis is back.
            log.warning("could not publish key changes %s to other replicas: %s", key_ids, exc)

    def _fan_out(self, item: bytes) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait(item)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                # Too slow (or gone): end its stream; the gateway resubscribes and starts from a resync.
                log.warning("a keys.watch subscriber lags %d items behind: ending its stream", self.buffer)
                watcher.close()
                self._watchers.discard(watcher)

    def resync(self, reason: str) -> None:
        if self._watchers:
            RESYNCS.labels(reason).inc(len(self._watchers))
        self._fan_out(keys.Resync().to_bytes())

    async def watch(self, ctx: rpc.Context, query: bytes) -> AsyncGenerator[bytes, None]:
        """The keys.watch stream handler (services/common/rpc.py calls it for each subscriber)."""
        send, receive = anyio.create_memory_object_stream[bytes](self.buffer)
        self._watchers.add(send)
        WATCHERS.set(len(self._watchers))
        RESYNCS.labels("subscribe").inc()
        try:
            yield keys.Resync().to_bytes()
            async with receive:
                async for item in receive:
                    yield item
        finally:
            self._watchers.discard(send)
            send.close()
            WATCHERS.set(len(self._watchers))

    async def listen(self, *, retry: float = 1.0) -> None:
        """Forward the other replicas' changes to this one's watchers, until cancelled; survives Redis restarts."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.resync("redis_subscribed")  # anything published while we were not listening is lost
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        change = json.loads(message["data"])
                        origin, key_ids = str(change["origin"]), [int(k) for k in change["keys"]]
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignoring a malformed message on %s", CHANNEL)
                        continue
                    if origin != self.origin:
                        self._fan_out(keys.Changed(key_ids=key_ids).to_bytes())
                        PUSHED.labels("other_replica").inc(len(key_ids))
            except (RedisError, OSError) as exc:
                log.warning("key change subscription lost (%s); retrying in %.0f s", exc, retry)
            finally:
                if self.subscribed.is_set():
                    self.subscribed = anyio.Event()
                with anyio.CancelScope(shield=True), anyio.move_on_after(1), suppress(RedisError, OSError):
                    await pubsub.reset()  # aclose(), typed
            await anyio.sleep(retry)
