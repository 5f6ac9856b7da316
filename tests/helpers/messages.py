"""The message service in-process, on real Postgres with two physical shards: its handlers called through the same
bytes-in, bytes-out path the internal RPC server uses, so requests and answers are real TL.

    async with MessageLab(dsn) as lab:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        await lab.call(alice, api.functions.messages.SendMessage(peer=lab.peer(bob), message="hi", random_id=1))
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from mtproto.tl import api
from mtproto.tl.runtime import Reader
from services.common import db
from services.common.config import MessagesConfig, ShardConfig
from services.common.migrations import migrate
from services.common.rpc import context
from services.common.service import rpc_handler
from services.messages.handlers import Messages
from services.messages.server import METHODS
from shard_db import Shards, prepare
from tests.helpers.auth import ServiceProcess
from tests.helpers.gateway import free_port

REPO = Path(__file__).resolve().parents[2]
AUTH_MIGRATIONS = REPO / "services" / "auth" / "migrations"
log = logging.getLogger("tests.messages")


@dataclass(frozen=True)
class User:
    id: int
    access_hash: int
    name: str


class MessageLab:
    def __init__(self, main_dsn: str, *, logical: int = 8, physical: int = 2, **config: Any) -> None:
        self.main_dsn = main_dsn
        self.shard_config = ShardConfig(logical=logical, physical=physical)
        self.config = MessagesConfig(**config)
        self._random = itertools.count(1)

    async def __aenter__(self) -> MessageLab:
        self.main = await db.create_pool(self.main_dsn, max_size=4)
        await migrate(self.main, AUTH_MIGRATIONS, namespace="auth")
        await prepare(self.main_dsn, self.shard_config)
        self.shards = await Shards.open(self.main_dsn, self.shard_config)
        self.deps = Messages(self.config, self.shards, self.main)
        self.handlers = {cls.CONSTRUCTOR_ID: rpc_handler("messages_test", self.deps, cls, fn, log)
                         for cls, fn in METHODS.items()}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shards.close()
        await self.main.close()

    async def user(self, name: str) -> User:
        access_hash = secrets.randbits(63)
        user_id = await self.main.fetchval(
            "INSERT INTO users (access_hash, first_name) VALUES ($1, $2) RETURNING id", access_hash, name)
        await self.main.execute("INSERT INTO phones (phone, user_id) VALUES ($1, $2)", f"44{user_id:010d}", user_id)
        return User(int(user_id), access_hash, name)

    def channel(self, updates: Any) -> api.types.InputPeerChannel:
        """The input peer of the channel an Updates answer (createChannel, joinChannel) carries."""
        [chat] = updates.chats
        return api.types.InputPeerChannel(channel_id=chat.id, access_hash=chat.access_hash)

    def peer(self, user: User) -> api.types.InputPeerUser:
        return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash)

    def random_id(self) -> int:
        return next(self._random)

    async def call(self, user: User, request: Any) -> Any:
        """The decoded answer; an rpc_error raises ``RpcError`` as the service raised it."""
        data = await self.handlers[request.CONSTRUCTOR_ID](context(user_id=user.id), request.to_bytes())
        return request.read_result(Reader(data))  # as the function's result type says (Bool, Vector<T>, T)

    async def shard_rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """``sql`` run on every physical shard, rows concatenated."""
        out: list[asyncpg.Record] = []
        for physical in sorted(self.shards.map.dsns):
            pool = await self.shards.pool(physical)
            out.extend(await pool.fetch(sql, *args))
        return out


def messages_process(tmp: Path, postgres_dsn: str, redis_url: str, **env: str) -> ServiceProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    rpc_port, metrics_port = free_port(), free_port()
    full = {**os.environ, "MTLAB_POSTGRES_DSN": postgres_dsn, "MTLAB_REDIS_URL": redis_url,
            "MTLAB_MESSAGES_RPC_PORT": str(rpc_port), "MTLAB_MESSAGES_METRICS_PORT": str(metrics_port),
            "MTLAB_SHARD_LOGICAL": "8", "MTLAB_SHARD_PHYSICAL": "2", **env}
    return ServiceProcess("services.messages", full, tmp / "messages.log", rpc_port, metrics_port)
