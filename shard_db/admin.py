"""What a DBA asks of the sharded database: `mtlab db status`, `mtlab shards list|rebalance|add` (mtlab/dbcli.py).

- ``status(main_dsn)``: every database (main and each physical shard), the migrations it has applied and any of
  the migration folders it has not, the logical shards it serves (``shard_local``), and where it disagrees with
  the map;
- ``shard_list(main_dsn)``: per logical shard, its physical shard, map version and rows and approximate bytes per
  shard table (``WHERE shard = n``); per physical shard, the totals;
- ``plan_rebalance(...)``: the moves that leave each physical shard with an equal number of logical shards
  (within one), as few as possible, the smallest shards first (pure: no database);
- ``add_physical(main_dsn, dsn)``: a new, empty physical shard in the map, migrated, for rebalance to fill.

The data comes back as dataclasses; ``asdict`` of them is what ``--json`` prints.
"""

# S608: the only text formatted into SQL here is table names from the catalog, quoted.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.common.migrations import discover
from shard_db.layout import (
    MAIN_MIGRATIONS,
    SHARD_MIGRATIONS,
    ShardMap,
    derived_dsn,
    load,
    migrate_physical,
    resolve_dsn,
    stored_dsn,
)
from shard_db.move import MoveRow, shard_tables, unfinished

#: The migration folders shard_db owns, by database kind: what `mtlab db migrate` applies and status judges.
FOLDERS: dict[str, tuple[str, Path]] = {"main": ("shard_map", MAIN_MIGRATIONS), "shard": ("shard", SHARD_MIGRATIONS)}


def redact(dsn: str) -> str:
    """A DSN without its password (what is printed, and what --json carries)."""
    parts = urlsplit(dsn)
    if not parts.password:
        return dsn
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


async def _connect(dsn: str) -> asyncpg.Connection[asyncpg.Record]:
    con: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        dsn, timeout=5, server_settings={"application_name": "mtlab db"})
    return con


# -- mtlab db status ---------------------------------------------------------------------------------------


@dataclass
class DatabaseStatus:
    name: str                      # "main", or the physical shard's name
    dsn: str                       # password redacted
    reachable: bool = True
    error: str = ""
    applied: list[str] = field(default_factory=list)    # shard_db's migrations recorded here, in order
    pending: list[str] = field(default_factory=list)    # files of the folder not applied yet
    changed: list[str] = field(default_factory=list)    # applied, but the file changed since (migrate refuses)
    other: list[str] = field(default_factory=list)      # other components' migrations recorded here (auth/...)
    serves: dict[int, str] = field(default_factory=dict)  # logical shard -> state in shard_local (physical only)
    problems: list[str] = field(default_factory=list)   # where this database and the map disagree

    @property
    def behind(self) -> bool:
        return not self.reachable or bool(self.pending or self.changed or self.problems)


@dataclass
class LayoutStatus:
    databases: list[DatabaseStatus]
    logical: int                   # 0: no map yet
    moves: list[MoveRow]           # unfinished moves

    @property
    def behind(self) -> bool:
        return self.logical == 0 or any(d.behind for d in self.databases)


async def _migrations(con: asyncpg.Connection[asyncpg.Record], status: DatabaseStatus, kind: str) -> None:
    namespace, folder = FOLDERS[kind]
    recorded: dict[str, str] = {}
    if await con.fetchval("SELECT to_regclass('mtlab_migrations')") is not None:
        recorded = {r["name"]: r["checksum"] for r in
                    await con.fetch("SELECT name, checksum FROM mtlab_migrations ORDER BY applied_at, name")}
    files = discover(folder, namespace)
    status.applied = [name for name in recorded if name.startswith(f"{namespace}/")]
    status.other = [name for name in recorded if not name.startswith(f"{namespace}/")]
    status.pending = [m.name for m in files if m.name not in recorded]
    status.changed = [m.name for m in files if m.name in recorded and recorded[m.name] != m.checksum]


async def _physical_status(name: str, dsn: str, shard_map: ShardMap, moves: list[MoveRow]) -> DatabaseStatus:
    status = DatabaseStatus(name, redact(dsn))
    try:
        con = await _connect(dsn)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        status.reachable, status.error = False, f"{type(exc).__name__}: {exc}"
        return status
    try:
        await _migrations(con, status, "shard")
        if await con.fetchval("SELECT to_regclass('shard_local')") is not None:
            status.serves = {r["logical"]: r["state"] for r in
                             await con.fetch("SELECT logical, state FROM shard_local ORDER BY logical")}
    finally:
        await con.close()
    moving = {m.logical: m for m in moves}
    for n in shard_map.shards_of(name):
        state = status.serves.get(n)
        if state != "active" and not (n in moving and state == "gone"):  # a move that died in its freeze
            status.problems.append(f"the map puts logical shard {n} here but shard_local says {state or 'nothing'}")
    for n, state in status.serves.items():
        if state == "active" and shard_map.physical_of(n) != name and not (n in moving and moving[n].target == name):
            status.problems.append(f"serves logical shard {n} although the map puts it on {shard_map.physical_of(n)}")
        if state == "incoming" and not (n in moving and moving[n].target == name):
            status.problems.append(f"logical shard {n} is 'incoming' but no move brings it here "
                                   f"(`mtlab shards move {n} --abort` after a crash cleans up)")
    return status


async def status(main_dsn: str) -> LayoutStatus:
    """Every database of the layout and how far its migrations are; raises when the main database is down."""
    main = DatabaseStatus("main", redact(main_dsn))
    con = await _connect(main_dsn)
    try:
        await _migrations(con, main, "main")
        shard_map = (await load(con, main_dsn) if await con.fetchval("SELECT to_regclass('shard_map')") is not None
                     else None)
        moves = (await unfinished(con) if shard_map is not None and
                 await con.fetchval("SELECT to_regclass('shard_moves')") is not None else [])
    finally:
        await con.close()
    if shard_map is None:
        main.problems.append("there is no shard map yet: run `mtlab db migrate`")
        return LayoutStatus([main], 0, [])
    shards = await asyncio.gather(*(_physical_status(name, dsn, shard_map, moves)
                                    for name, dsn in sorted(shard_map.dsns.items(), key=lambda kv: _order(kv[0]))))
    return LayoutStatus([main, *shards], shard_map.logical, moves)


def _order(name: str) -> tuple[int, str]:
    """shard2 before shard10."""
    digits = name.lstrip("abcdefghijklmnopqrstuvwxyz_")
    return (int(digits) if digits.isdigit() else 1 << 30, name)


# -- mtlab shards list -------------------------------------------------------------------------------------


@dataclass
class TableSize:
    rows: int = 0
    bytes: int = 0                 # sum of pg_column_size of the rows: the data, without indexes and overhead


@dataclass
class LogicalShard:
    logical: int
    physical: str
    version: int
    moved_at: str | None
    state: str | None              # in shard_local of its physical shard ('active' unless something is wrong)
    tables: dict[str, TableSize]
    moving_to: str | None = None   # an unfinished move
    move_step: str | None = None

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())


@dataclass
class PhysicalShard:
    name: str
    dsn: str
    logical: list[int]
    rows: int = 0
    bytes: int = 0
    database_bytes: int = 0        # pg_database_size: everything, indexes and free space included
    other_rows: int = 0            # rows of logical shards it does not serve (a move's copy, a crash's leftovers)
    reachable: bool = True
    error: str = ""


@dataclass
class ShardList:
    tables: list[str]
    shards: list[LogicalShard]
    physical: list[PhysicalShard]


async def _sizes(dsn: str) -> tuple[dict[int, dict[str, TableSize]], dict[int, str], int, list[str]]:
    """Per logical shard present here, per table: rows and bytes; shard_local; the database's size; the tables."""
    con = await _connect(dsn)
    try:
        found: dict[int, dict[str, TableSize]] = {}
        tables = await shard_tables(con)
        for t in tables.values():
            for r in await con.fetch(f"SELECT shard, count(*) AS n, coalesce(sum(pg_column_size(t.*)), 0) AS b "
                                     f"FROM {t.q} AS t GROUP BY shard"):
                found.setdefault(r["shard"], {})[t.name] = TableSize(int(r["n"]), int(r["b"]))
        local = {r["logical"]: r["state"] for r in await con.fetch("SELECT logical, state FROM shard_local")}
        size = int(await con.fetchval("SELECT pg_database_size(current_database())"))
        return found, local, size, list(tables)
    finally:
        await con.close()


async def shard_list(main_dsn: str) -> ShardList:
    con = await _connect(main_dsn)
    try:
        shard_map = await load(con, main_dsn)
        if shard_map is None:
            raise RuntimeError("there is no shard map yet: run `mtlab db migrate`")
        meta = {r["logical"]: r for r in await con.fetch("SELECT logical, version, moved_at FROM shard_map")}
        moves = {m.logical: m for m in await unfinished(con)}
    finally:
        await con.close()
    names = sorted(shard_map.dsns, key=_order)
    results = await asyncio.gather(*(_sizes(shard_map.dsns[name]) for name in names), return_exceptions=True)
    tables: set[str] = set()
    physical, per_db = [], {}
    for name, result in zip(names, results, strict=True):
        p = PhysicalShard(name, redact(shard_map.dsns[name]), shard_map.shards_of(name))
        if isinstance(result, BaseException):
            p.reachable, p.error = False, f"{type(result).__name__}: {result}"
        else:
            per_db[name] = result
            found, _local, p.database_bytes, names_here = result
            tables.update(names_here)
            for n, by_table in found.items():
                if n in p.logical:
                    p.rows += sum(t.rows for t in by_table.values())
                    p.bytes += sum(t.bytes for t in by_table.values())
                else:
                    p.other_rows += sum(t.rows for t in by_table.values())
        physical.append(p)
    shards = []
    for n in range(shard_map.logical):
        name = shard_map.physical_of(n)
        found, local, _size, _names = per_db.get(name, ({}, {}, 0, []))
        moved_at = meta[n]["moved_at"]
        m = moves.get(n)
        shards.append(LogicalShard(
            n, name, int(meta[n]["version"]), moved_at.isoformat() if moved_at else None, local.get(n),
            {t: found.get(n, {}).get(t, TableSize()) for t in sorted(tables)},
            m.target if m else None, m.step if m else None))
    return ShardList(sorted(tables), shards, physical)


# -- mtlab shards rebalance --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedMove:
    logical: int
    source: str
    target: str


def plan_rebalance(placement: Sequence[str], physical: Sequence[str],
                   sizes: dict[int, int] | None = None) -> list[PlannedMove]:
    """Moves after which every physical shard holds ``len(placement) // len(physical)`` logical shards or one
    more. The extra ones stay where there are most already, so the plan has as few moves as possible; from a
    shard with too many, the smallest logical shards (by ``sizes``, bytes) go first, the highest number on a tie.
    """
    if not physical:
        raise ValueError("no physical shards to balance over")
    held = Counter(placement)
    names = sorted(physical, key=lambda p: (-held[p], _order(p)))  # the fullest first: they keep the extras
    base, extra = divmod(len(placement), len(names))
    quota = {p: base + (1 if i < extra else 0) for i, p in enumerate(names)}
    sizes = sizes or {}
    leaving: list[tuple[int, str]] = []
    for p in names:
        surplus = held[p] - quota[p]
        if surplus > 0:
            mine = sorted((n for n, q in enumerate(placement) if q == p), key=lambda n: (sizes.get(n, 0), -n))
            leaving += [(n, p) for n in mine[:surplus]]
    room = [p for p in sorted(names, key=lambda p: (held[p], _order(p))) for _ in range(quota[p] - held[p])]
    return [PlannedMove(n, source, target) for (n, source), target in zip(leaving, room, strict=True)]


# -- mtlab shards add --------------------------------------------------------------------------------------


async def add_physical(main_dsn: str, dsn: str | None = None) -> tuple[str, str]:
    """A new physical shard named ``shard<k>`` (the next free k), on ``dsn`` or ``<main>_shard_<k>`` on the main
    server (created when missing), migrated and serving nothing yet: (name, dsn)."""
    con = await _connect(main_dsn)
    try:
        existing = {r["name"]: resolve_dsn(main_dsn, r["dsn"])
                    for r in await con.fetch("SELECT name, dsn FROM shard_physical")}
        k = 1 + max((_order(name)[0] for name in existing if _order(name)[0] < 1 << 30), default=-1)
        name, dsn = f"shard{k}", dsn or derived_dsn(main_dsn, k)
        if dsn in existing.values():
            raise RuntimeError(f"{redact(dsn)} is a physical shard already")
        # Migrated before the map names it: a database the map names is one every service can use.
        await migrate_physical(main_dsn, dsn, [], say=lambda _text: None)
        await con.execute("INSERT INTO shard_physical (name, dsn) VALUES ($1, $2)", name, stored_dsn(main_dsn, dsn))
    finally:
        await con.close()
    return name, dsn
