"""`mtlab media fsck`: every blob checked against its hash, every reference against a blob.

Problems it reports (each one line; the exit code is 1 when there is any):

- ``corrupt``: a blob file whose SHA-256 is not its name (bit rot, a truncated copy, a hand edit);
- ``missing``: a ``media_blobs`` row, or a file or photo size pointing at it, with no blob file;
- ``size``: a blob file whose length differs from its row;
- ``refs``: a row's reference count that differs from the files and photo sizes pointing at it;
- ``orphan``: a blob file no row names (normal for ``orphan_grace`` after a crash or a released file: the sweeper
  deletes them; reported, not an error).

It reads every byte of every blob (one buffer at a time), so it takes as long as reading the store; the progress
callback hears bytes checked and the total.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common import db
from services.media.blobs import LocalBlobs, hash_file


@dataclass
class Report:
    blobs: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def _after(progress: Callable[[int, int], None], before: int, total: int, done: int) -> None:
    progress(before + done, total)  # bytes of the blobs before this one, and of this one so far


async def fsck(pool: db.Pool, blobs: LocalBlobs, progress: Callable[[int, int], None] = lambda done, total: None) \
        -> Report:
    report = Report()
    async with pool.acquire() as con:
        rows = {bytes(r["sha256"]): (r["size"], r["refs"]) for r in await con.fetch(
            "SELECT sha256, size, refs FROM media_blobs")}
        pointing: dict[bytes, int] = {}
        for r in await con.fetch("SELECT sha256, count(*) AS n FROM (SELECT sha256 FROM media_files UNION ALL "
                                 "SELECT sha256 FROM media_photo_sizes) AS refs GROUP BY sha256"):
            pointing[bytes(r["sha256"])] = int(r["n"])
    on_disk = dict(blobs.all())
    total = sum(p.stat().st_size for p in on_disk.values())
    done = 0
    for sha, path in sorted(on_disk.items()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            done += hash_file(f, digest, progress=functools.partial(_after, progress, done, total))
        report.blobs += 1
        report.bytes += path.stat().st_size
        if digest.digest() != sha:
            report.problems.append(f"corrupt: {path} hashes to {digest.hexdigest()}")
        if sha not in rows:
            report.orphans.append(f"orphan: {path} (no row; the sweeper deletes it after the grace)")
        elif rows[sha][0] != path.stat().st_size:
            report.problems.append(f"size: {path} is {path.stat().st_size} bytes, its row says {rows[sha][0]}")
    for sha, (_, refs) in sorted(rows.items()):
        if sha not in on_disk:
            report.problems.append(f"missing: blob {sha.hex()} has a row ({refs} references) but no file")
        if refs != pointing.get(sha, 0):
            report.problems.append(f"refs: blob {sha.hex()} counts {refs} references, {pointing.get(sha, 0)} "
                                   "point at it")
    for sha in sorted(set(pointing) - set(rows)):
        report.problems.append(f"missing: blob {sha.hex()} is referenced but has no row")
    progress(total, total)
    return report
