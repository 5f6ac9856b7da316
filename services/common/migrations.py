"""Schema migrations: the ``*.sql`` files of a folder, applied once each, in name order.

A migration is a plain SQL file a DBA student can read (``services/auth/migrations/001_auth.sql``). ``migrate``
applies the files of one folder that are not applied yet, in the order of their names (hence the ``001_``
prefixes), each in its own transaction together with the row that records it in::

    mtlab_migrations(name, checksum, applied_at)

so a file is either applied and recorded, or neither. Running ``migrate`` again applies nothing: it is what every
service does at start-up. An applied file must never change (a database that ran the old text would differ from
one that runs the new): when a file's SHA-256 no longer matches the recorded checksum, ``migrate`` refuses to
do anything and says which file; the fix is a new file that makes the change.

``name`` is ``<namespace>/<file>`` (``auth/001_auth.sql``), so several components can keep their migrations in
one database without their file names colliding; ``shard_db`` uses the same function for every shard.

Two processes starting at once (two replicas of a service) must not both apply a file: the whole run holds a
Postgres advisory lock, so the second waits, then finds everything applied. A file runs in a transaction, so
statements that refuse one (``CREATE INDEX CONCURRENTLY``, ``VACUUM``) do not belong in a migration.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from services.common.db import Connection, Pool

log = logging.getLogger("mtlab.migrations")

#: The key of the advisory lock held while migrating (any constant; this one spells "mtlabmig").
LOCK_KEY = 0x6D746C61626D6967

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS mtlab_migrations (
    name       text PRIMARY KEY,                 -- "<namespace>/<file>", e.g. auth/001_auth.sql
    checksum   text NOT NULL,                    -- SHA-256 (hex) of the file as it was applied
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are (an applied file was changed); nothing was done."""


@dataclass(frozen=True)
class Migration:
    name: str  # <namespace>/<file>
    path: Path
    sql: str
    checksum: str


def discover(folder: Path, namespace: str) -> list[Migration]:
    """The ``*.sql`` files of ``folder``, in name order."""
    found = []
    for path in sorted(folder.glob("*.sql"), key=lambda p: p.name):
        data = path.read_bytes()
        checksum = hashlib.sha256(data).hexdigest()
        found.append(Migration(f"{namespace}/{path.name}", path, data.decode("utf-8"), checksum))
    return found


async def applied(con: Connection) -> dict[str, str]:
    """name -> checksum of every migration recorded in this database."""
    await con.execute(TABLE_SQL)
    return {row["name"]: row["checksum"] for row in await con.fetch("SELECT name, checksum FROM mtlab_migrations")}


async def migrate(pool: Pool, folder: Path, *, namespace: str) -> list[str]:
    """Apply the not-yet-applied files of ``folder``; return their names (empty when everything was applied)."""
    migrations = discover(folder, namespace)
    done: list[str] = []
    async with pool.acquire() as con:
        # A session-level lock on this one connection: held across the per-file transactions below.
        await con.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            recorded = await applied(con)
            changed = [m for m in migrations if m.name in recorded and recorded[m.name] != m.checksum]
            if changed:
                m = changed[0]
                raise MigrationError(
                    f"migration {m.name} ({m.path}) was changed after it was applied: recorded checksum "
                    f"{recorded[m.name][:12]}..., file now {m.checksum[:12]}.... An applied migration must not be "
                    f"edited: restore the file and put the change in a new file after it.")
            for m in migrations:
                if m.name in recorded:
                    continue
                async with con.transaction():
                    await con.execute(m.sql)
                    await con.execute("INSERT INTO mtlab_migrations (name, checksum) VALUES ($1, $2)", m.name,
                                      m.checksum)
                log.info("applied migration %s", m.name)
                done.append(m.name)
        finally:
            await con.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return done
