"""Live push, measured through the whole stack: plain functions that return figures (``mtlab bench fanout`` prints
them). The issue's targets (issue 5, core.telegram.org/api/updates for what is pushed):

- **send-to-receive latency** between two online users: user A's SDK client calls ``messages.sendMessage``, user
  B's SDK client receives the push (``updateShortMessage`` with that text); the time from the call to the push's
  arrival at B, p50 and p99 over a bounded number of messages, sent one at a time. Once at idle, once while
  ``load_clients`` other SDK clients send to each other as fast as they can through the same gateway (the message
  benchmark's gateway phase; their own sessions are pushed to as well), whose rate is reported too.
- **a channel post fanned out** to ``subscribers`` online sessions of as many users, on one gateway: time from the
  post's ``messages.sendMessage`` until the last session has it (the goal: under a second), the median, how many
  sessions got it, and the CPU the gateway and the updates service spent meanwhile.

The stack is the one ``mtlab up`` runs, as processes (``mtlab/bench/messages.py`` starts them the same way):
``services.messages``, ``services.updates``, ``services.auth`` and the gateway (with
``MTLAB_GATEWAY_UPDATES_HOST/PORT``), on databases of the run's own, Postgres and Redis as ``mtlab bench messages``
finds them. Everything started is stopped and the databases are dropped at the end.

**Lightweight subscribers.** Ten thousand SDK clients, each with its own handshake and task group, would measure
this process rather than the server. Instead each subscriber is a row set written straight into the run's
databases, as the auth service would have made it: a ``users`` row, a random 256-byte ``auth_keys`` row (its id
the low 64 bits of SHA1(key) as a signed little-endian long, its handshake salt what the session first uses) and an
``authorizations`` row (signed in), one key per user (the gateway keeps at most 64 sessions per key); then a
``channel_members`` row on the channel's shard (the channel is made through the API by its owner, and its
``participants_count`` goes up by as many). On the wire the subscribers share a few TCP connections
(``connections``; MTProto lets one connection carry messages of any number of sessions): each session is
``mtproto``'s sans-IO ``ClientSession``, sealed into intermediate frames by a ``ClientTransport``, and makes one
call, ``invokeWithLayer(updates.getState)``, which subscribes it on that connection (services/gateway/push.py).
During the post a connection's reader only stamps each frame with its arrival time and notes which key it is for
(the first 8 bytes); the frames are decrypted afterwards, so the figures are the gateway's, not this process's
decryption, and each session is checked to have received the post exactly once.

Nothing here asserts a speed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from anyio.abc import SocketStream

from mtlab import servers
from mtlab.bench.messages import (
    BenchError,
    BenchUser,
    Databases,
    GatewayEndpoints,
    Meters,
    Progress,
    ServiceProcess,
    _CpuMeter,
    _free_port,
    _peer,
    _recipients,
    _service_env,
    _sign_up,
    _test_phones,
    bench_servers,
    create_databases,
    create_users,
    service_configs,
    start_gateway,
    start_service,
    tree_cpu,
)
from mtlab.client import Client, ClientConfig
from mtproto.session import AuthKey, ClientSession
from mtproto.session.client import Request, RequestFailed, Result, RpcErrorReceived, UpdateReceived
from mtproto.tl import LAYER, api
from mtproto.transport import NEED_DATA, ClientTransport, Frame, TransportError, TransportKind
from services.common import db
from services.common.config import GatewayConfig, ShardConfig
from shard_db import Shards

SESSION_QUEUE = GatewayConfig().session_queue  # frames a gateway queues per connection before it closes it
SUBSCRIBE_WAVE = 20  # connections subscribing their sessions at once (each has up to 64 calls in flight)


@dataclass(frozen=True)
class Settings:
    samples: int = 300  # latency samples at idle, and again under load
    load_clients: int = 16  # SDK clients sending to each other during the loaded samples
    subscribers: int = 10_000  # online sessions (one user and one auth key each) the channel post reaches
    connections: int = 100  # TCP connections carrying those sessions
    warmup: int = 3  # messages sent before the latency samples (not counted)
    timeout: float = 10.0  # seconds a push may take before its sample counts as lost


# -- figures --------------------------------------------------------------------------------------------------


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)


@dataclass
class Latency:
    """Send-to-receive samples under one condition (``idle`` or ``loaded``)."""

    name: str
    load_clients: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, call to the push's arrival
    lost: int = 0  # samples whose push did not arrive within the timeout
    seconds: float = 0.0  # the sampling window
    load_sent: int = 0  # sends the load answered inside the window
    load_errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy on average during the window
    failed: str = ""

    def percentile(self, q: int) -> float | None:
        return _percentile(self.latencies, q)

    @property
    def load_rate(self) -> float:
        return self.load_sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def consistent(self) -> bool:
        return not self.failed and bool(self.latencies) and self.lost == 0 and all(t > 0 for t in self.latencies)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "samples": len(self.latencies), "lost": self.lost,
            "p50_ms": _ms(self.percentile(50)), "p99_ms": _ms(self.percentile(99)),
            "max_ms": _ms(max(self.latencies, default=None)), "seconds": round(self.seconds, 3),
            "load": {"clients": self.load_clients, "sent": self.load_sent, "msgs_per_s": round(self.load_rate, 1),
                     "errors": dict(self.load_errors)},
            "cpu_cores": {k: round(v, 2) for k, v in self.cpu.items()}, "consistent": self.consistent,
            "failed": self.failed or None,
        }


@dataclass
class Fanout:
    """One channel post, pushed to every subscribed session."""

    subscribers: int
    connections: int
    subscribed: int = 0  # sessions whose getState was answered (subscribed)
    subscribe_seconds: float = 0.0  # from the first getState sent to the updates service knowing every user
    subscribe_errors: dict[str, int] = field(default_factory=dict)
    post_answer: float = 0.0  # seconds until the owner's sendMessage was answered
    arrivals: list[float] = field(default_factory=list, repr=False)  # seconds after the send, one per session
    duplicates: int = 0  # sessions that got the post more than once
    frames: int = 0  # frames the subscribers' connections received after the post
    errors: dict[str, int] = field(default_factory=dict)  # on the subscribers' connections after the post
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the fan-out, per process
    subscribe_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds spent subscribing, per process
    failed: str = ""

    @property
    def first(self) -> float | None:
        return min(self.arrivals, default=None)

    @property
    def received(self) -> int:
        """Sessions that received the post (once or more)."""
        return len(self.arrivals)

    @property
    def last(self) -> float | None:
        return max(self.arrivals, default=None)

    @property
    def median(self) -> float | None:
        return statistics.median(self.arrivals) if self.arrivals else None

    @property
    def consistent(self) -> bool:
        return (not self.failed and self.subscribed == self.subscribers and self.received == self.subscribers
                and self.duplicates == 0 and not self.errors and all(t > 0 for t in self.arrivals))

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscribers": self.subscribers, "connections": self.connections, "subscribed": self.subscribed,
            "subscribe_seconds": round(self.subscribe_seconds, 3), "subscribe_errors": dict(self.subscribe_errors),
            "post_answer_ms": _ms(self.post_answer), "received": self.received, "duplicates": self.duplicates,
            "frames": self.frames, "errors": dict(self.errors), "first_ms": _ms(self.first),
            "median_ms": _ms(self.median), "p99_ms": _ms(_percentile(self.arrivals, 99)), "last_ms": _ms(self.last),
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu.items()},
            "subscribe_cpu_seconds": {k: round(v, 3) for k, v in self.subscribe_cpu.items()},
            "consistent": self.consistent, "failed": self.failed or None,
        }


@dataclass
class Report:
    settings: Settings
    cores: int
    postgres: str
    redis: str
    idle: Latency | None = None
    loaded: Latency | None = None
    fanout: Fanout | None = None
    pids: dict[str, int] = field(default_factory=dict)  # the service processes the run started (all stopped)

    @property
    def consistent(self) -> bool:
        return (self.idle is not None and self.idle.consistent and self.loaded is not None
                and self.loaded.consistent and self.fanout is not None and self.fanout.consistent)

    def as_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "settings": {"samples": s.samples, "load_clients": s.load_clients, "subscribers": s.subscribers,
                         "connections": s.connections, "warmup": s.warmup, "timeout": s.timeout},
            "machine": {"cores": self.cores}, "postgres": self.postgres, "redis": self.redis,
            "idle": self.idle.as_dict() if self.idle else None,
            "loaded": self.loaded.as_dict() if self.loaded else None,
            "fanout": self.fanout.as_dict() if self.fanout else None,
            "consistent": self.consistent,
        }


# -- send-to-receive latency ------------------------------------------------------------------------------------


class Receiver:
    """User B's side: reads its client's pushes and stamps the arrival of each awaited text."""

    def __init__(self, client: Client, sender_id: int) -> None:
        self.client = client
        self.sender_id = sender_id
        self.waiting: dict[str, anyio.Event] = {}
        self.arrived: dict[str, float] = {}

    async def run(self) -> None:
        async for received in self.client.updates():
            obj = received.obj
            if (isinstance(obj, api.types.UpdateShortMessage) and obj.user_id == self.sender_id and not obj.out
                    and obj.message in self.waiting):
                self.arrived.setdefault(obj.message, time.perf_counter())
                self.waiting[obj.message].set()

    async def sample(self, sender: Client, recipient: BenchUser, text: str, timeout: float) -> float | None:
        """Send ``text`` from ``sender``; seconds until its push reached this receiver (None: not in time)."""
        arrived = self.waiting[text] = anyio.Event()
        query = api.functions.messages.SendMessage(peer=_peer(recipient), message=text,
                                                   random_id=secrets.randbits(62) + 1)
        started = time.perf_counter()
        try:
            await sender.invoke(query)
            with anyio.move_on_after(timeout):
                await arrived.wait()
        finally:
            del self.waiting[text]
        at = self.arrived.pop(text, None)
        return None if at is None else at - started


async def latency(phase: Latency, receiver: Receiver, sender: Client, recipient: BenchUser, settings: Settings,
                  meters: Meters, say: Progress, *, tag: str, load: _Load | None = None) -> None:
    """``settings.samples`` messages from ``sender`` to ``recipient`` one at a time (after a few not counted);
    ``load``'s answers are counted over the same window."""
    for n in range(settings.warmup):
        await receiver.sample(sender, recipient, f"fanout bench {tag} warmup {n}", settings.timeout)
    meter = _CpuMeter(meters)
    started = time.perf_counter()
    if load is not None:
        load.counting = True
    for n in range(settings.samples):
        if n % 10 == 0:
            say(f"{phase.name} latency: {n}/{settings.samples} messages")
        took = await receiver.sample(sender, recipient, f"fanout bench {tag} {n:06d}", settings.timeout)
        if took is None:
            phase.lost += 1
            if phase.lost >= 3 and not phase.latencies:
                raise BenchError(f"no push arrived for the first {phase.lost} messages: the stack does not push")
        else:
            phase.latencies.append(took)
    phase.seconds = time.perf_counter() - started
    if load is not None:
        load.counting = False
    phase.cpu = meter.read(phase.seconds)


@dataclass
class _Load:
    """SDK clients sending to each other back to back until ``stop``; counts what is answered while ``counting``."""

    clients: list[Client]
    users: list[BenchUser]
    counting: bool = False
    sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, i: int) -> None:
        pick = _recipients(self.users, len(self.clients))[i]
        n = 0
        while not self.stop.is_set():
            _me, other = pick()
            n += 1
            query = api.functions.messages.SendMessage(peer=_peer(other), message=f"fanout bench load {i}/{n}",
                                                       random_id=secrets.randbits(62) + 1)
            try:
                await self.clients[i].invoke(query)
            except Exception as exc:  # a benchmark reports every failure and goes on
                name = getattr(exc, "message", None) or type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                await anyio.sleep(0.05)
                continue
            if self.counting:
                self.sent += 1


async def loaded_latency(phase: Latency, receiver: Receiver, sender: Client, recipient: BenchUser,
                         config: ClientConfig, phones: list[tuple[str, str]], settings: Settings, meters: Meters,
                         say: Progress) -> None:
    """The same samples while SDK clients, signed up with ``phones`` (at least two), send to each other flat out."""
    count = len(phones)
    phase.load_clients = count
    async with contextlib.AsyncExitStack() as stack:
        say(f"loaded latency: signing up {count} load senders")
        clients = [await stack.enter_async_context(Client(config)) for _ in range(count)]
        signed: list[BenchUser | None] = [None] * count

        async def sign_up(i: int) -> None:
            signed[i] = await _sign_up(clients[i], *phones[i], f"Load {i}")

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(sign_up, i)
        load = _Load(clients, [u for u in signed if u is not None])
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(load.run, i)
            await anyio.sleep(1.0)  # every sender going: connections warm, the services busy
            try:
                await latency(phase, receiver, sender, recipient, settings, meters, say, tag="loaded", load=load)
            finally:
                load.stop.set()
        phase.load_sent, phase.load_errors = load.sent, load.errors


# -- the channel fan-out ------------------------------------------------------------------------------------------


@dataclass(eq=False)
class LightSession:
    """One subscriber: a user signed in with a key of its own, and its session as mtproto's sans-IO client."""

    user_id: int
    session: ClientSession
    request: Request | None = None
    subscribed: bool = False
    arrivals: list[float] = field(default_factory=list)  # seconds after the post's send, one per copy received


@dataclass
class Subscriber:
    user_id: int
    key: AuthKey
    salt: int


async def create_subscribers(main_dsn: str, count: int) -> list[Subscriber]:
    """``count`` users, each signed in with an auth key of its own, written as the auth service writes them."""
    users = await create_users(main_dsn, count)
    made: list[Subscriber] = []
    for u in users:
        key = AuthKey.from_bytes(os.urandom(256))
        made.append(Subscriber(u.id, key, secrets.randbits(63) - (1 << 62)))
    con = await asyncpg.connect(main_dsn)
    try:
        async with con.transaction():
            await con.copy_records_to_table(
                "auth_keys", columns=["id", "auth_key", "handshake_salt"],
                records=[(s.key.id_int, s.key.key, s.salt) for s in made])
            await con.copy_records_to_table(
                "authorizations", columns=["auth_key_id", "user_id", "hash", "device_model", "app_version", "ip"],
                records=[(s.key.id_int, s.user_id, secrets.randbits(62) + 1, "mtlab bench fanout", "1", "127.0.0.1")
                         for s in made])
    finally:
        await con.close()
    return made


async def add_members(main_dsn: str, shard_cfg: ShardConfig, channel_id: int, user_ids: list[int]) -> None:
    """Make ``user_ids`` members of the channel on its shard, as channels.joinChannel does (its member row and the
    channel's participants_count; the members' dialog rows on their own shards are left out: pushes do not read
    them)."""
    shards = await Shards.open(main_dsn, shard_cfg)
    try:
        shard = shards.for_chat(channel_id)
        date = int(time.time())

        async def txn(con: db.Connection) -> None:
            await con.copy_records_to_table(
                "channel_members", columns=["shard", "channel_id", "user_id", "role", "date"],
                records=[(shard, channel_id, user_id, "member", date) for user_id in user_ids])
            await con.execute("UPDATE channels SET participants_count = participants_count + $3 WHERE shard = $1 "
                              "AND id = $2", shard, channel_id, len(user_ids))

        await shards.txn(shard, "bench.fanout_members", txn)
    finally:
        await shards.close()


class LightConnection:
    """One TCP connection to the gateway carrying many subscribers' sessions (intermediate framing)."""

    def __init__(self, stream: SocketStream, sessions: list[LightSession]) -> None:
        self.stream = stream
        self.transport = ClientTransport(TransportKind.INTERMEDIATE, obfuscated=False, randbytes=os.urandom)
        self.by_key = {s.session.key.id: s for s in sessions}
        self.sessions = sessions
        self._write = anyio.Lock()
        self.answered = 0
        self.all_answered = anyio.Event()
        self.errors: dict[str, int] = {}
        self.recording = False
        self.frames: list[tuple[float, bytes]] = []  # (arrival, payload) while recording
        self.unseen: set[bytes] = set()
        self.all_seen = anyio.Event()
        self.closed = False

    async def send(self, payloads: list[bytes]) -> None:
        if payloads:
            async with self._write:
                await self.stream.send(b"".join(self.transport.send_frame(p) for p in payloads))

    async def subscribe(self) -> None:
        """One ``invokeWithLayer(updates.getState)`` per session, all in one write; returns once all are answered."""
        now = time.time()
        payloads: list[bytes] = []
        for s in self.sessions:
            s.request = s.session.invoke(api.functions.InvokeWithLayer(layer=LAYER,
                                                                       query=api.functions.updates.GetState()))
            payloads += s.session.data_to_send(now)
        await self.send(payloads)
        await self.all_answered.wait()

    def record(self) -> None:
        """From now on keep each frame with its arrival time, undecrypted."""
        self.frames = []
        self.unseen = set(self.by_key)
        self.all_seen = anyio.Event()
        self.errors = {}
        self.recording = True
        if self.closed:
            self.all_seen.set()

    async def read(self) -> None:
        """For as long as the connection is open: answers while subscribing, then stamped frames."""
        try:
            await self._read()
        finally:  # nothing more comes: whoever waits for more stops waiting
            self.closed = True
            self.all_answered.set()
            self.all_seen.set()

    async def _read(self) -> None:
        while True:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._error("connection closed by the gateway")
                return
            at = time.perf_counter()
            self.transport.receive_data(data)
            while (event := self.transport.next_event()) is not NEED_DATA:
                if isinstance(event, TransportError):
                    raise BenchError(f"the gateway closed a subscribers' connection with transport error "
                                     f"{event.code}")
                if not isinstance(event, Frame):
                    continue
                if self.recording:
                    self.frames.append((at, event.payload))
                    if self.unseen:
                        self.unseen.discard(event.payload[:8])
                        if not self.unseen:
                            self.all_seen.set()
                else:
                    await self._answer(event.payload)

    async def _answer(self, payload: bytes) -> None:
        s = self.by_key.get(payload[:8])
        if s is None:
            self._error("frame for an unknown key")
            return
        for event in s.session.receive(payload, time.time()):
            if s.subscribed or getattr(event, "request", None) is not s.request:
                continue
            if isinstance(event, Result):
                s.subscribed = True
            elif isinstance(event, RpcErrorReceived):
                self._error(event.message)
            elif isinstance(event, RequestFailed):
                self._error(f"bad_msg_notification {event.code}")
            else:
                continue
            self.answered += 1
            if self.answered == len(self.sessions):
                self.all_answered.set()
        await self.send(s.session.data_to_send(time.time()))  # resent under a new salt, or acks due

    def _error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1

    def verify(self, started: float, is_post: Callable[[Any], bool]) -> None:
        """Decrypt the recorded frames: each session's copies of the post, as seconds after ``started``."""
        for at, payload in self.frames:
            s = self.by_key.get(payload[:8])
            if s is None:
                self._error("frame for an unknown key")
                continue
            for event in s.session.receive(payload, time.time()):
                if isinstance(event, UpdateReceived) and is_post(event.obj):
                    s.arrivals.append(at - started)


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft limit on open files to ``needed`` if the hard limit allows (the services it
    starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
            raise BenchError(f"{needed} open files are needed and the limit is {soft} (hard {hard}): "
                             "ulimit -n, or fewer --connections")


async def metric(port: int, name: str) -> float | None:
    """The value of an unlabelled metric on a service's /metrics (None if it has none)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        chunks: list[bytes] = []
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                chunks.append(await stream.receive())
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def settle(cpu: Callable[[], float | None], *, quiet: float = 0.02, every: float = 0.25,
                 longest: float = 20.0) -> None:
    """Wait until a process spends less than ``quiet`` CPU seconds per ``every`` (done with a burst of work)."""
    deadline = time.monotonic() + longest
    before = cpu()
    while time.monotonic() < deadline:
        await anyio.sleep(every)
        now = cpu()
        if before is None or now is None or now - before < quiet:
            return
        before = now


def _is_post(channel_id: int, post_id: int, obj: Any) -> bool:
    """``obj`` is an Updates container carrying the post ``post_id`` of the channel."""
    for update in getattr(obj, "updates", None) or []:
        if isinstance(update, api.types.UpdateNewChannelMessage):
            m = update.message
            if (isinstance(m, api.types.Message) and m.id == post_id
                    and m.peer_id == api.types.PeerChannel(channel_id=channel_id)):
                return True
    return False


async def fanout(phase: Fanout, owner: Client, main_dsn: str, shard_cfg: ShardConfig, gateway: GatewayEndpoints,
                 updates_metrics: int, processes: dict[str, ServiceProcess], meters: Meters, say: Progress) -> None:
    """A channel made by ``owner``, ``phase.subscribers`` lightweight sessions subscribed to it, one post."""
    created = await owner.invoke(api.functions.channels.CreateChannel(broadcast=True, title="Bench fan-out",
                                                                       about=""))
    channel = next(c for c in getattr(created, "chats", []) if isinstance(c, api.types.Channel))
    if channel.access_hash is None:
        raise BenchError("createChannel gave a channel without an access hash")
    say(f"fan-out: writing {phase.subscribers} subscribers, their keys and memberships")
    subscribers = await create_subscribers(main_dsn, phase.subscribers)
    await add_members(main_dsn, shard_cfg, channel.id, [s.user_id for s in subscribers])
    online_before = await metric(updates_metrics, "mtlab_updates_online_users") or 0.0

    per = -(-len(subscribers) // phase.connections)
    groups = [subscribers[i:i + per] for i in range(0, len(subscribers), per)]
    connections: list[LightConnection] = []
    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as readers:
        for group in groups:
            stream = await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", gateway.port))
            sessions = [LightSession(s.user_id, ClientSession(s.key, session_id=secrets.randbits(63), salt=s.salt,
                                                              randbytes=os.urandom)) for s in group]
            connection = LightConnection(stream, sessions)
            connections.append(connection)
            readers.start_soon(connection.read)

        started = time.perf_counter()
        cpu = _cpu_now(meters)
        waves = anyio.Semaphore(SUBSCRIBE_WAVE)

        async def subscribe(connection: LightConnection) -> None:
            async with waves:
                await connection.subscribe()

        async def subscribe_all() -> None:
            async with anyio.create_task_group() as tg:
                for connection in connections:
                    tg.start_soon(subscribe, connection)

        async with anyio.create_task_group() as tg:
            tg.start_soon(_ticker, say, lambda: f"fan-out: {sum(c.answered for c in connections)}/"
                          f"{phase.subscribers} sessions subscribed")
            with anyio.fail_after(60 + phase.subscribers / 50):
                await subscribe_all()
            tg.cancel_scope.cancel()
        phase.subscribed = sum(s.subscribed for c in connections for s in c.sessions)
        for c in connections:
            for name, n in c.errors.items():
                phase.subscribe_errors[name] = phase.subscribe_errors.get(name, 0) + n
        # The gateway registers its new users with the updates service in batches, which then reads where each
        # user's log is: the post waits until all of that is done.
        say("fan-out: waiting for the updates service to know every subscriber")
        wanted, online = online_before + len(subscribers), 0.0
        with anyio.move_on_after(60):
            while (online := await metric(updates_metrics, "mtlab_updates_online_users") or 0.0) < wanted:
                await anyio.sleep(0.1)
        if online < wanted:
            raise BenchError(f"after 60 s the updates service knows {online - online_before:.0f} of the "
                             f"{len(subscribers)} subscribers: the gateway does not register them")
        phase.subscribe_seconds = time.perf_counter() - started
        for name in ("updates", "gateway"):
            await settle(processes[name].cpu)
        phase.subscribe_cpu = _cpu_since(cpu, meters)

        say("fan-out: posting")
        for c in connections:
            c.record()
        cpu = _cpu_now(meters)
        query = api.functions.messages.SendMessage(
            peer=api.types.InputPeerChannel(channel_id=channel.id, access_hash=channel.access_hash),
            message="fanout bench post", random_id=secrets.randbits(62) + 1)
        started = time.perf_counter()
        answer = await owner.invoke(query)
        phase.post_answer = time.perf_counter() - started
        with anyio.move_on_after(30):
            for c in connections:
                await c.all_seen.wait()
        phase.cpu = _cpu_since(cpu, meters)
        await anyio.sleep(0.5)  # a second copy would come right behind the first
        readers.cancel_scope.cancel()

    posts = [u.message for u in getattr(answer, "updates", []) if isinstance(u, api.types.UpdateNewChannelMessage)]
    if not posts:
        raise BenchError(f"sendMessage to the channel answered {type(answer).__name__} without the post")
    is_post = partial(_is_post, channel.id, posts[0].id)
    say("fan-out: decrypting what every session received")
    for c in connections:
        phase.frames += len(c.frames)
        c.verify(started, is_post)
        for name, n in c.errors.items():
            phase.errors[name] = phase.errors.get(name, 0) + n
        for s in c.sessions:
            if s.arrivals:
                phase.arrivals.append(s.arrivals[0])
                phase.duplicates += len(s.arrivals) > 1


def _cpu_now(meters: Meters) -> dict[str, float | None]:
    return {name: meter() for name, meter in meters.items()} | {"bench": time.process_time()}


def _cpu_since(before: dict[str, float | None], meters: Meters) -> dict[str, float]:
    """CPU seconds each process spent since ``before`` (``_cpu_now``); "bench" is this process."""
    now = _cpu_now(meters)
    return {name: end - start for name, start in before.items()
            if start is not None and (end := now.get(name)) is not None}


async def _ticker(say: Progress, text: Callable[[], str]) -> None:
    while True:
        say(text())
        await anyio.sleep(0.5)


# -- a whole run ----------------------------------------------------------------------------------------------


async def run(settings: Settings, postgres: servers.ServerInfo, redis: servers.ServerInfo,
              progress: Progress | None = None) -> Report:
    """Both latency phases and the fan-out on fresh databases of ``postgres`` (dropped at the end)."""
    say = progress or (lambda _text: None)
    if settings.samples < 1 or settings.subscribers < 1 or settings.connections < 1 or settings.load_clients < 0:
        raise BenchError("--samples, --subscribers and --connections must be at least 1")
    connections = min(settings.connections, settings.subscribers)
    settings = replace(settings, connections=connections)
    raise_fd_limit(connections + settings.load_clients + 256)
    report = Report(settings, os.cpu_count() or 1, postgres.source, redis.source)
    shard_cfg = service_configs()[1]
    databases = Databases(postgres.dsn)
    folder = Path(tempfile.mkdtemp(prefix="mtlab-bench-"))
    processes: dict[str, ServiceProcess] = {}
    servers_cpu: Meters = {info.kind: partial(tree_cpu, info.pid) for info in (postgres, redis)
                           if info.managed and info.pid is not None}
    try:
        say("creating the run's databases")
        await create_databases(databases, shard_cfg)
        env = _service_env(databases.main, redis.dsn, folder, shard_cfg)
        messages_port, updates_port, updates_metrics = _free_port(), _free_port(), _free_port()
        say("starting the message and updates services")
        processes["messages"] = await start_service(
            "messages", env | {"MTLAB_MESSAGES_RPC_PORT": str(messages_port),
                               "MTLAB_MESSAGES_METRICS_PORT": str(_free_port())}, folder, r"internal RPC on \S+:\d+")
        processes["updates"] = await start_service(
            "updates", env | {"MTLAB_UPDATES_RPC_PORT": str(updates_port),
                              "MTLAB_UPDATES_METRICS_PORT": str(updates_metrics)}, folder, r"internal RPC on \S+:\d+")
        say("starting the auth service and the gateway")
        gateway_env = {"MTLAB_GATEWAY_MAX_CONNECTIONS": str(max(10_000, 2 * (connections + settings.load_clients)))}
        per_connection = -(-settings.subscribers // connections)
        if 2 * per_connection > SESSION_QUEUE:
            # One post is one frame per session on a connection: more than the gateway queues for a connection
            # that does not read fast enough, and it would close it.
            gateway_env["MTLAB_GATEWAY_SESSION_QUEUE"] = str(2 * per_connection)
        gateway = await start_gateway(env | gateway_env, messages_port, folder, processes, updates_port=updates_port)
        meters: Meters = {name: process.cpu for name, process in processes.items()} | servers_cpu
        await _wait_attached(gateway.metrics_port)
        config = ClientConfig(server_keys=gateway.pem, port=gateway.port, ping_interval=None)
        await _measure(report, settings, config, databases.main, shard_cfg, gateway, updates_metrics, processes,
                       meters, say)
        return report
    finally:
        say("stopping the services and dropping the run's databases")
        for name, process in processes.items():
            process.stop()
            report.pids[name] = process.pid
        with anyio.CancelScope(shield=True):
            await databases.drop()
        shutil.rmtree(folder, ignore_errors=True)
        if progress:
            progress("")


async def _wait_attached(metrics_port: int) -> None:
    """Until the gateway's push stream to the updates service is attached (else nothing is pushed yet)."""
    with anyio.fail_after(30):
        while await metric(metrics_port, "mtlab_gateway_push_attached") != 1.0:
            await anyio.sleep(0.1)


async def _measure(report: Report, settings: Settings, config: ClientConfig, main_dsn: str, shard_cfg: ShardConfig,
                   gateway: GatewayEndpoints, updates_metrics: int, processes: dict[str, ServiceProcess],
                   meters: Meters, say: Progress) -> None:
    say("signing up the sender, the receiver and the channel's owner")
    phones = _test_phones(3 + max(2, settings.load_clients))  # drawn together: distinct numbers, distinct users
    async with Client(config) as a, Client(config) as b, Client(config) as owner:
        alice = await _sign_up(a, *phones[0], "Sender")
        bob = await _sign_up(b, *phones[1], "Receiver")
        await _sign_up(owner, *phones[2], "Owner")
        await b.invoke(api.functions.updates.GetState())  # a call subscribes the session to pushes
        receiver = Receiver(b, alice.id)

        async def measured(make: Callable[[], Awaitable[None]], failed: Callable[[str], None]) -> None:
            try:
                await make()
            except Exception as exc:  # one phase failing must not hide the others' figures
                while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                    exc = exc.exceptions[0]  # what went wrong, not the task group it went wrong in
                failed(f"{type(exc).__name__}: {exc}")

        idle, loaded = Latency("idle"), Latency("loaded")
        report.idle, report.loaded = idle, loaded
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver.run)
            await measured(partial(latency, idle, receiver, a, bob, settings, meters, say, tag="idle"),
                           partial(setattr, idle, "failed"))
            await measured(partial(loaded_latency, loaded, receiver, a, bob, config, phones[3:], settings, meters,
                                   say),
                           partial(setattr, loaded, "failed"))
            tg.cancel_scope.cancel()
        report.fanout = phase = Fanout(settings.subscribers, settings.connections)
        await measured(partial(fanout, phase, owner, main_dsn, shard_cfg, gateway, updates_metrics, processes,
                               meters, say), partial(setattr, phase, "failed"))


def measure(settings: Settings, progress: Progress | None = None) -> Report:
    """A whole run: servers, databases, services, every measurement; everything it started is stopped and dropped."""
    with bench_servers(progress) as (postgres, redis):
        report: Report = anyio.run(partial(run, settings, postgres, redis, progress), backend="asyncio")
        return report

