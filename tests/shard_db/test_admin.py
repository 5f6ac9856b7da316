"""The DBA's views and plans (shard_db/admin.py): the rebalance plan, a new physical shard filled by it, and what
`mtlab db status` and `mtlab shards list` see, on real Postgres."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from services.common.config import ShardConfig
from services.common.migrations import discover
from shard_db import prepare
from shard_db.admin import PlannedMove, add_physical, plan_rebalance, shard_list, status
from shard_db.layout import SHARD_MIGRATIONS, derived_dsn
from shard_db.move import move
from tests.helpers.shards import bulk, fetch


def after(placement: list[str], plan: list[PlannedMove]) -> list[str]:
    moved = list(placement)
    for m in plan:
        assert moved[m.logical] == m.source != m.target
        moved[m.logical] = m.target
    return moved


def test_the_plan_fills_a_new_physical_shard_with_as_few_moves_as_possible() -> None:
    placement = ["shard0"] * 8 + ["shard1"] * 8
    plan = plan_rebalance(placement, ["shard0", "shard1", "shard2"])
    assert Counter(after(placement, plan)) == {"shard0": 6, "shard1": 5, "shard2": 5}
    assert len(plan) == 5 and {m.target for m in plan} == {"shard2"}
    assert plan_rebalance(placement, ["shard0", "shard1"]) == []


def test_the_plan_moves_the_smallest_shards_first() -> None:
    placement = ["shard0"] * 4
    sizes = {0: 500, 1: 10, 2: 900, 3: 20}
    plan = plan_rebalance(placement, ["shard0", "shard1"], sizes)
    assert [m.logical for m in plan] == [1, 3]


@given(st.lists(st.integers(0, 5), min_size=1, max_size=80), st.integers(1, 6))
def test_every_plan_is_balanced_within_one_and_minimal(homes: list[int], physical: int) -> None:
    names = [f"shard{i}" for i in range(max(physical, max(homes) + 1))]
    placement = [names[h] for h in homes]
    plan = plan_rebalance(placement, names)
    counts = Counter(after(placement, plan))
    held = [counts.get(name, 0) for name in names]
    assert max(held) - min(held) <= 1
    assert len({m.logical for m in plan}) == len(plan)  # each logical shard moves at most once
    # Minimal: a shard above the ceiling must shed down to it, one below the floor must get up to it.
    before = Counter(placement)
    floor, ceiling = len(placement) // len(names), -(-len(placement) // len(names))
    must_leave = sum(max(before[n] - ceiling, 0) for n in names)
    must_arrive = sum(max(floor - before[n], 0) for n in names)
    assert len(plan) == max(must_leave, must_arrive)


async def _grow_and_rebalance(database: str) -> None:
    await prepare(database, ShardConfig(logical=8, physical=2))
    for n in range(8):
        await bulk(derived_dsn(database, n % 2), n, 50 * (n + 1))  # round robin: shard n lives in n % 2
    name, dsn = await add_physical(database)
    assert (name, dsn) == ("shard2", derived_dsn(database, 2))
    report = await status(database)
    assert not report.behind
    assert [d.name for d in report.databases] == ["main", "shard0", "shard1", "shard2"]
    assert report.databases[3].serves == {} and report.databases[3].pending == []

    listing = await shard_list(database)
    plan = plan_rebalance([s.physical for s in listing.shards], [p.name for p in listing.physical],
                          {s.logical: s.bytes for s in listing.shards})
    assert len(plan) == 2 and all(m.target == "shard2" for m in plan)
    assert sorted(m.logical for m in plan) == [0, 1]  # the smallest of each full shard
    for m in plan:
        await move(database, m.logical, m.target)
    listing = await shard_list(database)
    assert sorted(len(p.logical) for p in listing.physical) == [2, 3, 3]
    assert plan_rebalance([s.physical for s in listing.shards], [p.name for p in listing.physical]) == []
    moved = {s.logical: s for s in listing.shards if s.physical == "shard2"}
    assert sorted(moved) == [0, 1] and moved[1].version == 2 and moved[1].tables["messages"].rows == 100
    assert all(p.other_rows == 0 for p in listing.physical)
    assert not (await status(database)).behind


def test_a_new_physical_shard_is_filled_by_the_rebalance_plan(database: str) -> None:
    asyncio.run(_grow_and_rebalance(database))


async def _status_sees_problems(database: str) -> None:
    await prepare(database, ShardConfig(logical=4, physical=2))
    shard1 = derived_dsn(database, 1)
    report = await status(database)
    assert not report.behind
    names = [m.name for m in discover(SHARD_MIGRATIONS, "shard")]
    assert report.databases[1].applied == names and report.databases[1].serves == {0: "active", 2: "active"}

    last = names[-1]
    await fetch(shard1, "DELETE FROM mtlab_migrations WHERE name = $1", last)
    await fetch(shard1, "UPDATE shard_local SET state = 'gone' WHERE logical = 3")
    report = await status(database)
    assert report.behind
    db1 = report.databases[2]
    assert db1.pending == [last]
    assert db1.problems == ["the map puts logical shard 3 here but shard_local says gone"]
    assert not report.databases[1].behind


def test_status_names_a_pending_migration_and_a_disagreement_with_the_map(database: str) -> None:
    asyncio.run(_status_sees_problems(database))
