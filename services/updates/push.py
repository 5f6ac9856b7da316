"""Live push: from the notes the message service publishes on Redis to the gateways holding each user's sessions.

The durable logs are the truth (``update_log`` per user, ``channel_update_log`` per channel); a push is a hint
that saves the client a round trip, and everything here may be lost without losing an update: a client that
misses one sees a pts gap and asks ``updates.getDifference``.

How it fits together::

    message service --commit--> Redis  mtlab:updates:<user>   push.logged(pts) | push.direct(update)
                                       mtlab:channel:<id>     push.logged(pts)
    updates service: Notes (one subscription) -> Pusher (reads the logs, builds Updates) -> Registry
    gateway --push.attach (a stream)--> push.deliver(user_ids, updates) --> encrypts for every session

- ``Registry``: which gateway holds sessions of which user. A gateway opens one ``push.attach`` stream and then
  registers users with ``push.online`` / ``push.offline``; when its stream ends (the gateway died, the
  connection broke), every registration it made is forgotten at once: nothing stale stays behind.
- ``Pusher``: for each online user the pts pushed so far. A note marks the user dirty; workers read what the
  log holds after that pts, many users per query (one per logical shard), and push it in pts order, one user at
  a time per worker, so a user's pushes never overtake each other. A user seen for the first time (pts unknown)
  gets no push: the current pts is read instead, and the client's own getState/getDifference covers the past.
  A gateway that registers again after this service restarted names the pts it last delivered, so what
  happened in between is pushed, not skipped.
- A channel's note names its pts; its new log rows are read once and sent to each gateway once with the list of
  its online members there, so a post to 10,000 online subscribers is one log read, one member read and one
  frame per gateway, and no per-subscriber row anywhere.
- ``push.direct`` notes (typing, presence, secret chats' qts updates) are relayed as they are in an
  ``updateShort``, to all of the user's devices or to one auth key's sessions.
- When the Redis subscription breaks, notes published meanwhile are lost: once it is back every online user is
  marked dirty, so whatever their logs gained is pushed anyway.

Shapes (core.telegram.org/api/updates): a single new text message in a private chat goes as
``updateShortMessage``, in a basic group as ``updateShortChatMessage``; anything else as ``updates`` (one log row)
or ``updatesCombined`` (several rows read together), with the users and chats it names. mtlab sets ``seq`` to 0
on every container: each ordered update carries its own pts (or qts), which orders it, so a second sequence
would only repeat it; clients skip the seq check for seq 0 (updates.state.seq is 0 too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from prometheus_client import Counter, Gauge, Histogram

from mtproto.tl import api
from mtproto.tl.internal.functions import push as push_fn
from mtproto.tl.internal.types import push, rpc
from mtproto.tl.runtime import Reader, TLDecodeError
from services.common import db, users
from services.common.redis import Redis, RedisError
from services.common.rpc import RpcError
from services.messages import channels, chats
from services.updates.difference import peers_named
from shard_db import Shards

log = logging.getLogger("mtlab.updates.push")

PUSHES = Counter("mtlab_updates_pushes_total", "Updates containers sent to gateways, by kind",
                 ["kind"])
PUSH_DROPPED = Counter("mtlab_updates_push_dropped_total",
                       "Pushes dropped, by reason (a gateway not reading, nobody online)", ["reason"])
ONLINE_USERS = Gauge("mtlab_updates_online_users", "Users with at least one session on an attached gateway")
GATEWAYS = Gauge("mtlab_updates_gateways", "Gateways with an open push stream")
NOTES = Counter("mtlab_updates_notes_total", "Notes received from Redis, by kind", ["kind"])
LOG_READ_SECONDS = Histogram("mtlab_updates_log_read_seconds", "Time to read a batch of users' new log rows",
                             buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
FANOUT_SECONDS = Histogram("mtlab_updates_channel_fanout_seconds",
                           "From a channel note to its pushes queued for every gateway",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

UNKNOWN = -1  # a user's pushed pts before it is read

UPDATES_PREFIX = "mtlab:updates:"
CHANNEL_PREFIX = "mtlab:channel:"


# -- who is online where ------------------------------------------------------------------------------------


@dataclass(eq=False)
class GatewayLink:
    """One attached gateway: its stream's queue and the users it registered."""

    gateway_id: int
    send: MemoryObjectSendStream[bytes]
    users: set[int] = field(default_factory=set)

    def offer(self, item: bytes) -> bool:
        """Queue ``item`` for the gateway; False (and the stream closed) when the gateway does not keep up."""
        try:
            self.send.send_nowait(item)
            return True
        except anyio.WouldBlock:
            # A gateway that does not read would make this service buffer without bound. Close its stream: it
            # attaches again and registers its users with the pts it last got, so nothing is skipped.
            log.warning("gateway %x does not keep up with its pushes: closing its stream", self.gateway_id)
            PUSH_DROPPED.labels("gateway_overflow").inc()
            self.send.close()
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False


class Registry:
    def __init__(self) -> None:
        self.gateways: dict[int, GatewayLink] = {}
        self.online: dict[int, dict[int, GatewayLink]] = {}  # user -> gateway id -> link

    def attach(self, gateway_id: int, send: MemoryObjectSendStream[bytes]) -> GatewayLink:
        old = self.gateways.get(gateway_id)
        if old is not None:  # the same gateway again, before its old stream was noticed gone
            self.detach(old)
        link = self.gateways[gateway_id] = GatewayLink(gateway_id, send)
        GATEWAYS.set(len(self.gateways))
        return link

    def detach(self, link: GatewayLink) -> list[int]:
        """Forget the gateway and its registrations; the users nobody holds any more."""
        if self.gateways.get(link.gateway_id) is link:
            del self.gateways[link.gateway_id]
        link.send.close()
        gone = self.offline(link, list(link.users))
        GATEWAYS.set(len(self.gateways))
        return gone

    def link(self, gateway_id: int) -> GatewayLink:
        link = self.gateways.get(gateway_id)
        if link is None:
            raise RpcError(400, "PUSH_NOT_ATTACHED")
        return link

    def online_at(self, link: GatewayLink, user_ids: Iterable[int]) -> list[int]:
        """Register users at ``link``; the ones that were online nowhere before."""
        new: list[int] = []
        for user_id in user_ids:
            where = self.online.setdefault(user_id, {})
            if not where:
                new.append(user_id)
            where[link.gateway_id] = link
            link.users.add(user_id)
        ONLINE_USERS.set(len(self.online))
        return new

    def offline(self, link: GatewayLink, user_ids: Iterable[int]) -> list[int]:
        gone: list[int] = []
        for user_id in user_ids:
            link.users.discard(user_id)
            where = self.online.get(user_id)
            if where is not None and where.get(link.gateway_id) is link:
                del where[link.gateway_id]
                if not where:
                    del self.online[user_id]
                    gone.append(user_id)
        ONLINE_USERS.set(len(self.online))
        return gone

    def links(self, user_id: int) -> list[GatewayLink]:
        return list(self.online.get(user_id, {}).values())


# -- building what is pushed --------------------------------------------------------------------------------


def _decode(bodies: Iterable[bytes]) -> list[api.types.TypeUpdate]:
    """Logged updates (TL bytes, as the client receives them) as objects."""
    out: list[api.types.TypeUpdate] = []
    for body in bodies:
        update = Reader(body).read_object()
        if not isinstance(update, api.types.TypeUpdate):
            raise TypeError(f"a logged update is a {type(update).__name__}")
        out.append(update)
    return out


def _short(update: Any, date: int) -> api.types.TypeUpdates | None:
    """``updateShortMessage`` / ``updateShortChatMessage`` for a plain new message, else None."""
    if not isinstance(update, api.types.UpdateNewMessage):
        return None
    m = update.message
    if not isinstance(m, api.types.Message) or m.media is not None or not isinstance(m.from_id, api.types.PeerUser):
        return None
    common: dict[str, Any] = dict(out=m.out, silent=m.silent, id=m.id, message=m.message, pts=update.pts,
                                  pts_count=update.pts_count, date=m.date, fwd_from=m.fwd_from, reply_to=m.reply_to,
                                  entities=m.entities)
    if isinstance(m.peer_id, api.types.PeerUser):
        # user_id is the other party: the sender of an incoming message, the recipient of an outgoing one.
        return api.types.UpdateShortMessage(user_id=m.peer_id.user_id if m.out else m.from_id.user_id, **common)
    if isinstance(m.peer_id, api.types.PeerChat):
        return api.types.UpdateShortChatMessage(from_id=m.from_id.user_id, chat_id=m.peer_id.chat_id, **common)
    return None


def _peers(updates: list[Any]) -> tuple[set[int], set[int], set[int]]:
    """User, basic-group and channel ids named by these updates (for the objects a container carries)."""
    return peers_named([], updates)


# -- the pusher ---------------------------------------------------------------------------------------------


@dataclass
class Pusher:
    shards: Shards
    main: db.Pool
    registry: Registry = field(default_factory=Registry)
    batch: int = 4096  # users taken per round (split by logical shard: a registration burst reads many per query)
    rows_per_user: int = 100  # log rows read per user per round (more: the user stays dirty for another)
    clock: Any = field(default=time.time)

    def __post_init__(self) -> None:
        self.pts: dict[int, int] = {}  # online user -> pts pushed so far (UNKNOWN: not read yet)
        self._dirty: dict[int, None] = {}  # users whose logs may hold what they were not pushed (ordered set)
        self._busy: set[int] = set()
        self._channels: dict[int, int] = {}  # channel -> the highest pts a note named, waiting to be pushed
        self._channel_pts: dict[int, int] = {}  # channel -> pts pushed so far
        self._busy_channels: set[int] = set()
        self._hints: dict[int, int] = {}  # user -> the pts a client was told before its registration came
        self._wake = anyio.Event()
        self._users: dict[int, tuple[float, users.UserRow]] = {}

    # -- registrations (push.attach / push.online / push.offline) -----------------------------------------

    async def attach(self, ctx: rpc.Context, query: bytes) -> AsyncGenerator[bytes, None]:
        q = push_fn.Attach.from_bytes(query)
        send, receive = anyio.create_memory_object_stream[bytes](4096)
        link = self.registry.attach(q.gateway_id, send)
        log.info("gateway %x attached", q.gateway_id)
        try:
            yield push.Ok().to_bytes()  # the gateway registers its users once it reads this
            async with receive:
                async for item in receive:
                    yield item
        finally:
            for user_id in self.registry.detach(link):
                self._forget(user_id)
            log.info("gateway %x detached", q.gateway_id)

    def online(self, gateway_id: int, user_ids: list[int], pts: list[int]) -> None:
        link = self.registry.link(gateway_id)
        if len(pts) != len(user_ids):
            raise RpcError(400, "PTS_COUNT_INVALID")
        self.registry.online_at(link, user_ids)
        for user_id, delivered in zip(user_ids, pts, strict=True):
            known = self.pts.get(user_id)
            if delivered > 0 and (known is None or known == UNKNOWN or delivered < known):
                self.pts[user_id] = delivered  # push what happened since the gateway's last delivery
            elif known is None:
                self.pts[user_id] = self._hints.pop(user_id, UNKNOWN)
            self._mark(user_id)

    def client_at(self, user_id: int, pts: int) -> None:
        """A client of ``user_id`` was just told its state is ``pts`` (getState, getDifference): push from there.

        Without this, a session that subscribes with the same call that asks getState would have its pts read
        a moment later, and what committed in between would reach it only at the next gap."""
        known = self.pts.get(user_id)
        if known is None:
            self._hints[user_id] = pts  # its registration is on the way
            if len(self._hints) > 100_000:
                self._hints.clear()
        elif known == UNKNOWN or known > pts:
            self.pts[user_id] = pts
            self._mark(user_id)

    def offline(self, gateway_id: int, user_ids: list[int]) -> None:
        for user_id in self.registry.offline(self.registry.link(gateway_id), user_ids):
            self._forget(user_id)

    def _forget(self, user_id: int) -> None:
        self.pts.pop(user_id, None)
        self._dirty.pop(user_id, None)

    def _mark(self, user_id: int) -> None:
        self._dirty[user_id] = None
        self._wake.set()

    def resync(self) -> None:
        """Notes may have been lost (Redis came back): look at every online user's log again."""
        for user_id in self.pts:
            self._dirty[user_id] = None
        self._wake.set()

    # -- notes from Redis ---------------------------------------------------------------------------------

    def note(self, channel: str, data: bytes) -> None:
        try:
            obj = Reader(data).read_object()
        except (TLDecodeError, ValueError):
            NOTES.labels("malformed").inc()
            return
        if channel.startswith(UPDATES_PREFIX):
            user_id = int(channel[len(UPDATES_PREFIX):])
            if isinstance(obj, push.Logged):
                NOTES.labels("logged").inc()
                if user_id in self.pts:
                    self._mark(user_id)
            elif isinstance(obj, push.Direct):
                NOTES.labels("direct").inc()
                self._direct(user_id, obj)
        elif channel.startswith(CHANNEL_PREFIX) and isinstance(obj, push.Logged):
            NOTES.labels("channel").inc()
            channel_id = int(channel[len(CHANNEL_PREFIX):])
            self._channels[channel_id] = max(self._channels.get(channel_id, 0), obj.pts)
            self._wake.set()

    def _direct(self, user_id: int, note: push.Direct) -> None:
        try:
            update = Reader(note.update).read_object()
        except (TLDecodeError, ValueError):
            return
        if isinstance(update, api.types.TypeUpdate):
            self.relay(user_id, update, note.auth_key_id)

    def relay(self, user_id: int, update: api.types.TypeUpdate, auth_key_id: int | None = None) -> None:
        """Push ``update`` as it is, in an ``updateShort``, to the user's online devices (or one auth key's)."""
        links = self.registry.links(user_id)
        if not links:
            PUSH_DROPPED.labels("offline").inc()
            return
        body = api.types.UpdateShort(update=update, date=int(self.clock())).to_bytes()
        item = push.Deliver(user_ids=[user_id], auth_key_id=auth_key_id, updates=body).to_bytes()
        for link in links:
            link.offer(item)
        PUSHES.labels("direct").inc()

    async def listen(self, url: str, *, ready: anyio.Event | None = None) -> None:
        """Subscribe to the notes, for as long as the service runs; resubscribe (and resync) after Redis
        went away."""
        delay = 0.05
        first = True
        while True:
            client = Redis.from_url(url, decode_responses=False, socket_connect_timeout=2.0,
                                    health_check_interval=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(UPDATES_PREFIX + "*", CHANNEL_PREFIX + "*")
                    if not first:
                        log.info("Redis subscription back: looking at every online user's log again")
                        self.resync()
                    first = False
                    delay = 0.05
                    if ready is not None:
                        ready.set()
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                        if message is None or message["type"] != "pmessage":
                            continue
                        channel = message["channel"]
                        self.note(channel.decode() if isinstance(channel, bytes) else str(channel),
                                  bytes(message["data"]))
            except (RedisError, OSError) as exc:
                log.warning("Redis subscription lost (%s: %s); again in %.2fs", type(exc).__name__, exc, delay)
            finally:
                await client.aclose()
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- workers ------------------------------------------------------------------------------------------

    async def run(self, workers: int = 4) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(self._worker)

    async def _worker(self) -> None:
        while True:
            channel = next((c for c in self._channels if c not in self._busy_channels), None)
            if channel is not None:  # one worker per channel at a time: its pushes stay in pts order
                noted = self._channels.pop(channel)
                self._busy_channels.add(channel)
                try:
                    await self._guard(self._push_channel(channel, noted))
                finally:
                    self._busy_channels.discard(channel)
                continue
            batch = self._take()
            if batch:
                try:
                    await self._guard(self._push_users(batch))
                finally:
                    self._busy.difference_update(batch)
                continue
            self._wake = anyio.Event()
            await self._wake.wait()

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except Exception as exc:  # a shard away: the users stay dirty and are tried again shortly
            log.warning("push failed (%s: %s); retrying shortly", type(exc).__name__, exc)
            await anyio.sleep(0.2)

    def _take(self) -> list[int]:
        batch: list[int] = []
        for user_id in list(self._dirty):
            if user_id in self._busy:
                continue
            del self._dirty[user_id]
            batch.append(user_id)
            if len(batch) >= self.batch:
                break
        self._busy.update(batch)
        return batch

    async def _push_users(self, batch: list[int]) -> None:
        by_shard: dict[int, list[int]] = {}
        for user_id in batch:
            if user_id in self.pts:
                by_shard.setdefault(self.shards.for_user(user_id), []).append(user_id)
        for shard, ids in by_shard.items():
            try:
                await self._push_shard(shard, ids)
            except BaseException:
                for user_id in ids:  # try them again
                    if user_id in self.pts:
                        self._dirty[user_id] = None
                raise

    async def _push_shard(self, shard: int, ids: list[int]) -> None:
        unknown = [u for u in ids if self.pts.get(u) == UNKNOWN]
        known = [u for u in ids if self.pts.get(u, UNKNOWN) != UNKNOWN]
        after = [self.pts[u] for u in known]
        limit = self.rows_per_user

        async def read(con: db.Connection) -> tuple[list[Any], list[Any]]:
            current = await con.fetch("SELECT user_id, pts FROM user_state WHERE shard = $1 AND "
                                      "user_id = ANY($2::bigint[])", shard, unknown) if unknown else []
            rows = await con.fetch(
                "SELECT l.owner_id, l.pts, l.pts_count, l.body FROM unnest($2::bigint[], $3::int[]) AS w(u, p) "
                "CROSS JOIN LATERAL (SELECT owner_id, pts, pts_count, body FROM update_log WHERE shard = $1 "
                "AND owner_id = w.u AND pts > w.p ORDER BY pts LIMIT $4) AS l ORDER BY l.owner_id, l.pts",
                shard, known, after, limit) if known else []
            return current, rows

        started = time.perf_counter()
        current, rows = await self.shards.txn(shard, "updates.push_read", read)
        LOG_READ_SECONDS.observe(time.perf_counter() - started)
        for r in current:
            if self.pts.get(r["user_id"]) == UNKNOWN:
                self.pts[r["user_id"]] = int(r["pts"])
        for user_id in unknown:  # never wrote anything: pts 0
            if self.pts.get(user_id) == UNKNOWN:
                self.pts[user_id] = 0
        per_user: dict[int, list[tuple[int, int, bytes]]] = {}
        for r in rows:
            per_user.setdefault(int(r["owner_id"]), []).append((int(r["pts"]), int(r["pts_count"]), bytes(r["body"])))
        read_from = dict(zip(known, after, strict=True))
        for user_id, logged in per_user.items():
            if user_id not in self.pts:
                continue  # went offline meanwhile
            await self._push_logged(user_id, logged)
            if self.pts.get(user_id) == read_from[user_id]:
                self.pts[user_id] = logged[-1][0]
            # else client_at moved it back while we read (a device that knows less): it is marked, and its
            # next round starts from there
            if len(logged) >= limit:
                self._mark(user_id)  # more is waiting

    async def _push_logged(self, user_id: int, logged: list[tuple[int, int, bytes]]) -> None:
        links = self.registry.links(user_id)
        if not links:
            return
        decoded = _decode(body for _, _, body in logged)
        now = int(self.clock())
        short = _short(decoded[0], now) if len(decoded) == 1 else None
        if short is not None:
            body, kind = short.to_bytes(), type(short).__name__
        else:
            user_objs, chat_objs = await self._objects(user_id, decoded)
            container: api.types.TypeUpdates
            if len(decoded) == 1:
                container = api.types.Updates(updates=decoded, users=user_objs, chats=chat_objs, date=now, seq=0)
            else:
                container = api.types.UpdatesCombined(updates=decoded, users=user_objs, chats=chat_objs, date=now,
                                                      seq_start=0, seq=0)
            body, kind = container.to_bytes(), type(container).__name__
        item = push.Deliver(user_ids=[user_id], pts=logged[-1][0], updates=body).to_bytes()
        for link in links:
            link.offer(item)
        PUSHES.labels(kind).inc()

    async def _objects(self, viewer: int, updates: list[Any]) -> tuple[list[api.types.TypeUser],
                                                                         list[api.types.TypeChat]]:
        user_ids, chat_ids, channel_ids = _peers(updates)
        rows = await self.user_rows(user_ids)
        user_objs: list[api.types.TypeUser] = [users.render(rows[i], viewer=viewer) for i in sorted(rows)]
        chat_objs: list[api.types.TypeChat] = []
        for chat_id in sorted(chat_ids):
            shard = self.shards.for_chat(chat_id)
            c = await self.shards.txn(shard, "updates.push_chat", chats.loader(shard, chat_id))
            if c is not None:
                chat_objs.append(chats.render_chat(c, viewer=viewer))
        for channel_id in sorted(channel_ids):
            ch = await self._channel(channel_id)
            if ch is not None:
                chat_objs.append(channels.render_channel(ch, viewer=viewer, member=True))
        return user_objs, chat_objs

    async def user_rows(self, ids: set[int]) -> dict[int, users.UserRow]:
        """Users by id, cached for a few seconds (a name change shows in pushes after at most that long)."""
        now = time.monotonic()
        missing = [i for i in ids if i not in self._users or self._users[i][0] < now]
        if missing:
            async with self.main.acquire() as con:
                for row in (await users.by_id(con, missing)).values():
                    self._users[row.id] = (now + 10.0, row)
            if len(self._users) > 100_000:
                self._users.clear()
        return {i: self._users[i][1] for i in ids if i in self._users}

    async def _channel(self, channel_id: int) -> channels.ChannelRow | None:
        shard = self.shards.for_chat(channel_id)

        async def txn(con: db.Connection) -> channels.ChannelRow | None:
            return await channels.load(con, shard, channel_id)

        return await self.shards.txn(shard, "updates.push_channel", txn)

    # -- channels -----------------------------------------------------------------------------------------

    async def _push_channel(self, channel_id: int, noted: int) -> None:
        started = time.perf_counter()
        if not self.registry.online:
            return
        shard = self.shards.for_chat(channel_id)
        pushed = self._channel_pts.get(channel_id)
        if pushed is not None and pushed >= noted:
            return  # an older note: pushed already
        # The first note of a channel this process sees: its last commit only (a subscriber that misses an
        # earlier one sees the channel pts gap and asks getChannelDifference).
        after = pushed if pushed is not None else noted - 1

        async def read(con: db.Connection) -> tuple[list[Any], list[Any], channels.ChannelRow | None]:
            rows = await con.fetch("SELECT pts, pts_count, body FROM channel_update_log WHERE shard = $1 AND "
                                   "channel_id = $2 AND pts > $3 ORDER BY pts LIMIT $4",
                                   shard, channel_id, after, self.rows_per_user)
            members = await con.fetch("SELECT user_id FROM channel_members WHERE shard = $1 AND channel_id = $2",
                                      shard, channel_id) if rows else []
            return rows, members, await channels.load(con, shard, channel_id) if rows else None

        rows, members, ch = await self.shards.txn(shard, "updates.push_channel", read)
        if not rows or ch is None:
            return
        self._channel_pts[channel_id] = max(int(r["pts"]) for r in rows)
        if len(self._channel_pts) > 100_000:
            self._channel_pts.clear()
        if len(rows) >= self.rows_per_user:
            self._channels[channel_id] = max(self._channels.get(channel_id, 0), noted)
        decoded = _decode(bytes(r["body"]) for r in rows)
        by_gateway: dict[int, tuple[Any, list[int]]] = {}
        online = self.registry.online
        for r in members:
            where = online.get(r["user_id"])
            if where:
                for gateway_id, link in where.items():
                    by_gateway.setdefault(gateway_id, (link, []))[1].append(int(r["user_id"]))
        if not by_gateway:
            return
        user_ids, _, _ = _peers(decoded)
        rows_by_id = await self.user_rows(user_ids)
        now = int(self.clock())
        container = api.types.Updates(
            updates=decoded, users=[users.render(rows_by_id[i], viewer=0) for i in sorted(rows_by_id)],
            chats=[channels.render_channel(ch, viewer=0, member=True)], date=now, seq=0)
        body = container.to_bytes()
        for link, ids in by_gateway.values():
            link.offer(push.Deliver(user_ids=ids, updates=body).to_bytes())
        PUSHES.labels("channel").inc()
        FANOUT_SECONDS.observe(time.perf_counter() - started)


# -- the gateway's calls ------------------------------------------------------------------------------------


async def _online(pusher: Pusher, ctx: rpc.Context, q: push_fn.Online) -> push.Ok:
    pusher.online(q.gateway_id, q.user_ids, q.pts)
    return push.Ok()


async def _offline(pusher: Pusher, ctx: rpc.Context, q: push_fn.Offline) -> push.Ok:
    pusher.offline(q.gateway_id, q.user_ids)
    return push.Ok()


METHODS: dict[type[Any], Any] = {push_fn.Online: _online, push_fn.Offline: _offline}
