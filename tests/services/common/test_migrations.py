"""services/common/migrations.py against a real Postgres: order, idempotence, checksums, atomicity, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from services.common import db
from services.common.migrations import MigrationError, discover, migrate

AUTH_MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "auth" / "migrations"


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


async def run(dsn: str, folder: Path, namespace: str = "lab") -> list[str]:
    pool = await db.create_pool(dsn, max_size=2)
    try:
        return await migrate(pool, folder, namespace=namespace)
    finally:
        await pool.close()


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetch(sql)
    finally:
        await con.close()


def test_files_apply_in_name_order_once(database: str, tmp_path: Path) -> None:
    # 010 sorts after 002 and depends on it; written first so directory order cannot pass for name order
    folder = write(tmp_path / "m", {"010_fill.sql": "INSERT INTO notes (body) VALUES ('second');",
                                    "001_notes.sql": "CREATE TABLE notes (id serial PRIMARY KEY, body text);",
                                    "002_seed.sql": "INSERT INTO notes (body) VALUES ('first');",
                                    "README.txt": "not a migration"})
    assert asyncio.run(run(database, folder)) == ["lab/001_notes.sql", "lab/002_seed.sql", "lab/010_fill.sql"]
    assert asyncio.run(run(database, folder)) == []  # a re-run applies nothing...
    rows = asyncio.run(fetch(database, "SELECT body FROM notes ORDER BY id"))
    assert [r["body"] for r in rows] == ["first", "second"]  # ...and so duplicated nothing
    recorded = asyncio.run(fetch(database, "SELECT name, checksum, applied_at FROM mtlab_migrations ORDER BY name"))
    assert [r["name"] for r in recorded] == ["lab/001_notes.sql", "lab/002_seed.sql", "lab/010_fill.sql"]
    assert all(len(r["checksum"]) == 64 and r["applied_at"] is not None for r in recorded)

    write(folder, {"011_more.sql": "INSERT INTO notes (body) VALUES ('third');"})
    assert asyncio.run(run(database, folder)) == ["lab/011_more.sql"]  # a new file is applied on its own


def test_a_changed_applied_file_is_refused_and_nothing_runs(database: str, tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {"001_t.sql": "CREATE TABLE t (x int);"})
    asyncio.run(run(database, folder))
    write(folder, {"001_t.sql": "CREATE TABLE t (x int, y int);", "002_u.sql": "CREATE TABLE u (x int);"})
    with pytest.raises(MigrationError, match=r"lab/001_t\.sql .*changed after it was applied.*new file"):
        asyncio.run(run(database, folder))
    tables = asyncio.run(fetch(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    assert "u" not in {r["tablename"] for r in tables}  # the refusal came before any new file ran


def test_a_failing_file_rolls_back_whole_and_is_not_recorded(database: str, tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {"001_ok.sql": "CREATE TABLE ok (x int);",
                                    "002_bad.sql": "CREATE TABLE half (x int); SELECT no_such_function();"})
    with pytest.raises(asyncpg.UndefinedFunctionError):
        asyncio.run(run(database, folder))
    names = {r["tablename"] for r in asyncio.run(fetch(database, "SELECT tablename FROM pg_tables"))}
    assert "ok" in names and "half" not in names
    recorded = asyncio.run(fetch(database, "SELECT name FROM mtlab_migrations"))
    assert [r["name"] for r in recorded] == ["lab/001_ok.sql"]
    write(folder, {"002_bad.sql": "CREATE TABLE half (x int);"})  # fixed before it ever applied: allowed
    assert asyncio.run(run(database, folder)) == ["lab/002_bad.sql"]


def test_two_processes_migrating_at_once_apply_each_file_once(database: str, tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {f"{i:03d}_t{i}.sql": f"CREATE TABLE t{i} (x int); SELECT pg_sleep(0.02);"
                                    for i in range(1, 6)})

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(run(database, folder), run(database, folder)))

    first, second = asyncio.run(both())
    assert sorted(first + second) == [f"lab/{i:03d}_t{i}.sql" for i in range(1, 6)]  # each applied by exactly one


def test_namespaces_keep_equal_file_names_apart(database: str, tmp_path: Path) -> None:
    a = write(tmp_path / "a", {"001_init.sql": "CREATE TABLE a (x int);"})
    b = write(tmp_path / "b", {"001_init.sql": "CREATE TABLE b (x int);"})
    assert asyncio.run(run(database, a, "alpha")) == ["alpha/001_init.sql"]
    assert asyncio.run(run(database, b, "beta")) == ["beta/001_init.sql"]


def test_the_auth_schema_applies_and_reapplies(database: str) -> None:
    assert asyncio.run(run(database, AUTH_MIGRATIONS, "auth")) == [m.name for m in discover(AUTH_MIGRATIONS, "auth")]
    assert asyncio.run(run(database, AUTH_MIGRATIONS, "auth")) == []
    tables = {r["tablename"] for r in asyncio.run(fetch(database, "SELECT tablename FROM pg_tables "
                                                                  "WHERE schemaname = 'public'"))}
    assert {"users", "phones", "auth_keys", "authorizations", "mtlab_migrations"} <= tables
    # the constraints a DBA student relies on hold: a phone is digits only, a stored authorization hash is never 0
    with pytest.raises(asyncpg.CheckViolationError):
        asyncio.run(fetch(database, "WITH u AS (INSERT INTO users (access_hash, first_name) VALUES (1, 'A') "
                                    "RETURNING id) INSERT INTO phones SELECT '+123', id FROM u"))
