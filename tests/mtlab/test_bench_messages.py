"""`mtlab bench messages` on the test run's Postgres and Redis, with one-second phases: every phase runs, its counts
agree with what the database holds afterwards, and the report has its promised shape. Timings are never asserted."""

from __future__ import annotations

import json
from functools import partial

import anyio
import asyncpg

from mtlab.bench import messages as bench
from mtlab.bench.report import format_messages
from mtlab.cli import build_parser
from mtlab.servers import ServerInfo
from shard_db.layout import migrate_physical


async def _bench_databases(dsn: str) -> set[str]:
    con = await asyncpg.connect(dsn)
    try:
        rows = await con.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'mtlab_bench%'")
        return {r["datname"] for r in rows}
    finally:
        await con.close()


def test_every_phase_counts_what_the_database_holds(postgres: ServerInfo, redis_server: ServerInfo) -> None:
    before = anyio.run(_bench_databases, postgres.dsn)
    settings = bench.Settings(duration=1.0, clients=3, users=5, warmup=1)
    report = anyio.run(partial(bench.run, settings, postgres, redis_server), backend="asyncio")

    assert [p.name for p in report.phases] == list(bench.PHASES)
    for phase in report.phases:
        assert not phase.failed and not phase.errors, (phase.name, phase.failed, phase.errors)
        assert phase.sent > 0 and phase.seconds > 0
        assert len(phase.latencies) == phase.sent
        # The database holds exactly what was answered: both copies of each message, no outbox row left over.
        assert phase.sender_copies == phase.recipient_copies == phase.sent + phase.warmup, phase
        assert phase.outbox_left == 0 and phase.consistent
    ceiling, handlers, rpc, gateway = report.phases
    assert ceiling.warmup == 0 and handlers.warmup == rpc.warmup == gateway.warmup == 3
    assert gateway.users == 3  # one signed-up user per client
    assert report.ratio is not None and report.consistent

    data = json.loads(json.dumps(report.as_dict()))
    assert data["settings"]["clients"] == 3 and data["consistent"] is True
    for entry in data["phases"]:
        assert {"msgs_per_s", "p50_ms", "p99_ms", "sent", "database", "consistent", "cpu_cores"} <= entry.keys()
        assert entry["database"]["recipient_copies"] == entry["sent"] + entry["warmup"]

    text = "\n".join(format_messages(report))
    for line in ("ceiling, raw SQL", "service, in-process", "service, internal RPC", "end to end, gateway",
                 "service in-process / ceiling", "CPU per message sent"):
        assert line in text
    assert text.count(" ok (") == 4

    # Everything the run created is gone: the main database, its shard databases and the ceiling's.
    assert anyio.run(_bench_databases, postgres.dsn) == before


def test_the_fallback_ceiling_runs_the_pgbench_sql(database: str) -> None:
    """Without pgbench, asyncpg runs the script's statements; each message leaves both copies and no outbox row."""
    settings = bench.Settings(duration=0.5, clients=2, users=4, warmup=1)

    async def run() -> tuple[bench.Phase, bench.Counts]:
        await migrate_physical(database, database, list(range(8)), say=lambda _text: None)
        phase = bench.Phase("ceiling", "", settings.clients, settings.users)
        await bench.ceiling_asyncpg(phase, database, settings, 8, bench.sample_message(bench._text(1)))
        return phase, await bench.database_counts([database])

    phase, counts = anyio.run(run, backend="asyncio")
    assert phase.sent > 0 and not phase.errors
    assert counts.sender_copies == counts.recipient_copies == phase.sent + phase.warmup
    assert counts.outbox == 0
    script = bench.pgbench_script()
    for sql, _ in bench.SENDER_TXN + bench.RECIPIENT_TXN:
        assert sql in script


def test_the_command_line_reaches_the_benchmark() -> None:
    args = build_parser().parse_args(["bench", "messages", "--duration", "2", "--clients", "4", "--users", "50",
                                      "--json"])
    assert (args.what, args.duration, args.clients, args.users, args.json) == ("messages", 2.0, 4, 50, True)
