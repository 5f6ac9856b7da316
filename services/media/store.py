"""The media service's SQL, on the main database (tables in shard_db/migrations/main/005_media.sql).

Every function takes a connection inside a transaction the caller opened (``Media.txn``); none commits. Two locks
order the work on one upload while other uploads go on in parallel: the parts of an upload take its advisory lock
(``upload_lock_key``, with BEGIN) and then its row (``begin_part``), so they are checked and written one after the
other; an assembly takes the row (``upload_for_update``) for its whole transaction, so no part is written while
it hashes the upload's bytes. Nothing takes them in the other order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from services.common.db import Connection

DOCUMENT = 1
PHOTO = 2
ENCRYPTED = 3  # a secret chat's file: the client's ciphertext, never decoded (encrypted.py)


@dataclass
class UploadRow:
    owner_id: int
    file_id: int
    big: bool
    total_parts: int | None
    part_size: int | None
    last_part: int
    last_size: int
    parts: int
    bytes: int
    assembled_id: int | None


@dataclass(frozen=True)
class PartRow:
    """A staged part: 0 as ``token`` when it is in the upload's slot file (at part * part_size), else the name of
    the side file it waits in (blobs.py)."""

    part: int
    size: int
    token: int


@dataclass(frozen=True)
class FileRow:
    id: int
    access_hash: int
    file_reference: bytes
    owner_id: int
    kind: int
    sha256: bytes
    size: int
    mime_type: str
    name: str
    attributes: bytes | None
    date: int


@dataclass(frozen=True)
class SizeRow:
    type: str
    w: int
    h: int
    sha256: bytes
    size: int


def _upload(r: asyncpg.Record) -> UploadRow:
    return UploadRow(r["owner_id"], r["file_id"], r["big"], r["total_parts"], r["part_size"], r["last_part"],
                     r["last_size"], r["parts"], r["bytes"], r["assembled_id"])


def _file(r: asyncpg.Record) -> FileRow:
    attributes = bytes(r["attributes"]) if r["attributes"] is not None else None
    return FileRow(r["id"], r["access_hash"], bytes(r["file_reference"]), r["owner_id"], r["kind"],
                   bytes(r["sha256"]), r["size"], r["mime_type"], r["name"], attributes, r["date"])


# -- uploads ------------------------------------------------------------------------------------------------


async def upload_for_update(con: Connection, owner: int, file_id: int) -> UploadRow | None:
    r = await con.fetchrow("SELECT * FROM media_uploads WHERE owner_id = $1 AND file_id = $2 FOR UPDATE", owner,
                           file_id)
    return _upload(r) if r is not None else None


def upload_lock_key(owner: int, file_id: int) -> int:
    """The advisory lock that orders the parts of one upload (``begin_part``): 64 bits of a hash of its key. Two
    uploads that share one (once in 2**64) only wait for each other."""
    digest = hashlib.blake2b(f"media_upload:{owner}:{file_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class PartState:
    """What a new part is checked against: the upload (its row locked), the part of the same number sent before
    (a resend), and the owner's usage (bytes stored, bytes staged, parts staged)."""

    upload: UploadRow
    old: PartRow | None
    stored: int
    staged: int
    in_flight: int


async def begin_part(con: Connection, owner: int, file_id: int, number: int, big: bool, total: int | None,
                     now: float) -> PartState:
    """The upload row, created if missing, and locked; with everything else the part is checked against.

    One statement, which is right only because the caller already holds the upload's advisory lock
    (``upload_lock_key``, taken with BEGIN): the statement's snapshot is taken after every earlier part of this
    upload committed. Without it, a statement that waits for the row lock would still read the other tables as
    they were before it waited (READ COMMITTED re-reads only the locked row), and miss what that part wrote."""
    r = await con.fetchrow(
        "WITH up AS (INSERT INTO media_uploads (owner_id, file_id, big, total_parts, touched_at) "
        "            VALUES ($1, $2, $3, $4, $5) "
        "            ON CONFLICT (owner_id, file_id) DO UPDATE SET touched_at = excluded.touched_at RETURNING *) "
        "SELECT up.*, p.size AS old_size, p.token AS old_token, "
        "       (SELECT coalesce(sum(size), 0) FROM media_files WHERE owner_id = $1) AS stored, "
        "       (SELECT coalesce(sum(bytes), 0) FROM media_uploads WHERE owner_id = $1) AS staged, "
        "       (SELECT coalesce(sum(parts), 0) FROM media_uploads WHERE owner_id = $1) AS in_flight "
        "FROM up LEFT JOIN media_upload_parts p ON p.owner_id = $1 AND p.file_id = $2 AND p.part = $6",
        owner, file_id, big, total, now, number)
    if r is None:  # an upsert with RETURNING always returns its row
        raise RuntimeError("media_uploads upsert returned nothing")
    old = PartRow(number, r["old_size"], r["old_token"]) if r["old_size"] is not None else None
    return PartState(_upload(r), old, int(r["stored"]), int(r["staged"]), int(r["in_flight"]))


async def save_part(con: Connection, u: UploadRow, p: PartRow, now: float) -> None:
    """The part's row (replacing a resent part's) and the upload's new state, in one statement."""
    await con.execute(
        "WITH part AS (INSERT INTO media_upload_parts (owner_id, file_id, part, size, token) "
        "              VALUES ($1, $2, $9, $10, $11) ON CONFLICT (owner_id, file_id, part) "
        "              DO UPDATE SET size = excluded.size, token = excluded.token) "
        "UPDATE media_uploads SET part_size = $3, last_part = $4, last_size = $5, parts = $6, bytes = $7, "
        "touched_at = $8 WHERE owner_id = $1 AND file_id = $2",
        u.owner_id, u.file_id, u.part_size, u.last_part, u.last_size, u.parts, u.bytes, now, p.part, p.size, p.token)


async def parts(con: Connection, owner: int, file_id: int) -> list[PartRow]:
    rows = await con.fetch("SELECT part, size, token FROM media_upload_parts WHERE owner_id = $1 AND file_id = $2 "
                           "ORDER BY part", owner, file_id)
    return [PartRow(r["part"], r["size"], r["token"]) for r in rows]


async def mark_assembled(con: Connection, owner: int, file_id: int, assembled_id: int, now: float) -> None:
    """The upload became file ``assembled_id``: its parts are no longer staged (nor counted)."""
    await con.execute("DELETE FROM media_upload_parts WHERE owner_id = $1 AND file_id = $2", owner, file_id)
    await con.execute("UPDATE media_uploads SET assembled_id = $3, parts = 0, bytes = 0, touched_at = $4 "
                      "WHERE owner_id = $1 AND file_id = $2", owner, file_id, assembled_id, now)


async def expired_uploads(con: Connection, before: float, limit: int) -> list[tuple[int, int]]:
    """Delete uploads untouched since ``before``; their (owner, file_id), for the staged files to go too."""
    rows = await con.fetch(
        "DELETE FROM media_uploads WHERE (owner_id, file_id) IN (SELECT owner_id, file_id FROM media_uploads "
        "WHERE touched_at < $1 ORDER BY touched_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING owner_id, file_id",
        before, limit)
    return [(r["owner_id"], r["file_id"]) for r in rows]


async def upload_exists(con: Connection, owner: int, file_id: int) -> bool:
    return bool(await con.fetchval("SELECT EXISTS (SELECT 1 FROM media_uploads WHERE owner_id = $1 AND file_id = $2)",
                                   owner, file_id))


# -- blobs and files ----------------------------------------------------------------------------------------


async def add_blob_ref(con: Connection, sha256: bytes, size: int) -> None:
    await con.execute("INSERT INTO media_blobs (sha256, size, refs) VALUES ($1, $2, 1) "
                      "ON CONFLICT (sha256) DO UPDATE SET refs = media_blobs.refs + 1", sha256, size)


async def insert_file(con: Connection, f: FileRow) -> None:
    await con.execute(
        "INSERT INTO media_files (id, access_hash, file_reference, owner_id, kind, sha256, size, mime_type, name, "
        "attributes, date) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        f.id, f.access_hash, f.file_reference, f.owner_id, f.kind, f.sha256, f.size, f.mime_type, f.name,
        f.attributes, f.date)


async def insert_size(con: Connection, file_id: int, s: SizeRow) -> None:
    await con.execute("INSERT INTO media_photo_sizes (file_id, type, w, h, sha256, size) VALUES ($1, $2, $3, $4, $5, "
                      "$6)", file_id, s.type, s.w, s.h, s.sha256, s.size)


async def file(con: Connection, file_id: int) -> FileRow | None:
    r = await con.fetchrow("SELECT * FROM media_files WHERE id = $1", file_id)
    return _file(r) if r is not None else None


@dataclass(frozen=True)
class Access:
    """What decides whether a user may read a file: whether they are its uploader or a reader by name, else the
    channels whose members may read it (the caller asks the message service about those)."""

    file: FileRow
    named: bool
    channels: list[int]


async def access(con: Connection, file_id: int, user_id: int) -> Access | None:
    """The file and ``user_id``'s standing with it; None when it does not exist."""
    r = await con.fetchrow(
        "SELECT f.*, (f.owner_id = $2 OR EXISTS (SELECT 1 FROM media_readers r WHERE r.file_id = f.id AND "
        "r.user_id = $2)) AS named, ARRAY(SELECT channel_id FROM media_channel_readers c WHERE c.file_id = f.id "
        "ORDER BY channel_id) AS channels FROM media_files f WHERE f.id = $1", file_id, user_id)
    return Access(_file(r), bool(r["named"]), list(r["channels"])) if r is not None else None


async def sizes(con: Connection, file_id: int) -> list[SizeRow]:
    rows = await con.fetch("SELECT type, w, h, sha256, size FROM media_photo_sizes WHERE file_id = $1 ORDER BY size",
                           file_id)
    return [SizeRow(r["type"], r["w"], r["h"], bytes(r["sha256"]), r["size"]) for r in rows]


async def add_readers(con: Connection, file_id: int, users: Iterable[int]) -> None:
    await con.executemany("INSERT INTO media_readers (file_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                          [(file_id, u) for u in sorted(set(users))])


@dataclass(frozen=True)
class Grant:
    """Who a message carrying a file is shown to (media.attach): readers by name, a channel whose members may
    read it, and ``held_at``, the time of a message's attach (None: messages.uploadMedia, no message yet)."""

    users: tuple[int, ...] = ()
    channel_id: int | None = None
    held_at: float | None = None


async def grant(con: Connection, file_id: int, g: Grant) -> bool:
    """Apply ``g`` to the file; False (nothing done) when the file is gone (released meanwhile). The file's row is
    locked by the first statement, so a release of the same file (``release_unused``) waits or is waited for."""
    held = await con.fetchval("UPDATE media_files SET held_at = greatest(held_at, $2) WHERE id = $1 RETURNING id",
                              file_id, g.held_at)
    if held is None:
        return False
    await add_readers(con, file_id, g.users)
    if g.channel_id is not None:
        await con.execute("INSERT INTO media_channel_readers (file_id, channel_id) VALUES ($1, $2) "
                          "ON CONFLICT DO NOTHING", file_id, g.channel_id)
    return True


async def release_file(con: Connection, file_id: int) -> list[bytes]:
    """Delete a file and its sizes, dropping one reference from each blob; the blobs now unreferenced (whose rows
    are deleted here: the caller deletes their bytes after the commit)."""
    shas = [bytes(r["sha256"]) for r in await con.fetch(
        "SELECT sha256 FROM media_photo_sizes WHERE file_id = $1 UNION ALL SELECT sha256 FROM media_files "
        "WHERE id = $1", file_id)]
    await con.execute("DELETE FROM media_files WHERE id = $1", file_id)  # sizes and readers cascade
    freed = []
    for sha in shas:
        refs = await con.fetchval("UPDATE media_blobs SET refs = refs - 1 WHERE sha256 = $1 RETURNING refs", sha)
        if refs == 0:
            await con.execute("DELETE FROM media_blobs WHERE sha256 = $1", sha)
            freed.append(sha)
    return freed


# -- release: files no message carries any more (release.py) --------------------------------------------------


async def release_candidates(con: Connection, held_before: float, checked_before: float, limit: int) -> list[int]:
    """Files held by a message only before ``held_before`` and not asked about since ``checked_before``, the
    longest unasked first."""
    rows = await con.fetch("SELECT id FROM media_files WHERE held_at < $1 AND checked_at < $2 "
                           "ORDER BY checked_at, id LIMIT $3", held_before, checked_before, limit)
    return [int(r["id"]) for r in rows]


async def mark_checked(con: Connection, file_ids: list[int], now: float) -> None:
    await con.execute("UPDATE media_files SET checked_at = $2 WHERE id = ANY($1::bigint[])", file_ids, now)


async def release_unused(con: Connection, file_id: int, held_before: float) -> list[bytes] | None:
    """Release a file no message carries, unless a message named it since ``held_before`` (an attach that
    committed after the message service was asked): None then; else the blobs now unreferenced."""
    held_at = await con.fetchval("SELECT held_at FROM media_files WHERE id = $1 FOR UPDATE", file_id)
    if held_at is None or held_at >= held_before:
        return None
    return await release_file(con, file_id)


async def blob_known(con: Connection, sha256: bytes) -> bool:
    return bool(await con.fetchval("SELECT EXISTS (SELECT 1 FROM media_blobs WHERE sha256 = $1)", sha256))
