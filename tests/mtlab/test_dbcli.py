"""`mtlab db` and `mtlab shards` as a DBA runs them: real processes against a real Postgres (mtlab/dbcli.py)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from mtlab.dbcli import CRASH_ENV, CRASH_EXIT
from mtlab.supervisor import LOCK_FILE, STATE_FILE
from shard_db.layout import derived_dsn
from tests.helpers.shards import bulk


def mtlab(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtlab", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def environment(tmp_path: Path, dsn: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLAB_")}
    env |= {"MTLAB_DATA_DIR": str(tmp_path), "MTLAB_SHARD_LOGICAL": "8", "MTLAB_SHARD_PHYSICAL": "2"}
    if dsn is not None:
        env["MTLAB_POSTGRES_DSN"] = dsn
    return env


def test_db_migrate_then_status_and_shards_list(database: str, tmp_path: Path) -> None:
    env = environment(tmp_path, database)
    before = mtlab("db", "status", env=env)
    assert before.returncode == 1
    assert "NOT APPLIED: shard_map/001_shard_map.sql" in before.stdout
    assert "there is no shard map yet: run `mtlab db migrate`" in before.stdout

    migrated = mtlab("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "created the shard map: 8 logical shards over 2 databases" in migrated.stdout
    assert "shard1: applied shard/001_boxes.sql, shard/002_move_log.sql" in migrated.stdout
    assert "up to date: the main database and 2 physical shards (8 logical shards)" in migrated.stdout

    after = mtlab("db", "status", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"shard1  {derived_dsn(database, 1)}" in after.stdout
    assert "logical shards: 1, 3 ... 7 (step 2) active" in after.stdout
    assert "everything is up to date" in after.stdout

    report = json.loads(mtlab("db", "status", "--json", env=env).stdout)
    assert report["behind"] is False and report["logical"] == 8
    assert [d["name"] for d in report["databases"]] == ["main", "shard0", "shard1"]
    shard0 = report["databases"][1]
    assert shard0["pending"] == [] and "shard/002_move_log.sql" in shard0["applied"]
    assert shard0["serves"] == {str(n): "active" for n in (0, 2, 4, 6)}  # round robin

    asyncio.run(bulk(derived_dsn(database, 0), 2, 300))
    listing = mtlab("shards", "list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert {"messages", "update_log", "user_state"} <= set(data["tables"])
    assert [(s["logical"], s["physical"], s["version"]) for s in data["shards"]] == [
        (n, f"shard{n % 2}", 1) for n in range(8)]
    assert data["shards"][2]["tables"]["messages"]["rows"] == 300 and data["shards"][2]["bytes"] > 300 * 50
    assert data["shards"][3]["rows"] == 0
    assert [(p["name"], p["logical"], p["rows"]) for p in data["physical"]] == [
        ("shard0", [0, 2, 4, 6], data["shards"][2]["rows"]), ("shard1", [1, 3, 5, 7], 0)]
    text = mtlab("shards", "list", env=env).stdout
    assert "0, 2 ... 6 (step 2) (4)" in text and "messages" in text


def test_a_crashed_move_resumes_and_rebalance_evens_out_the_shards(database: str, tmp_path: Path) -> None:
    env = environment(tmp_path, database)
    assert mtlab("db", "migrate", env=env).returncode == 0
    asyncio.run(bulk(derived_dsn(database, 0), 2, 2000))

    crashed = mtlab("shards", "move", "2", "--to", "shard1", "--batch-rows", "500",
                    env=env | {CRASH_ENV: "catching_up"})
    assert crashed.returncode == CRASH_EXIT, crashed.stdout + crashed.stderr
    assert "copied messages: 2000 rows" in crashed.stdout
    status = mtlab("db", "status", env=env)
    assert "move in progress: logical shard 2 shard0 -> shard1, step catching_up" in status.stdout
    assert "logical shards: 1, 3 ... 7 (step 2) active; 2 incoming" in status.stdout
    listed = json.loads(mtlab("shards", "list", "--json", env=env).stdout)
    assert (listed["shards"][2]["moving_to"], listed["shards"][2]["move_step"]) == ("shard1", "catching_up")
    assert mtlab("shards", "rebalance", env=env).returncode == 1  # not while a move is unfinished

    resumed = mtlab("shards", "move", "2", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming the move of logical shard 2 from shard0 to shard1 at step catching_up" in resumed.stdout
    assert "moved logical shard 2 from shard0 to shard1" in resumed.stdout
    again = mtlab("shards", "move", "2", "--to", "shard1", env=env)
    assert again.returncode == 1 and "logical shard 2 is already on shard1: nothing to move" in again.stderr

    plan = mtlab("shards", "rebalance", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "now:   shard0 3, shard1 5" in plan.stdout and "after: shard0 4, shard1 4" in plan.stdout
    assert "1 moves planned; run again with --yes" in plan.stdout
    done = mtlab("shards", "rebalance", "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebalanced: 1 moves made" in done.stdout
    counts = [len(p["logical"]) for p in json.loads(mtlab("shards", "list", "--json", env=env).stdout)["physical"]]
    assert counts == [4, 4]
    assert "balanced" in mtlab("shards", "rebalance", env=env).stdout

    added = mtlab("shards", "add", env=env)
    assert added.returncode == 0, added.stderr
    assert "added physical shard shard2" in added.stdout
    assert "shard2" in mtlab("db", "status", env=env).stdout


def test_the_main_database_is_found_from_the_running_stack(database: str, tmp_path: Path) -> None:
    env = environment(tmp_path, None)
    alone = mtlab("db", "status", env=env)
    assert alone.returncode == 1
    assert "no mtlab stack is running" in alone.stderr and "MTLAB_POSTGRES_DSN" in alone.stderr

    # What `mtlab up` leaves for other commands: supervisor.json, and supervisor.lock held while it runs.
    (tmp_path / STATE_FILE).write_text(json.dumps({"servers": [{"name": "postgres", "dsn": database}]}))
    with (tmp_path / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        migrated = mtlab("db", "migrate", "--data-dir", str(tmp_path), env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert mtlab("db", "status", env=env).returncode == 0
