"""Fixtures every test folder may use: one real Postgres and one real Redis per test run (mtlab.servers).

They start only when a test asks for them, under a private data directory (a server already running on the
machine is never touched), and stop when the run ends. A test gets its own empty database (``database``) and its
own Redis database number (``redis_url``), so tests never see each other's rows or keys.

When ``MTLAB_POSTGRES_DSN`` / ``MTLAB_REDIS_URL`` are set, those servers are used instead (mtlab.servers' rule);
the Postgres role must then be allowed to create databases.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from mtlab import servers
from mtlab.servers import ServerInfo


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: under root, Postgres runs as another account, which must be able to enter the
    # directory (tests/mtlab/test_servers.py explains).
    path = Path(tempfile.mkdtemp(prefix="mtlab-test-servers-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for kind in ("postgres", "redis"):
            state = path / f"{kind}.json"
            if state.exists():
                pid = json.loads(state.read_text())["pid"]
                servers.stop(ServerInfo(kind=kind, dsn="", managed=True, source="", data_dir=path, pid=pid))
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(servers_dir: Path) -> ServerInfo:
    return servers.ensure_postgres(servers_dir)


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> ServerInfo:
    return servers.ensure_redis(servers_dir)


def _with_path(dsn: str, path: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=path))


async def _admin(dsn: str, sql: str) -> None:
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(sql)
    finally:
        await con.close()


class Databases:
    """Makes empty databases on the test Postgres, and drops them when the run ends."""

    def __init__(self, server: ServerInfo) -> None:
        self.server = server
        self.made: list[str] = []

    def create(self) -> str:
        """The DSN of a new empty database."""
        name = f"mtlab_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(self.server.dsn, f"CREATE DATABASE {name}"))
        self.made.append(name)
        return _with_path(self.server.dsn, f"/{name}")

    def drop_all(self) -> None:
        """Drop every database made here, and the shard databases shard_db derived from them (<name>_shard_<n>)."""
        asyncio.run(self._drop(list(self.made)))
        self.made.clear()

    async def _drop(self, names: list[str]) -> None:
        # Eight at a time: each DROP DATABASE waits for a checkpoint, and drops waiting together share one (about
        # twice as fast; the run made ~100 databases, whose drops took 27 s one by one).
        async with asyncpg.create_pool(self.server.dsn, min_size=1, max_size=8) as pool:
            existing = {r["datname"] for r in await pool.fetch("SELECT datname FROM pg_database")}
            doomed = sorted(name for name in existing
                            if name in names or any(name.startswith(f"{made}_shard_") for made in names))

            async def drop(name: str) -> None:
                await pool.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

            await asyncio.gather(*(drop(name) for name in doomed))


@pytest.fixture(scope="session")
def databases(postgres: ServerInfo) -> Iterator[Databases]:
    made = Databases(postgres)
    yield made
    made.drop_all()


@pytest.fixture
def database(databases: Databases) -> str:
    """The DSN of an empty database of one's own."""
    return databases.create()


class RedisDatabases:
    """Hands out Redis database numbers of the test server, emptied first: private enough for one user at a time."""

    def __init__(self, server: ServerInfo) -> None:
        self.server = server
        self._numbers = itertools.cycle(range(1, 16))  # 0 is left alone (it may be a configured server's)

    def create(self) -> str:
        url = _with_path(self.server.dsn, f"/{next(self._numbers)}")
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        return url


@pytest.fixture(scope="session")
def redis_databases(redis_server: ServerInfo) -> RedisDatabases:
    return RedisDatabases(redis_server)


@pytest.fixture
def redis_url(redis_databases: RedisDatabases) -> str:
    return redis_databases.create()
