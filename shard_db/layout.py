"""The shard layout: which physical databases exist, which logical shard lives in which, and setting it all up.

``prepare(main_dsn, config)`` is what ``mtlab db migrate`` and every service that uses shards run at start-up;
it is safe to run again and from several processes at once:

1. migrate the main database's shard-map tables (``migrations/main``);
2. the first time only, create the map from ``ShardConfig``: ``logical`` shards over the databases of
   ``MTLAB_SHARD_DSNS``, or over ``physical`` databases ``<main>_shard_<n>`` on the main server (created when
   missing), logical shard ``n`` in physical ``n % physical`` (round robin: users are numbered in sign-up order
   and live in logical shard ``id % logical``, so consecutive users land in different databases, and even the
   first two users of a fresh stack talk across databases, through the outbox);
3. apply ``migrations/shard`` to every physical database, and record in each which logical shards it serves
   (``shard_local``).

Once the map exists, it is the truth: a config that disagrees with it about the number of logical shards is
refused with an explanation (resharding moves logical shards between databases; it never changes their number).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.common import db
from services.common.config import ShardConfig
from services.common.migrations import migrate

log = logging.getLogger("mtlab.shard_db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MAIN_MIGRATIONS = MIGRATIONS / "main"
SHARD_MIGRATIONS = MIGRATIONS / "shard"

#: Held on the main database while the map is created, so two services starting at once make one map.
LAYOUT_LOCK = 0x6D746C6162736864  # "mtlabshd"


class LayoutError(RuntimeError):
    """The shard layout cannot be used as configured; the message says what to do."""


@dataclass(frozen=True)
class ShardMap:
    """A snapshot of the map: logical shard -> physical name, and each physical name's DSN."""

    logical: int
    placement: tuple[str, ...]  # placement[n]: the physical shard holding logical shard n
    dsns: dict[str, str]
    versions: tuple[int, ...]

    def physical_of(self, shard: int) -> str:
        return self.placement[shard]

    def shards_of(self, physical: str) -> list[int]:
        return [n for n, p in enumerate(self.placement) if p == physical]


def derived_dsn(main_dsn: str, index: int) -> str:
    """The DSN of physical shard ``index`` on the main server: the main database's name plus ``_shard_<index>``."""
    parts = urlsplit(main_dsn)
    name = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path=f"/{name}_shard_{index}"))


def stored_dsn(main_dsn: str, dsn: str) -> str:
    """How the map records a shard's DSN: a database on the main server as ``postgresql:///<name>`` (no host), so
    the map stays right when that server comes back on another port or address (mtlab's own Postgres picks a
    free port at every start); a database elsewhere as given."""
    main, shard = urlsplit(main_dsn), urlsplit(dsn)
    if (shard.scheme, shard.netloc, shard.query) == (main.scheme, main.netloc, main.query):
        return f"{shard.scheme}://{shard.path}"  # postgresql:///<name>
    return dsn


def resolve_dsn(main_dsn: str, stored: str) -> str:
    """The DSN to connect to for a recorded one: a host-less DSN is on the main server."""
    parts = urlsplit(stored)
    if parts.netloc:
        return stored
    main = urlsplit(main_dsn)
    return urlunsplit(main._replace(path=parts.path))


def physical_dsns(main_dsn: str, config: ShardConfig) -> list[str]:
    if config.dsns.strip():
        return [d.strip() for d in config.dsns.split(",") if d.strip()]
    return [derived_dsn(main_dsn, i) for i in range(config.physical)]


async def _create_database(main_dsn: str, dsn: str) -> bool:
    """Create the database of ``dsn`` on its server when it is missing (needs CREATEDB); True when created."""
    name = urlsplit(dsn).path.lstrip("/")
    con = await asyncpg.connect(urlunsplit(urlsplit(dsn)._replace(path="/postgres")), timeout=10)
    try:
        if await con.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await con.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:  # another process made it a moment ago
            return False
        return True
    finally:
        await con.close()


async def load(con: db.Connection | asyncpg.Connection[asyncpg.Record], main_dsn: str) -> ShardMap | None:
    """The map in the main database (``con``, reached as ``main_dsn``), or None when it was never created."""
    rows = await con.fetch("SELECT logical, physical, version FROM shard_map ORDER BY logical")
    if not rows:
        return None
    dsns = {r["name"]: resolve_dsn(main_dsn, r["dsn"]) for r in await con.fetch("SELECT name, dsn FROM shard_physical")}
    return ShardMap(logical=len(rows), placement=tuple(r["physical"] for r in rows), dsns=dsns,
                    versions=tuple(r["version"] for r in rows))


async def _create_map(con: db.Connection, main_dsn: str, config: ShardConfig, dsns: list[str]) -> ShardMap:
    names = [f"shard{i}" for i in range(len(dsns))]
    async with con.transaction():
        await con.executemany("INSERT INTO shard_physical (name, dsn) VALUES ($1, $2)",
                              [(name, stored_dsn(main_dsn, dsn)) for name, dsn in zip(names, dsns, strict=True)])
        placement = [names[n % len(names)] for n in range(config.logical)]
        await con.executemany("INSERT INTO shard_map (logical, physical) VALUES ($1, $2)", list(enumerate(placement)))
        await con.execute("INSERT INTO shard_settings (key, value) VALUES ('logical', $1)", str(config.logical))
    log.info("created the shard map: %d logical shards over %d databases", config.logical, len(names))
    return ShardMap(config.logical, tuple(placement), dict(zip(names, dsns, strict=True)), (1,) * config.logical)


async def prepare(main_dsn: str, config: ShardConfig,
                  progress: Callable[[str], None] | None = None) -> ShardMap:
    """Migrate the main database's map tables, create the map the first time, migrate every physical shard."""
    say = progress or (lambda _text: None)
    main = await db.create_pool(main_dsn, max_size=2)
    try:
        applied = await migrate(main, MAIN_MIGRATIONS, namespace="shard_map")
        if applied:
            say(f"main database: applied {', '.join(applied)}")
        async with main.acquire() as con:
            await con.execute("SELECT pg_advisory_lock($1)", LAYOUT_LOCK)
            try:
                shard_map = await load(con, main_dsn)
                if shard_map is None:
                    dsns = physical_dsns(main_dsn, config)
                    for dsn in dsns:
                        if await _create_database(main_dsn, dsn):
                            say(f"created database {urlsplit(dsn).path.lstrip('/')}")
                    shard_map = await _create_map(con, main_dsn, config, dsns)
                    say(f"created the shard map: {config.logical} logical shards over {len(dsns)} databases")
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", LAYOUT_LOCK)
    finally:
        await main.close()
    if shard_map.logical != config.logical:
        raise LayoutError(
            f"the shard map has {shard_map.logical} logical shards but MTLAB_SHARD_LOGICAL is {config.logical}: "
            f"the count is fixed when the map is created (resharding moves logical shards between databases with "
            f"`mtlab shards move`). Unset MTLAB_SHARD_LOGICAL, or start from an empty main database.")
    for name, dsn in sorted(shard_map.dsns.items()):
        await migrate_physical(main_dsn, dsn, shard_map.shards_of(name), say=_prefixed(say, name))
    return shard_map


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda text: say(f"{prefix}: {text}")


async def migrate_physical(main_dsn: str, dsn: str, serves: list[int], say: Callable[[str], None]) -> list[str]:
    """Apply the shard migrations to one physical database and record the logical shards it serves."""
    await _create_database(main_dsn, dsn)
    pool = await db.create_pool(dsn, max_size=2)
    try:
        applied = await migrate(pool, SHARD_MIGRATIONS, namespace="shard")
        if applied:
            say(f"applied {', '.join(applied)}")
        async with pool.acquire() as con:
            # Only shards this database has never seen: a moved-away shard stays 'gone', a moving one 'incoming'.
            await con.executemany("INSERT INTO shard_local (logical, state) VALUES ($1, 'active') "
                                  "ON CONFLICT (logical) DO NOTHING", [(n,) for n in serves])
    finally:
        await pool.close()
    return applied
