"""`mtlab db` and `mtlab shards`: the DBA's commands on the sharded database (shard_db).

    mtlab db migrate                 create and migrate the main database's map and every physical shard
    mtlab db status [--json]         every database: migrations applied and pending, logical shards served
    mtlab shards list [--json]       every logical shard: where it lives, its rows and bytes per table
    mtlab shards move N --to NAME    move logical shard N online (again without --to: resume; --abort)
    mtlab shards rebalance [--yes]   plan (and run) the moves that even out the physical shards
    mtlab shards add [--dsn DSN]     a new empty physical shard, for rebalance to fill

They find the main database as the other commands find a running stack (``supervisor.json`` in ``--data-dir``,
mtlab/stack.py), unless ``MTLAB_POSTGRES_DSN`` names it; the layout knobs are ``MTLAB_SHARD_*``. The work is in
shard_db (``layout.prepare``, ``admin``, ``move``); this module parses, prints and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: Fault injection for labs and tests: the move process exits (code 70, no cleanup) at this point of a move, as
#: a crash would: a step name (started, copying, catching_up, switched, done) or source_gone / target_active.
CRASH_ENV = "MTLAB_SHARD_MOVE_CRASH_AT"
CRASH_EXIT = 70


class _Failed(Exception):
    """A command cannot go on; the message is for the user."""


def main_dsn(args: argparse.Namespace) -> str:
    """The main database: MTLAB_POSTGRES_DSN, else the Postgres of the stack running in ``--data-dir``."""
    configured = os.environ.get("MTLAB_POSTGRES_DSN", "").strip()
    if configured:
        return configured
    from mtlab.supervisor import read_state, supervisor_running

    data_dir = Path(args.data_dir).absolute()
    state = read_state(data_dir)
    if state is None or not supervisor_running(data_dir):
        raise _Failed(f"no mtlab stack is running in {data_dir} and MTLAB_POSTGRES_DSN is not set: start one with "
                      "`mtlab up`, or name the main database in MTLAB_POSTGRES_DSN")
    row = next((r for r in state.get("servers", []) if r.get("name") == "postgres"), None)
    if row is None:
        raise _Failed(f"the stack in {data_dir} is still starting (or broken): see `mtlab status`")
    dsn = str(row["dsn"])
    if ":***@" in dsn:
        raise _Failed("the stack's Postgres has a password, which supervisor.json does not keep: set "
                      "MTLAB_POSTGRES_DSN to its DSN")
    return dsn


def _run(args: argparse.Namespace, work: Callable[[str], Coroutine[Any, Any, int]]) -> int:
    """Run ``work(main_dsn)``; a failure the user can act on is one line on stderr and exit code 1."""
    import asyncpg

    from services.common.config import ConfigError
    from services.common.migrations import MigrationError
    from shard_db.layout import LayoutError
    from shard_db.move import MoveError

    try:
        return asyncio.run(work(main_dsn(args)))
    except BrokenPipeError:  # `mtlab shards list | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (_Failed, MoveError, LayoutError, MigrationError, ConfigError) as exc:
        print(f"mtlab {args.command} {args.subcommand}: {exc}", file=sys.stderr)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"mtlab {args.command} {args.subcommand}: the database did not answer as expected: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> "0-3, 7"; an even spread such as the default round robin, [0, 4, 8, ... 60] ->
    "0, 4 ... 60 (step 4)"."""
    ordered = sorted(numbers)
    steps = {b - a for a, b in itertools.pairwise(ordered)}
    if len(ordered) > 3 and len(steps) == 1 and steps != {1}:
        return f"{ordered[0]}, {ordered[1]} ... {ordered[-1]} (step {steps.pop()})"
    parts: list[str] = []
    for n in ordered:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts) or "none"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


# -- mtlab db ----------------------------------------------------------------------------------------------


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        from services.common.config import shard_config
        from shard_db import prepare

        started = time.perf_counter()
        shard_map = await prepare(dsn, shard_config(), progress=lambda line: print(f"  {line}", flush=True))
        print(f"up to date: the main database and {len(shard_map.dsns)} physical shards "
              f"({shard_map.logical} logical shards) in {time.perf_counter() - started:.2f} s")
        return 0

    return _run(args, work)


def _status_lines(report: Any) -> list[str]:
    lines = []
    for d in report.databases:
        lines.append(f"{d.name:<8}{d.dsn}")
        if not d.reachable:
            lines.append(f"        UNREACHABLE: {d.error}")
            continue
        applied = ", ".join(d.applied) or "none"
        lines.append(f"        migrations: {applied}" + ("" if d.pending or d.changed else " (up to date)"))
        if d.pending:
            lines.append(f"        NOT APPLIED: {', '.join(d.pending)} (`mtlab db migrate` applies them)")
        if d.changed:
            lines.append(f"        CHANGED SINCE APPLIED: {', '.join(d.changed)} (restore the file; put changes in "
                         "a new one)")
        if d.other:
            lines.append(f"        also recorded: {', '.join(d.other)} (applied by their services)")
        if d.name == "main" and report.logical:
            lines.append(f"        map: {report.logical} logical shards over {len(report.databases) - 1} physical "
                         "shards")
        elif d.name != "main":
            by_state: dict[str, list[int]] = {}
            for n, state in d.serves.items():
                by_state.setdefault(state, []).append(n)
            groups = sorted(by_state.items(), key=lambda kv: min(kv[1]))
            served = "; ".join(f"{_ranges(ns)} {state}" for state, ns in groups)
            lines.append(f"        logical shards: {served or 'none'}")
        lines += [f"        PROBLEM: {p}" for p in d.problems]
    for m in report.moves:
        lines.append(f"move in progress: logical shard {m.logical} {m.source} -> {m.target}, step {m.step} "
                     f"(`mtlab shards move {m.logical}` resumes it, --abort rolls it back)")
    lines.append("something is behind or wrong (see above)" if report.behind else "everything is up to date")
    return lines


def _cmd_db_status(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        from shard_db.admin import status

        report = await status(dsn)
        if args.json:
            print(json.dumps({"behind": report.behind, "logical": report.logical,
                              "databases": [asdict(d) | {"behind": d.behind} for d in report.databases],
                              "moves": [asdict(m) for m in report.moves]}, indent=2))
        else:
            print("\n".join(_status_lines(report)))
        return 1 if report.behind else 0

    return _run(args, work)


# -- mtlab shards ------------------------------------------------------------------------------------------


def _cmd_shards_list(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        from shard_db.admin import shard_list

        listing = await shard_list(dsn)
        if args.json:
            print(json.dumps({
                "tables": listing.tables,
                "shards": [asdict(s) | {"rows": s.rows, "bytes": s.bytes} for s in listing.shards],
                "physical": [asdict(p) for p in listing.physical]}, indent=2))
            return 0
        # A column per table that holds rows anywhere (a terminal is only so wide; --json has every table).
        shown = [t for t in listing.tables if any(s.tables[t].rows for s in listing.shards)]
        width = {t: max(len(t), 7) for t in shown}
        print(f"{'logical':<8}{'physical':<10}{'version':<8}{'rows':>9}{'size':>10}  "
              + "  ".join(f"{t:>{width[t]}}" for t in shown))
        for s in listing.shards:
            note = f"  moving to {s.moving_to} ({s.move_step})" if s.moving_to else ""
            if s.state != "active":
                note += f"  shard_local: {s.state or 'nothing'}"
            print(f"{s.logical:<8}{s.physical:<10}{s.version:<8}{s.rows:>9}{_size(s.bytes):>10}  "
                  + "  ".join(f"{s.tables[t].rows:>{width[t]}}" for t in shown) + note)
        empty = [t for t in listing.tables if t not in shown]
        if empty:
            print(f"(no rows in {', '.join(empty)})")
        print()
        print(f"{'physical':<10}{'logical shards':<22}{'rows':>10}{'data':>11}{'database':>11}  dsn")
        for p in listing.physical:
            if not p.reachable:
                print(f"{p.name:<10}UNREACHABLE: {p.error}")
                continue
            shards = f"{_ranges(p.logical)} ({len(p.logical)})"
            other = f"  + {p.other_rows} rows of shards it does not serve" if p.other_rows else ""
            print(f"{p.name:<10}{shards:<22}{p.rows:>10}{_size(p.bytes):>11}{_size(p.database_bytes):>11}  "
                  f"{p.dsn}{other}")
        print("rows and data count the rows WHERE shard = n of every shard table (pg_column_size, without indexes); "
              "database is pg_database_size")
        return 0

    return _run(args, work)


class _ProgressBar:
    """Bulk-copy progress: a bar redrawn in place on a terminal (erased when the table is done: the move then
    says how it went), else a line every few seconds."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = time.monotonic()

    def __call__(self, table: str, done: int, total: int) -> None:
        share = done / total if total else 1.0
        if self.tty:
            line = f"  copying {table:<20} [{'#' * int(share * 30):<30}] {done}/{total} rows"
            self.out.write(f"\r{line}" if done < total else "\r" + " " * len(line) + "\r")
            self.out.flush()
        elif done < total and time.monotonic() - self.last > 2.0:
            self.last = time.monotonic()
            print(f"  copying {table}: {done}/{total} rows ({share:.0%})", file=self.out, flush=True)


def _crash_hook() -> Callable[[str], None] | None:
    point = os.environ.get(CRASH_ENV, "").strip()
    if not point:
        return None

    def hook(reached: str) -> None:
        if reached == point:
            print(f"  crashing at {reached} ({CRASH_ENV}): exit {CRASH_EXIT}, nothing cleaned up", flush=True)
            os._exit(CRASH_EXIT)

    return hook


async def _one_move(dsn: str, logical: int, target: str | None, options: Any) -> Any:
    """One move with Ctrl-C handled: the first stops at the next safe point, the second at once."""
    from shard_db.move import move

    loop = asyncio.get_running_loop()
    asked = False

    def interrupt() -> None:
        nonlocal asked
        asked = True
        print("\n  stopping at the next safe point (Ctrl-C again stops at once)", file=sys.stderr, flush=True)
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        return await move(dsn, logical, target, options=options, say=lambda line: print(f"  {line}", flush=True),
                          progress=_ProgressBar(sys.stdout), hook=_crash_hook(), should_stop=lambda: asked)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _report_line(r: Any) -> str:
    copied = sum(r.copied.values())
    return (f"moved logical shard {r.logical} from {r.source} to {r.target} in {r.seconds:.2f} s: {copied} rows "
            f"copied, {r.changes} captured changes replayed in {r.rounds} rounds, writes frozen {r.freeze_ms:.0f} ms "
            f"(after {r.lock_wait_ms:.0f} ms waiting for transactions in flight); map version {r.version}")


def _move_options(args: argparse.Namespace) -> Any:
    from shard_db.move import MoveOptions

    return MoveOptions(batch_rows=args.batch_rows, freeze_timeout=args.freeze_timeout)


def _stopped(args: argparse.Namespace, logical: int, step: str) -> int:
    print(f"mtlab shards {args.subcommand}: the move of logical shard {logical} stopped at step {step}; everything "
          f"done so far is kept. `mtlab shards move {logical}` resumes it, `mtlab shards move {logical} --abort` "
          "rolls it back", file=sys.stderr)
    return 130


def _cmd_shards_move(args: argparse.Namespace) -> int:
    from shard_db.move import MoveStopped, abort

    async def work(dsn: str) -> int:
        if args.abort:
            if args.to:
                raise _Failed("--abort rolls back the unfinished move; it takes no --to")
            await abort(dsn, args.logical, say=lambda line: print(f"  {line}", flush=True))
            return 0
        try:
            report = await _one_move(dsn, args.logical, args.to, _move_options(args))
        except MoveStopped as stop:
            return _stopped(args, stop.logical, stop.step)
        print(_report_line(report))
        return 0

    try:
        return _run(args, work)
    except KeyboardInterrupt:
        return _stopped(args, args.logical, "(interrupted at once)")


def _cmd_shards_rebalance(args: argparse.Namespace) -> int:
    from shard_db.move import MoveStopped

    async def work(dsn: str) -> int:
        from shard_db.admin import plan_rebalance, shard_list

        listing = await shard_list(dsn)
        if any(s.moving_to for s in listing.shards):
            raise _Failed("a move is unfinished (`mtlab db status` names it): finish it or abort it first")
        plan = plan_rebalance([s.physical for s in listing.shards], [p.name for p in listing.physical],
                              {s.logical: s.bytes for s in listing.shards})
        held = {p.name: len(p.logical) for p in listing.physical}
        print("now:   " + ", ".join(f"{name} {count}" for name, count in held.items()))
        if not plan:
            print("balanced: every physical shard holds the same number of logical shards (within one)")
            return 0
        for m in plan:
            held[m.source] -= 1
            held[m.target] += 1
        print("after: " + ", ".join(f"{name} {count}" for name, count in held.items()))
        sizes = {s.logical: s for s in listing.shards}
        for m in plan:
            s = sizes[m.logical]
            print(f"  move logical shard {m.logical:<5} {m.source} -> {m.target}  ({s.rows} rows, {_size(s.bytes)})")
        if not args.yes:
            print(f"{len(plan)} moves planned; run again with --yes to make them (one at a time, online)")
            return 0
        for i, m in enumerate(plan, 1):
            print(f"[{i}/{len(plan)}] logical shard {m.logical}: {m.source} -> {m.target}")
            try:
                report = await _one_move(dsn, m.logical, m.target, _move_options(args))
            except MoveStopped as stop:
                return _stopped(args, stop.logical, stop.step)
            print(_report_line(report))
        print(f"rebalanced: {len(plan)} moves made")
        return 0

    try:
        return _run(args, work)
    except KeyboardInterrupt:
        print("mtlab shards rebalance: interrupted; `mtlab db status` names an unfinished move", file=sys.stderr)
        return 130


def _cmd_shards_add(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        from shard_db.admin import add_physical, redact

        name, added = await add_physical(dsn, args.dsn)
        print(f"added physical shard {name} ({redact(added)}), migrated, serving no logical shard yet: "
              "`mtlab shards rebalance` plans moves to it")
        return 0

    return _run(args, work)


# -- the parsers -------------------------------------------------------------------------------------------


def add_db_commands(sub: Any, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``mtlab db`` and ``mtlab shards`` on the CLI's subparsers."""
    where = ("The main database is MTLAB_POSTGRES_DSN if set, else the Postgres of the stack running in --data-dir; "
             "the layout knobs are MTLAB_SHARD_* (shard_db/README.md).")

    db = sub.add_parser("db", help="the sharded database's migrations: migrate, status",
                        description=f"Migrations of the main database and every physical shard. {where}")
    db_sub = db.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                               help="migrate: apply what is missing; status: what every database has")
    migrate = db_sub.add_parser("migrate", help="create and migrate the shard map and every physical shard",
                                description="Apply the shard map's migrations to the main database, create the map "
                                "the first time (MTLAB_SHARD_LOGICAL shards over MTLAB_SHARD_PHYSICAL databases or "
                                f"MTLAB_SHARD_DSNS), and migrate every physical shard. Safe to re-run. {where}")
    add_data_dir(migrate)
    migrate.set_defaults(func=_cmd_db_migrate)
    status = db_sub.add_parser("status", help="every database: migrations applied and pending, shards served",
                               description="For the main database and each physical shard: its DSN (password "
                               "hidden), the migrations applied and those of the migration folders not applied yet, "
                               "the logical shards it serves and their state, and where it disagrees with the map. "
                               f"Exits 1 when something is behind or wrong. {where}")
    add_data_dir(status)
    status.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
    status.set_defaults(func=_cmd_db_status)

    shards = sub.add_parser("shards", help="logical shards: list, move online, rebalance, add a physical shard",
                            description=f"Where the logical shards live, and moving them. {where}")
    shards_sub = shards.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                                       help="list, move, rebalance or add")
    listing = shards_sub.add_parser("list", help="every logical shard: physical shard, version, rows and bytes",
                                    description="One row per logical shard (its physical shard, map version, rows "
                                    "and approximate bytes of each shard table WHERE shard = n), then a summary per "
                                    f"physical shard. Counts every row: a full scan of each table. {where}")
    add_data_dir(listing)
    listing.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    listing.set_defaults(func=_cmd_shards_list)

    def add_move_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch-rows", type=int, default=5000, metavar="N",
                       help="rows per COPY batch of the bulk copy (default 5000)")
        p.add_argument("--freeze-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="how long to wait for transactions in flight before the write freeze, per attempt "
                       "(default 5)")

    move = shards_sub.add_parser(
        "move", help="move a logical shard to another physical shard, online (resumable)",
        description="Copy logical shard N to physical shard --to while writes go on, replay the changes made "
        "meanwhile, freeze its writes for a moment to switch the map, then delete it from the old database "
        "(shard_db/move.py explains the protocol). Ctrl-C stops at the next safe point; run the same command "
        f"(--to may be left out) to resume, or with --abort to roll back. {where}")
    add_data_dir(move)
    move.add_argument("logical", type=int, help="the logical shard to move")
    move.add_argument("--to", metavar="PHYSICAL", help="the physical shard to move it to (shard0, shard1, ...)")
    move.add_argument("--abort", action="store_true",
                      help="roll back the unfinished move of this shard (before its switch) instead")
    add_move_options(move)
    move.set_defaults(func=_cmd_shards_move)

    rebalance = shards_sub.add_parser(
        "rebalance", help="plan the moves that even out the physical shards; --yes makes them",
        description="Plan moves so that every physical shard holds the same number of logical shards (within one), "
        f"as few as possible, the smallest shards first; print the plan; with --yes, make the moves one at a time. "
        f"{where}")
    add_data_dir(rebalance)
    rebalance.add_argument("--yes", action="store_true", help="make the planned moves (default: only print them)")
    add_move_options(rebalance)
    rebalance.set_defaults(func=_cmd_shards_rebalance)

    add = shards_sub.add_parser("add", help="add an empty physical shard (a new database) to the map",
                                description="Add physical shard shard<k>: the database --dsn, or <main>_shard_<k> on "
                                f"the main server (created when missing); migrate it. It serves nothing until "
                                f"`mtlab shards rebalance --yes` or `mtlab shards move` puts shards there. {where}")
    add_data_dir(add)
    add.add_argument("--dsn", metavar="DSN", help="the new database (default: <main database>_shard_<k>)")
    add.set_defaults(func=_cmd_shards_add)
