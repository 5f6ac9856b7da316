"""Online move of one logical shard to another physical shard: what `mtlab shards move` runs.

A logical shard ``n`` is the rows ``WHERE shard = n`` of every *shard table* of a physical database. Which
tables those are is discovered from the catalog (every table of the schema with a ``shard`` column; each needs a
primary key), never listed here: a table a later ``migrations/shard/*.sql`` adds moves with the rest.

The protocol. Writers keep writing to the source for the whole move, except during a short freeze at the end:

1. **started**: a row in ``shard_moves`` (main database) records the move; a session advisory lock on the main
   database keeps a second mover off the same shard.
2. **copying**: the target's ``shard_local`` row for ``n`` becomes ``'incoming'`` (``mtlab_shard_enter`` accepts
   only ``'active'``, so nothing writes there) and the target's leftover rows of ``n`` are deleted. On the source,
   a trigger ``mtlab_move_<n>`` on each shard table records the primary key of every changed row of ``n`` in
   ``shard_move_log`` (``migrations/shard/002_move_log.sql``), in the writer's own transaction. Then the bulk copy:
   per table, in one REPEATABLE READ snapshot, batches of ``batch_rows`` rows in primary-key order, each
   ``COPY ... TO STDOUT (FORMAT binary)`` on the source streamed into ``COPY ... FROM STDIN`` on the target.
   One snapshot per table keeps the copy free of transient conflicts on the secondary unique indexes
   (``messages_random_id``: a row deleted and its random_id reused by another during the copy).
3. **catching_up**: rounds of replay. A round reads, in one REPEATABLE READ snapshot S of the source, every log
   entry visible in S and the current rows for their keys; on the target, in one transaction, it deletes those
   keys and inserts the rows (a key whose row is gone stays deleted); then it deletes exactly those log entries.
   After a round the target equals the source as of S (a key with no entry in S has not changed since it was
   copied), and every change committed after S has an entry still in the log. Rounds repeat until the backlog is
   at most ``backlog_small`` entries.
4. **the freeze**: ``pg_advisory_lock(1836346466, n)`` (exclusive) on the source. Writers hold the shared form from
   ``mtlab_shard_enter`` until they commit, so taking it waits for the transactions in flight and queues every new
   one. Under the lock: the last round (nothing changes any more, so the target now equals the source), then row
   counts and a checksum of each table's rows (a sum of 64-bit row hashes), on both sides at once; then, in this
   order, the source's ``shard_local`` says ``'gone'``, the target's ``'active'``, and one transaction in the main
   database flips ``shard_map`` (physical, version + 1, moved_at) and records step **switched**. Then the lock is
   released: the writers that waited see ``'gone'``, fail with ``MTL01``, and the router reloads the map and runs
   them again on the target (shard_db/router.py). If the lock cannot be had within ``freeze_timeout`` (a long
   transaction on the shard), the move steps back (the queued writers go on), replays again and retries.
5. **switched** → **done**: the triggers are dropped, the source's rows of ``n`` deleted in batches, its log rows
   too.

Why this order survives a crash at any point: until the source says ``'gone'``, the source is the one home of
the shard (the target is ``'incoming'``); from then until the map flips, *no* database accepts its writes (they
fail, nothing is written twice or lost), and a resume finishes the switch; from the map flip on, the target is
the one home. The step in ``shard_moves`` and the ``shard_local`` rows on both sides say which case holds, so
``move()`` again resumes (a table whose bulk copy was cut short is copied again from its start), and
``abort()`` rolls back any move that has not switched yet. Ctrl-C in `mtlab shards move` (``should_stop``)
stops at the next batch, never inside the freeze.
"""

# S608: the only text formatted into SQL here is identifiers from the catalog (quoted by _ident) and integers
# (the logical shard); every other value goes in as a $n parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from shard_db.layout import load

if TYPE_CHECKING:
    Con: TypeAlias = asyncpg.Connection[asyncpg.Record]
else:
    Con = asyncpg.Connection

log = logging.getLogger("mtlab.shard_db.move")

#: The class of the two-int advisory lock ``mtlab_shard_enter`` takes shared ('mtlb', migrations/shard/001).
SHARD_LOCK = 1836346466
#: The class of the session lock a mover holds on the main database for the shard it moves ('mtmv').
MOVER_LOCK = 1836346742

#: The steps of a move, in order, and the method of ``_Move`` that takes a move from each to the next
#: (migrations/main/002_shard_moves.sql says what each step means). "done" and "aborted" end a move.
STEPS = {"started": "start", "copying": "copy", "catching_up": "catch_up_and_switch", "switched": "clean_up"}
ENDED = ("done", "aborted")

#: Session settings of every connection a move makes: row text (the checksum) must not depend on a server's or
#: a client's defaults, and pg_stat_activity shows who is copying.
SETTINGS = {"application_name": "mtlab shards move", "TimeZone": "UTC", "DateStyle": "ISO",
            "IntervalStyle": "postgres", "bytea_output": "hex", "extra_float_digits": "1"}

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]  # (table, rows copied so far, rows in the table)
Hook = Callable[[str], None]  # called with a step name once it is recorded, and with "source_gone", "target_active"


class MoveError(RuntimeError):
    """The move cannot go on as asked; the message says what to do (and what state the shard is in)."""


class MoveStopped(Exception):
    """The move stopped at a safe point because ``should_stop`` said so; run it again to resume."""

    def __init__(self, logical: int, step: str) -> None:
        super().__init__(f"the move of logical shard {logical} stopped at step {step}")
        self.logical = logical
        self.step = step


@dataclass(frozen=True)
class MoveOptions:
    batch_rows: int = 5000        # rows per COPY batch of the bulk copy (and per DELETE batch of the cleanup)
    backlog_small: int = 200      # catch up until the change log holds at most this many entries, then freeze
    catchup_rounds: int = 50      # at most this many rounds before freezing anyway (writes outpace the copy)
    freeze_timeout: float = 5.0   # seconds to wait for the write lock (in-flight transactions) before stepping back
    freeze_attempts: int = 5      # times to try for the write lock
    ddl_timeout: float = 2.0      # seconds a trigger's CREATE/DROP may wait for its table's lock per attempt


@dataclass
class MoveReport:
    logical: int
    source: str
    target: str
    copied: dict[str, int] = field(default_factory=dict)  # table -> rows (bulk copy)
    changes: int = 0               # log entries replayed, all rounds
    rounds: int = 0                # catch-up rounds, the one under the freeze included
    freeze_ms: float = 0.0
    lock_wait_ms: float = 0.0      # of the freeze: waiting for the transactions in flight
    verified: dict[str, int] = field(default_factory=dict)  # table -> rows, counts and checksums equal
    deleted: int = 0               # rows removed from the source at the cleanup
    seconds: float = 0.0
    version: int = 0               # the map version after the move
    resumed_from: str | None = None


@dataclass(frozen=True)
class ShardTable:
    """One table that holds logical shards: its columns (as the bulk copy lists them) and primary key."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def q(self) -> str:
        return _ident(self.name)

    @property
    def cols(self) -> str:
        return ", ".join(_ident(c) for c in self.columns)

    @property
    def keys(self) -> str:
        return ", ".join(_ident(c) for c in self.key)

    def keys_of(self, alias: str) -> str:
        return ", ".join(f"{alias}.{_ident(c)}" for c in self.key)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def shard_tables(con: Con) -> dict[str, ShardTable]:
    """Every table of the current schema with a ``shard`` column (partitions excluded), by name.

    Raises MoveError for one without a primary key: rows are copied, replayed and compared by key."""
    rows = await con.fetch(
        "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
        "WHERE s.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'shard' "
        "            AND a.attnum > 0 AND NOT a.attisdropped) ORDER BY c.relname")
    tables = {}
    for r in rows:
        columns = [a["attname"] for a in await con.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped "
            "AND attgenerated = '' ORDER BY attnum", r["oid"])]
        key = [a["attname"] for a in await con.fetch(
            "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord", r["oid"])]
        if not key:
            raise MoveError(f"shard table {r['relname']} has no primary key: an online move copies, replays and "
                            f"compares rows by key; give it one in a new migrations/shard/*.sql")
        tables[r["relname"]] = ShardTable(r["relname"], tuple(columns), tuple(key))
    return tables


async def _connect(dsn: str) -> Con:
    con: Con = await asyncpg.connect(dsn, timeout=10, server_settings=SETTINGS)
    return con


async def _ddl(con: Con, sql: str, timeout: float, say: Say) -> None:
    """Run DDL that needs a table lock, waiting at most ``timeout`` per attempt so that a long transaction on
    the table makes the move wait, not every writer of the table queued behind it."""
    for attempt in range(1, 31):
        try:
            async with con.transaction():
                await con.execute(f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'")
                await con.execute(sql)
            return
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            say(f"waiting for a table lock ({type(exc).__name__}, attempt {attempt}); retrying")
            await asyncio.sleep(min(0.1 * attempt, 1.0))
    raise MoveError(f"could not lock a shard table to change its triggers after 30 attempts: {sql[:60]}...; "
                    "look for long transactions in pg_stat_activity, then run the move again")


@dataclass
class _Move:
    """One move's connections and state; the step functions below each advance it by one step."""

    logical: int
    move_id: int
    source: str
    target: str
    step: str
    main: Con
    src: Con
    dst: Con
    tables: dict[str, ShardTable]
    copied: dict[str, int]
    options: MoveOptions
    say: Say
    progress: Progress | None
    hook: Hook | None
    should_stop: Callable[[], bool] | None
    report: MoveReport

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def fire(self, point: str) -> None:
        if self.hook is not None:
            self.hook(point)

    def checkpoint(self) -> None:
        """A safe place to stop: everything done so far is committed and recorded."""
        if self.should_stop is not None and self.should_stop():
            raise MoveStopped(self.logical, self.step)

    async def record(self, step: str, **extra: Any) -> None:
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(extra, start=3))
        await self.main.execute(
            f"UPDATE shard_moves SET step = $2, updated_at = now(){', ' + sets if sets else ''}"
            f"{', finished_at = now()' if step in ENDED else ''} WHERE id = $1", self.move_id, step, *extra.values())
        self.step = step
        log.info("move of logical shard %d: step %s", self.logical, step)

    async def local_state(self, con: Con) -> str | None:
        state: str | None = await con.fetchval("SELECT state FROM shard_local WHERE logical = $1", self.logical)
        return state

    # -- step: started -> copying --------------------------------------------------------------------------

    async def start(self) -> None:
        n = self.logical
        state = await self.local_state(self.dst)
        if state == "active":
            raise MoveError(f"{self.target} already serves logical shard {n} (shard_local says 'active') although "
                            f"the map puts it on {self.source}: check both databases before moving it")
        await self.dst.execute("INSERT INTO shard_local (logical, state) VALUES ($1, 'incoming') ON CONFLICT "
                               "(logical) DO UPDATE SET state = 'incoming', changed_at = now()", n)
        leftover = 0
        for t in self.tables.values():
            leftover += _count(await self.dst.execute(f"DELETE FROM {t.q} WHERE shard = $1", n))
        self.say(f"{self.target}: logical shard {n} marked 'incoming'"
                 + (f", {leftover} leftover rows of it deleted" if leftover else ""))
        for t in self.tables.values():
            await _ddl(self.src, self._trigger_sql(t), self.options.ddl_timeout, self.say)
        self.say(f"{self.source}: capturing changes of logical shard {n} (trigger mtlab_move_{n} on "
                 f"{len(self.tables)} tables: {', '.join(self.tables)})")
        await self.record("copying")

    def _trigger_sql(self, t: ShardTable) -> str:
        name = _ident(f"mtlab_move_{self.logical}")
        args = ", ".join([str(self.logical)] + ["'" + c.replace("'", "''") + "'" for c in t.key])
        return (f"DROP TRIGGER IF EXISTS {name} ON {t.q}; "
                f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {t.q} "
                f"FOR EACH ROW EXECUTE FUNCTION mtlab_move_capture({args})")

    # -- step: copying -> catching_up ----------------------------------------------------------------------

    async def copy(self) -> None:
        for t in self.tables.values():
            if t.name in self.copied:
                continue
            self.checkpoint()
            rows = await self._copy_table(t)
            self.copied[t.name] = rows
            await self.main.execute("UPDATE shard_moves SET copied = copied || jsonb_build_object($2::text, "
                                    "$3::bigint), updated_at = now() WHERE id = $1", self.move_id, t.name, rows)
        self.report.copied = dict(self.copied)
        await self.record("catching_up")

    async def _copy_table(self, t: ShardTable) -> int:
        n, batch = self.logical, self.options.batch_rows
        started = time.perf_counter()
        # A table cut short by an interruption starts again: its rows came from a snapshot that is gone.
        await self.dst.execute(f"DELETE FROM {t.q} WHERE shard = $1", n)
        # Fresh statistics, so that the batches below walk the primary key instead of sorting the shard each time.
        await self.src.execute(f"ANALYZE {t.q}")
        done = 0
        async with self.src.transaction(isolation="repeatable_read", readonly=True):
            total = int(await self.src.fetchval(f"SELECT count(*) FROM {t.q} WHERE shard = $1", n))
            after: Sequence[Any] | None = None
            while True:
                # The key that ends this batch (None: the rest of the table fits in it).
                where = f"shard = {n}" + (f" AND ({t.keys}) > ({_params(len(t.key))})" if after else "")
                bound = await self.src.fetchrow(
                    f"SELECT {t.keys} FROM {t.q} WHERE {where} ORDER BY {t.keys} OFFSET {batch - 1} LIMIT 1",
                    *(after or ()))
                upto = ""
                args = list(after or ())
                if bound is not None:
                    upto = f" AND ({t.keys}) <= ({_params(len(t.key), start=len(args) + 1)})"
                    args += list(bound.values())
                buf = io.BytesIO()
                status = await self.src.copy_from_query(f"SELECT {t.cols} FROM {t.q} WHERE {where}{upto}", *args,
                                                        output=buf, format="binary")
                buf.seek(0)
                await self.dst.copy_to_table(t.name, source=buf, columns=list(t.columns), format="binary")
                done += _count(status)
                if self.progress is not None:
                    self.progress(t.name, done, total)
                if bound is None:
                    break
                after = list(bound.values())
                self.checkpoint()
        await self.dst.execute(f"ANALYZE {t.q}")  # the target's planner knows the new rows from the first query on
        self.say(f"copied {t.name}: {done} rows in {time.perf_counter() - started:.2f} s")
        return done

    # -- step: catching_up -> switched ---------------------------------------------------------------------

    async def catch_up_and_switch(self) -> None:
        opts = self.options
        for _ in range(opts.catchup_rounds):
            self.checkpoint()
            applied = await self._replay_round()
            backlog = await self._backlog()
            self.say(f"catch-up round {self.report.rounds}: {applied} changes replayed, {backlog} arrived meanwhile")
            if backlog <= opts.backlog_small:
                break
            if backlog >= applied:  # a round takes as long as the writes it lets in: as small as it gets
                self.say(f"the backlog stopped shrinking at {backlog} (writes keep pace with the replay): "
                         "freezing with it")
                break
        else:
            self.say(f"the backlog is still above {opts.backlog_small} after {opts.catchup_rounds} rounds: "
                     "freezing anyway; the freeze lasts longer")
        for attempt in range(1, opts.freeze_attempts + 1):
            self.checkpoint()
            if await self._freeze_and_switch():
                return
            self.say(f"the write lock was not free within {opts.freeze_timeout:g} s (attempt {attempt} of "
                     f"{opts.freeze_attempts}): a long transaction on logical shard {self.logical}; writes go on, "
                     "catching up again")
            applied = await self._replay_round()
            self.say(f"catch-up round {self.report.rounds}: {applied} changes replayed")
        raise MoveError(f"could not take the write lock of logical shard {self.logical} on {self.source} in "
                        f"{opts.freeze_attempts} attempts: look for long transactions in pg_stat_activity there, "
                        "then run the move again (it resumes here)")

    async def _backlog(self) -> int:
        return int(await self.src.fetchval("SELECT count(*) FROM shard_move_log WHERE logical = $1", self.logical))

    async def _replay_round(self) -> int:
        """Replay every change the log shows in one snapshot of the source; the number of log entries done."""
        n = self.logical
        batches: list[tuple[ShardTable, str, io.BytesIO]] = []
        async with self.src.transaction(isolation="repeatable_read", readonly=True):
            ids = [r["id"] for r in await self.src.fetch("SELECT id FROM shard_move_log WHERE logical = $1", n)]
            if not ids:
                self.report.rounds += 1
                return 0
            for r in await self.src.fetch("SELECT tbl, jsonb_agg(DISTINCT pk)::text AS keys FROM shard_move_log "
                                          "WHERE logical = $1 GROUP BY tbl ORDER BY tbl", n):
                t = self.tables.get(r["tbl"])
                if t is None:
                    raise MoveError(f"the change log names table {r['tbl']}, which is not a shard table here")
                buf = io.BytesIO()
                await self.src.copy_from_query(
                    f"SELECT {t.cols} FROM {t.q} WHERE shard = {n} AND ({t.keys}) IN "
                    f"(SELECT {t.keys_of('k')} FROM jsonb_populate_recordset(NULL::{t.q}, $1::jsonb) AS k)",
                    r["keys"], output=buf, format="binary")
                buf.seek(0)
                batches.append((t, r["keys"], buf))
        async with self.dst.transaction():
            for t, keys, buf in batches:
                match = " AND ".join(f"t.{_ident(c)} = k.{_ident(c)}" for c in t.key)
                await self.dst.execute(f"DELETE FROM {t.q} AS t USING jsonb_populate_recordset(NULL::{t.q}, "
                                       f"$1::jsonb) AS k WHERE t.shard = {n} AND {match}", keys)
                await self.dst.copy_to_table(t.name, source=buf, columns=list(t.columns), format="binary")
        await self.src.execute("DELETE FROM shard_move_log WHERE id = ANY($1::bigint[])", ids)
        self.report.changes += len(ids)
        self.report.rounds += 1
        await self.main.execute("UPDATE shard_moves SET changes = changes + $2, updated_at = now() WHERE id = $1",
                                self.move_id, len(ids))
        return len(ids)

    async def _freeze_and_switch(self) -> bool:
        """The write freeze (module docstring, step 4); False when the lock was not free in time."""
        n, src = self.logical, self.src
        asked = time.perf_counter()
        try:
            await src.execute(f"SET lock_timeout = '{int(self.options.freeze_timeout * 1000)}ms'")
            await src.execute("SELECT pg_advisory_lock($1, $2)", SHARD_LOCK, n)
        except asyncpg.LockNotAvailableError:
            return False
        finally:
            await src.execute("RESET lock_timeout")
        frozen = time.perf_counter()
        self.report.lock_wait_ms = (frozen - asked) * 1000
        try:
            applied = await self._replay_round()
            await self._verify()
            await src.execute("UPDATE shard_local SET state = 'gone', changed_at = now() WHERE logical = $1", n)
            self.fire("source_gone")
            await self.dst.execute("UPDATE shard_local SET state = 'active', changed_at = now() WHERE logical = $1", n)
            self.fire("target_active")
            freeze_ms = (time.perf_counter() - frozen) * 1000
            async with self.main.transaction():
                version = await self.main.fetchval(
                    "UPDATE shard_map SET physical = $2, version = version + 1, moved_at = now() WHERE logical = $1 "
                    "RETURNING version", n, self.target)
                await self.record("switched", freeze_ms=freeze_ms)
        finally:
            # A connection that died took the lock with it; the error that killed it is the one to report.
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
                await src.execute("SELECT pg_advisory_unlock($1, $2)", SHARD_LOCK, n)
        self.report.freeze_ms = (time.perf_counter() - frozen) * 1000
        self.report.version = int(version)
        self.say(f"write freeze: lock taken after {self.report.lock_wait_ms:.0f} ms, last {applied} changes "
                 f"replayed, {len(self.report.verified)} tables verified ({sum(self.report.verified.values())} rows, "
                 f"counts and checksums equal); {self.source} says 'gone', {self.target} 'active', map version "
                 f"{version}; writes frozen for {self.report.freeze_ms:.0f} ms")
        self.fire("switched")
        return True

    async def _verify(self) -> None:
        mismatched = []
        for t in self.tables.values():
            (src_rows, src_sum), (dst_rows, dst_sum) = await asyncio.gather(
                _checksum(self.src, t, self.logical), _checksum(self.dst, t, self.logical))
            if (src_rows, src_sum) != (dst_rows, dst_sum):
                mismatched.append(f"{t.name} ({src_rows} rows, checksum {src_sum} on {self.source}; {dst_rows} "
                                  f"rows, checksum {dst_sum} on {self.target})")
            self.report.verified[t.name] = src_rows
        if mismatched:
            self.report.verified.clear()
            raise MoveError(f"the copy of logical shard {self.logical} differs from the source: "
                            f"{'; '.join(mismatched)}. Nothing was switched (the map still says {self.source}); "
                            f"`mtlab shards move {self.logical} --abort` rolls the move back")

    # -- step: switched -> done ----------------------------------------------------------------------------

    async def clean_up(self) -> None:
        n = self.logical
        for t in self.tables.values():
            await _ddl(self.src, f"DROP TRIGGER IF EXISTS {_ident(f'mtlab_move_{n}')} ON {t.q}",
                       self.options.ddl_timeout, self.say)
        self.report.deleted = await _delete_shard(self.src, self.tables.values(), n, self.options.batch_rows)
        await self.src.execute("DELETE FROM shard_move_log WHERE logical = $1", n)
        self.say(f"{self.source}: triggers dropped, {self.report.deleted} rows of logical shard {n} deleted")
        await self.record("done")


async def _checksum(con: Con, t: ShardTable, n: int) -> tuple[int, str]:
    """Rows of shard ``n`` in ``t`` and a checksum of their content: the sum of a 64-bit hash of each row's text
    (which includes its key). A sum needs no sort, so it costs one scan; a row that differs on one side changes
    its hash and so the sum."""
    row = await con.fetchrow(
        f"SELECT count(*) AS n, coalesce(sum(hashtextextended(x::text, 0)), 0)::text AS sum "
        f"FROM (SELECT {t.cols} FROM {t.q} WHERE shard = $1) AS x", n)
    if row is None:
        raise MoveError(f"no checksum row from {t.name}")
    return int(row["n"]), str(row["sum"])


async def _delete_shard(con: Con, tables: Iterable[ShardTable], n: int, batch: int) -> int:
    """Delete the rows of shard ``n`` from every table, ``batch`` at a time (short transactions)."""
    deleted = 0
    for t in tables:
        while True:
            done = _count(await con.execute(
                f"DELETE FROM {t.q} WHERE ({t.keys}) IN (SELECT {t.keys} FROM {t.q} WHERE shard = $1 LIMIT {batch})",
                n))
            deleted += done
            if done < batch:
                break
    return deleted


def _params(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


def _count(status: str) -> int:
    """The row count at the end of a command status ("DELETE 12", "COPY 500")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


# -- entry points ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveRow:
    id: int
    logical: int
    source: str
    target: str
    step: str
    copied: dict[str, int]


async def unfinished(con: Con, logical: int | None = None) -> list[MoveRow]:
    """The moves that have not ended (all, or of one logical shard)."""
    rows = await con.fetch(
        "SELECT id, logical, source, target, step, copied::text FROM shard_moves WHERE step NOT IN ('done', 'aborted') "
        "AND ($1::smallint IS NULL OR logical = $1) ORDER BY logical", logical)
    return [MoveRow(r["id"], r["logical"], r["source"], r["target"], r["step"], json.loads(r["copied"]))
            for r in rows]


class _Locked:
    """The main-database connection of a mover, holding the mover lock of one logical shard."""

    def __init__(self, main_dsn: str, logical: int) -> None:
        self.main_dsn = main_dsn
        self.logical = logical
        self.con: Con | None = None

    async def __aenter__(self) -> Con:
        self.con = con = await _connect(self.main_dsn)
        try:
            if not await con.fetchval("SELECT pg_try_advisory_lock($1, $2)", MOVER_LOCK, self.logical):
                holder = await con.fetchval(
                    "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' "
                    "AND l.classid = $1 AND l.objid = $2 AND l.granted LIMIT 1", MOVER_LOCK, self.logical)
                raise MoveError(f"another mover is working on logical shard {self.logical} (main database backend "
                                f"pid {holder}): wait for it, or stop it first")
        except BaseException:
            await con.close()
            raise
        return con

    async def __aexit__(self, *exc: object) -> None:
        if self.con is not None:
            await self.con.close()  # the lock goes with the session


async def _checked_tables(src: Con, dst: Con, source: str, target: str) -> dict[str, ShardTable]:
    """The shard tables, which must be the same on both sides (same columns, same keys), with move capture."""
    src_tables, dst_tables = await shard_tables(src), await shard_tables(dst)
    for name, con in ((source, src), (target, dst)):
        if await con.fetchval("SELECT to_regclass('shard_move_log')") is None:
            raise MoveError(f"{name} lacks shard_move_log (migrations/shard/002_move_log.sql): run `mtlab db migrate`")
    if src_tables != dst_tables:
        differ = sorted(set(src_tables) ^ set(dst_tables)) or sorted(
            k for k in src_tables if src_tables[k] != dst_tables.get(k))
        raise MoveError(f"the shard tables of {source} and {target} differ ({', '.join(differ)}): run "
                        "`mtlab db migrate` so both have every migration, then move again")
    if not src_tables:
        raise MoveError(f"{source} has no shard tables (no table with a shard column): run `mtlab db migrate`")
    return src_tables


async def move(main_dsn: str, logical: int, target: str | None, *, options: MoveOptions | None = None,
               say: Say | None = None, progress: Progress | None = None, hook: Hook | None = None,
               should_stop: Callable[[], bool] | None = None) -> MoveReport:
    """Move logical shard ``logical`` to physical shard ``target`` online, or resume its unfinished move
    (``target`` may then be None). Raises MoveError with an explanation, MoveStopped at a safe point."""
    options = options or MoveOptions()
    if options.batch_rows < 1 or options.freeze_timeout <= 0 or options.freeze_attempts < 1:
        raise MoveError("the batch size, the freeze timeout and the freeze attempts must be positive")
    say = say or (lambda _text: None)
    started = time.perf_counter()
    async with _Locked(main_dsn, logical) as main:
        shard_map = await load(main, main_dsn)
        if shard_map is None:
            raise MoveError("there is no shard map yet: run `mtlab db migrate`")
        if not 0 <= logical < shard_map.logical:
            raise MoveError(f"there is no logical shard {logical}: the map has 0 to {shard_map.logical - 1}")
        if target is not None and target not in shard_map.dsns:
            raise MoveError(f"there is no physical shard {target!r}: the map has {', '.join(sorted(shard_map.dsns))}")
        pending = await unfinished(main, logical)
        if pending:
            row = pending[0]
            if target is not None and target != row.target:
                raise MoveError(f"logical shard {logical} is being moved to {row.target} (step {row.step}): run "
                                f"`mtlab shards move {logical}` to finish that move, or add --abort to roll it back")
            source, target, step, move_id, copied = row.source, row.target, row.step, row.id, row.copied
            say(f"resuming the move of logical shard {logical} from {source} to {target} at step {step}")
        else:
            if target is None:
                raise MoveError(f"logical shard {logical} has no move to resume: say where to move it with --to")
            source = shard_map.physical_of(logical)
            if source == target:
                raise MoveError(f"logical shard {logical} is already on {target}: nothing to move")
            step, copied = "started", {}
        src = await _connect(shard_map.dsns[source])
        try:
            dst = await _connect(shard_map.dsns[target])
            try:
                tables = await _checked_tables(src, dst, source, target)
                if not pending:
                    src_state = await src.fetchval("SELECT state FROM shard_local WHERE logical = $1", logical)
                    if src_state != "active":
                        raise MoveError(f"the map puts logical shard {logical} on {source} but its shard_local says "
                                        f"{src_state or 'nothing'}: check the layout (`mtlab db status`) first")
                    move_id = int(await main.fetchval(
                        "INSERT INTO shard_moves (logical, source, target) VALUES ($1, $2, $3) RETURNING id",
                        logical, source, target))
                    say(f"moving logical shard {logical} from {source} to {target}")
                m = _Move(logical, move_id, source, target, step, main, src, dst, tables, dict(copied), options, say,
                          progress, hook, should_stop,
                          MoveReport(logical, source, target, copied=dict(copied),
                                     resumed_from=step if pending else None))
                if not pending:
                    m.fire("started")
                while m.step != "done":
                    await getattr(m, STEPS[m.step])()
                    if m.step != "switched":  # the freeze fires its own points, "switched" among them
                        m.fire(m.step)
                if not m.report.version:
                    m.report.version = int(await main.fetchval(
                        "SELECT version FROM shard_map WHERE logical = $1", logical))
            finally:
                await dst.close()
        finally:
            await src.close()
    m.report.seconds = time.perf_counter() - started
    say(f"moved logical shard {logical} from {source} to {target} in {m.report.seconds:.2f} s")
    return m.report


async def abort(main_dsn: str, logical: int, *, say: Say | None = None) -> str:
    """Roll back the unfinished move of ``logical`` (any step before the switch); the step it had reached."""
    say = say or (lambda _text: None)
    async with _Locked(main_dsn, logical) as main:
        shard_map = await load(main, main_dsn)
        pending = await unfinished(main, logical) if shard_map is not None else []
        if shard_map is None or not pending:
            raise MoveError(f"logical shard {logical} has no unfinished move to abort")
        row = pending[0]
        if row.step == "switched":
            raise MoveError(f"the move of logical shard {logical} to {row.target} has switched already (the map "
                            f"points there): run `mtlab shards move {logical}` to finish its cleanup, then move it "
                            f"back if you want it on {row.source}")
        src = await _connect(shard_map.dsns[row.source])
        try:
            dst = await _connect(shard_map.dsns[row.target])
            try:
                tables = await shard_tables(src)
                src_state = await src.fetchval("SELECT state FROM shard_local WHERE logical = $1", logical)
                # The target first: it must not serve the shard once the source does again. It can say 'active'
                # only when a move died inside its freeze, after the source said 'gone'.
                await dst.execute("DELETE FROM shard_local WHERE logical = $1 AND (state = 'incoming' OR "
                                  "(state = 'active' AND $2::text = 'gone'))", logical, src_state)
                for t in tables.values():
                    await _ddl(src, f"DROP TRIGGER IF EXISTS {_ident(f'mtlab_move_{logical}')} ON {t.q}", 2.0, say)
                await src.execute("DELETE FROM shard_move_log WHERE logical = $1", logical)
                if src_state == "gone":
                    await src.execute("UPDATE shard_local SET state = 'active', changed_at = now() "
                                      "WHERE logical = $1", logical)
                deleted = await _delete_shard(dst, (await shard_tables(dst)).values(), logical, 5000)
            finally:
                await dst.close()
        finally:
            await src.close()
        await main.execute("UPDATE shard_moves SET step = 'aborted', updated_at = now(), finished_at = now() "
                           "WHERE id = $1", row.id)
    say(f"aborted the move of logical shard {logical} to {row.target} (it had reached {row.step}): {row.source} "
        f"serves it as before; {deleted} copied rows deleted from {row.target}")
    return row.step
