"""`mtlab bench fanout` on the test run's Postgres and Redis, tiny: a few latency samples and a channel post to 200
lightweight subscriber sessions. Every push must arrive (a stack that did not push would lose every sample and
leave the subscribers empty-handed), each subscriber exactly once; the run leaves no process or database behind.
Timings are never asserted."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import anyio
import asyncpg

from mtlab.bench import fanout as bench
from mtlab.bench.report import format_fanout
from mtlab.cli import build_parser
from mtlab.servers import ServerInfo


async def _bench_databases(dsn: str) -> set[str]:
    con = await asyncpg.connect(dsn)
    try:
        rows = await con.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'mtlab_bench%'")
        return {r["datname"] for r in rows}
    finally:
        await con.close()


def test_every_push_arrives_and_every_subscriber_gets_the_post_once(postgres: ServerInfo,
                                                                    redis_server: ServerInfo) -> None:
    before = anyio.run(_bench_databases, postgres.dsn)
    settings = bench.Settings(samples=5, load_clients=3, subscribers=200, connections=3, warmup=1)
    report = anyio.run(partial(bench.run, settings, postgres, redis_server), backend="asyncio")

    for phase in (report.idle, report.loaded):
        assert phase is not None and not phase.failed, phase
        # every message's push reached the receiver, and its latency is a real, positive duration
        assert phase.lost == 0 and len(phase.latencies) == settings.samples
        assert all(0 < t < settings.timeout for t in phase.latencies)
        p50, p99 = phase.percentile(50), phase.percentile(99)
        assert p50 is not None and p99 is not None and 0 < p50 <= p99
    assert report.loaded is not None and report.loaded.load_clients == 3 and report.loaded.load_sent > 0

    f = report.fanout
    assert f is not None and not f.failed, f
    assert f.subscribed == f.subscribers == 200 and not f.subscribe_errors
    # Decrypted afterwards: every session received the post, and none twice.
    assert f.received == 200 and f.duplicates == 0 and f.frames >= 200
    assert f.first is not None and f.median is not None and f.last is not None
    assert 0 < f.first <= f.median <= f.last
    assert f.cpu.get("gateway") is not None and f.cpu.get("updates") is not None
    assert report.consistent

    data = json.loads(json.dumps(report.as_dict()))
    assert data["consistent"] is True and data["fanout"]["received"] == 200
    assert data["idle"]["p50_ms"] > 0 and data["loaded"]["load"]["sent"] == report.loaded.load_sent
    text = "\n".join(format_fanout(report))
    for line in ("Send-to-receive latency", "idle", "loaded", "last session had it after",
                 "received: 200/200 sessions exactly once each", "CPU seconds during the fan-out: gateway"):
        assert line in text, text

    # Everything the run started is gone: its services and its databases.
    assert set(report.pids) == {"messages", "updates", "auth", "gateway"}
    for name, pid in report.pids.items():
        cmdline = Path(f"/proc/{pid}/cmdline")
        assert not cmdline.exists() or f"services.{name}" not in cmdline.read_bytes().decode(errors="replace")
    assert anyio.run(_bench_databases, postgres.dsn) == before


def test_the_command_line_reaches_the_benchmark() -> None:
    args = build_parser().parse_args(["bench", "fanout", "--samples", "20", "--subscribers", "500",
                                      "--connections", "5", "--clients", "4", "--json"])
    assert (args.what, args.samples, args.subscribers, args.connections, args.clients, args.json) == (
        "fanout", 20, 500, 5, 4, True)
