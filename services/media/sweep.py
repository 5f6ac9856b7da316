"""The sweeper: what uploads and crashes leave behind, deleted.

Every ``sweep_interval`` seconds:

1. uploads untouched for ``upload_expiry`` seconds (abandoned, or assembled long ago) lose their rows and their
   staged parts; a staging directory without a row (a crash between the row's deletion and the files') goes
   too once it is that old;
2. files no message carries any more are released (release.py): their rows go, their blobs lose a reference;
3. blob files that no ``media_blobs`` row names, older than ``orphan_grace``: an assembly that crashed after its
   rename, an upload whose MD5 did not match, a blob whose last reference was released. The grace protects an
   assembly between its rename and its commit (``LocalBlobs.put`` freshens the file's time when the content was
   already there).

Each step is its own short transaction; a failed sweep is logged and the next one tries again.
"""

from __future__ import annotations

import functools
import logging
import shutil
from typing import TYPE_CHECKING

import anyio
from prometheus_client import Counter, Gauge

from services.common import db
from services.media import release, store

if TYPE_CHECKING:
    from services.media.handlers import Media

log = logging.getLogger("mtlab.media.sweep")

SWEPT = Counter("mtlab_media_swept_total", "What the sweeper deleted, by what (expired uploads, orphaned blobs)",
                ["what"])
STORED = Gauge("mtlab_media_stored_bytes", "Bytes in the blob store (distinct content), at the last sweep")
BLOBS = Gauge("mtlab_media_blobs", "Blobs in the blob store (distinct content), at the last sweep")
BATCH = 500


async def expire_uploads(deps: Media) -> int:
    before = deps.clock() - deps.config.upload_expiry
    total = 0
    while True:
        gone = await deps.txn("sweep_uploads", lambda con: store.expired_uploads(con, before, BATCH))
        for owner, file_id in gone:
            await anyio.to_thread.run_sync(deps.blobs.drop_upload, owner, file_id)
        total += len(gone)
        if len(gone) < BATCH:
            break
    # Staging directories whose row is gone (a crash between the commit above and the deletion of the files).
    now = deps.clock()
    for owner, unsigned_id, path in await anyio.to_thread.run_sync(lambda: list(deps.blobs.staged_uploads())):
        file_id = unsigned_id - (1 << 64) if unsigned_id >= 1 << 63 else unsigned_id
        if not deps.blobs.older_than(path, deps.config.upload_expiry, now):
            continue

        exists = functools.partial(store.upload_exists, owner=owner, file_id=file_id)
        if not await deps.txn("sweep_staging", exists):
            await anyio.to_thread.run_sync(shutil.rmtree, path, True)
    return total


async def _known(con: db.Connection, shas: list[bytes]) -> set[bytes]:
    rows = await con.fetch("SELECT sha256 FROM media_blobs WHERE sha256 = ANY($1::bytea[])", shas)
    return {bytes(r["sha256"]) for r in rows}


async def orphans(deps: Media) -> int:
    now = deps.clock()
    found = await anyio.to_thread.run_sync(lambda: list(deps.blobs.all()))
    removed = 0
    for i in range(0, len(found), BATCH):
        batch = found[i:i + BATCH]
        named = await deps.txn("sweep_orphans", functools.partial(_known, shas=[sha for sha, _ in batch]))
        for sha, path in batch:
            if sha not in named and deps.blobs.older_than(path, deps.config.orphan_grace, now):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


async def once(deps: Media) -> tuple[int, int]:
    """One sweep: (uploads expired, orphaned blobs deleted); files released are counted by release.py."""
    expired = await expire_uploads(deps)
    try:
        await release.once(deps)
    except Exception as exc:  # the message service is down: release next time; the rest of the sweep goes on
        log.warning("release skipped: %s: %s", type(exc).__name__, exc)
    removed = await orphans(deps)
    SWEPT.labels("uploads").inc(expired)
    SWEPT.labels("orphans").inc(removed)
    row = await deps.txn("sweep_stats", lambda con: con.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM media_blobs"))
    if row is not None:
        BLOBS.set(row["n"])
        STORED.set(row["bytes"])
    if expired or removed:
        log.info("sweep: %d expired uploads, %d orphaned blobs deleted", expired, removed)
    return expired, removed


async def run(deps: Media) -> None:
    while True:
        try:
            await once(deps)
        except Exception as exc:
            log.warning("sweep failed: %s: %s", type(exc).__name__, exc)
        await anyio.sleep(deps.config.sweep_interval)
