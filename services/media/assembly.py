"""Assembly: the staged parts of an upload become one stored, content-addressed file, crash safely.

It happens when a message first references the upload (``media.attach``, from messages.sendMedia or uploadMedia),
in one transaction that holds the upload's row lock throughout, so no part of it is written meanwhile (a part is
written inside its own transaction, under the same lock: handlers.save_part):

1. read the upload's part rows and check them against the InputFile: every part 0..parts-1 present
   (else FILE_PART_<n>_MISSING, the first one missing), the kind right (inputFileBig for saveBigFilePart uploads,
   its part count the one every part named), the size within the limits (else FILE_PARTS_INVALID);
2. make the upload's slot file whole (blobs.py: each part is already at its place, but for a rare part that came
   before its place was known), cut it to the file's size, hash it (SHA-256 names the blob; MD5 is checked
   against inputFile.md5_checksum: MD5_CHECKSUM_INVALID) one buffer at a time, and fsync it;
3. hard-link it into place under its hash (``LocalBlobs.adopt``): identical content already stored is not
   stored twice;
4. for a photo, decode it and store its thumbnails (photos.py);
5. in the same transaction: a reference on each blob, the file row (and its sizes), its readers (and channel), the
   upload marked assembled (its part rows gone); after the commit the staging directory is deleted.

A crash at any point leaves nothing half-visible: before 3, nothing under ``blobs/`` at all; between 3 and the
commit, a complete blob nobody references (the sweeper deletes it after ``orphan_grace``, unless an assembly of
the same content commits it first). The upload itself is untouched until the commit, so sending the message again
assembles it again. ``MTLAB_MEDIA_CRASH_AT`` (``write``: halfway through hashing; ``rename``: after the link)
provokes both cases for labs and tests.

An upload sent again (a resent sendMedia, or two messages with one InputFile) reuses the file it became: the second
attach waits for the first's lock and finds the upload assembled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
from prometheus_client import Counter, Histogram

from mtproto.tl import api
from mtproto.tl.runtime import INT, VECTOR_HEADER, Reader
from services.common import db
from services.common.rpc import RpcError
from services.media import photos, store
from services.media.blobs import LocalBlobs, hash_file
from services.media.store import DOCUMENT, PHOTO, FileRow, PartRow, SizeRow

if TYPE_CHECKING:
    from services.media.handlers import Media

log = logging.getLogger("mtlab.media.assembly")

ASSEMBLED = Counter("mtlab_media_files_total", "Files assembled from uploads, by kind and whether their content "
                    "was new (stored) or already there (deduplicated)", ["kind", "content"])
ASSEMBLY_SECONDS = Histogram("mtlab_media_assembly_seconds", "From attach to the file's commit, hashing included",
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CRASH_EXIT = 70


@dataclass(frozen=True)
class Blob:
    sha256: bytes
    size: int
    md5: str
    new: bool


def encode_attributes(attributes: list[api.types.TypeDocumentAttribute]) -> bytes:
    return VECTOR_HEADER + INT.pack(len(attributes)) + b"".join(a.to_bytes() for a in attributes)


def decode_attributes(data: bytes | None) -> list[api.types.TypeDocumentAttribute]:
    if not data:
        return []
    r = Reader(data)
    return [a for a in r.read_vector(r.read_object) if isinstance(a, api.types.TypeDocumentAttribute)]


def _crash(where: str) -> None:
    log.warning("MTLAB_MEDIA_CRASH_AT=%s: exiting in the middle of an assembly", where)
    logging.shutdown()
    os._exit(CRASH_EXIT)


def finalize(blobs: LocalBlobs, owner: int, file_id: int, parts: list[PartRow], part_size: int | None,
             crash_at: str, md5_checksum: str = "") -> Blob:
    """Steps 2 and 3 for the checked ``parts``: the blob the upload's slot file becomes. ``md5_checksum``: what
    the client says the MD5 is (only a small file's inputFile names one: hashing a big file twice would cost half
    its assembly again); a mismatch is refused before anything is stored. Blocking: run in a worker thread."""
    if not parts:
        return store_bytes(blobs, b"")
    total = sum(p.size for p in parts)
    slot = blobs.slot_path(owner, file_id)
    try:
        f = slot.open("r+b")
    except FileNotFoundError:
        raise RpcError(400, "FILE_PART_0_MISSING") from None
    sha = hashlib.sha256()
    md5 = hashlib.md5() if md5_checksum else None  # the spec's upload checksum
    with f:
        for p in parts:
            if p.token:  # a part that came before its place was known: copy it in now
                if part_size is None:
                    raise RuntimeError("an upload of several parts with no part size")  # check_sizes sets it
                try:
                    data = blobs.part_path(owner, file_id, p.part, p.token).read_bytes()
                except FileNotFoundError:
                    data = b""
                if len(data) != p.size:  # lost, or cut short, by a power cut
                    raise RpcError(400, f"FILE_PART_{p.part}_MISSING")
                blobs.write_part(owner, file_id, p.part, 0, p.part * part_size, data)  # token 0: into the slot
        length = os.fstat(f.fileno()).st_size
        if length < total:  # a write a power cut lost: name the first part that is not all there
            first = next(p.part for p in parts if (p.part * (part_size or 0)) + p.size > length)
            raise RpcError(400, f"FILE_PART_{first}_MISSING")
        f.truncate(total)  # a longer copy of the last part sent before may have left bytes beyond the end

        def crash_halfway(done: int) -> None:
            if crash_at == "write" and done >= total // 2:
                _crash("write")

        f.seek(0)
        hash_file(f, *([sha, md5] if md5 is not None else [sha]), progress=crash_halfway)
        f.flush()
        os.fsync(f.fileno())
    if md5 is not None and md5.hexdigest() != md5_checksum.lower():
        raise RpcError(400, "MD5_CHECKSUM_INVALID")
    digest = sha.digest()
    new = blobs.adopt(digest, slot)
    if crash_at == "rename":
        _crash("rename")
    return Blob(digest, total, md5.hexdigest() if md5 is not None else "", new)


def store_bytes(blobs: LocalBlobs, data: bytes) -> Blob:
    """A small blob (a thumbnail) from bytes in memory, written the same crash-safe way."""
    temp = blobs.new_temp()
    with temp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    digest = hashlib.sha256(data).digest()
    return Blob(digest, len(data), "", blobs.put(digest, temp))


def _check(deps: Media, u: store.UploadRow | None, parts: list[PartRow],
           input_file: api.types.InputFile | api.types.InputFileBig) -> None:
    cfg = deps.config
    big = isinstance(input_file, api.types.InputFileBig)
    n = input_file.parts
    if n < 0 or n > cfg.max_parts:
        raise RpcError(400, "FILE_PARTS_INVALID")
    if n == 0:  # an empty file: no part was ever sent
        if parts:
            raise RpcError(400, "FILE_PARTS_INVALID")
        return
    if u is None:
        raise RpcError(400, "FILE_PART_0_MISSING")
    if u.big != big or (big and u.total_parts != n):
        raise RpcError(400, "FILE_PARTS_INVALID")
    have = {p.part for p in parts}
    for number in range(n):
        if number not in have:
            raise RpcError(400, f"FILE_PART_{number}_MISSING")
    if len(parts) != n:
        raise RpcError(400, "FILE_PARTS_INVALID")  # parts beyond the count the client now names
    if any(p.size != u.part_size for p in parts[:-1]) or (u.part_size and parts[-1].size > u.part_size):
        raise RpcError(400, "FILE_PART_SIZE_INVALID")
    size = sum(p.size for p in parts)
    if size > cfg.max_file_size or (not big and size > cfg.small_file_max):
        raise RpcError(400, "FILE_PARTS_INVALID")


def _filename(input_file: api.types.TypeInputFile) -> str:
    name = getattr(input_file, "name", "") or ""
    return name[:255]


T = TypeVar("T")


async def assemble(deps: Media, me: int, input_file: api.types.InputFile | api.types.InputFileBig, name: str,
                   again: Callable[[db.Connection, int], Awaitable[T | None]],
                   make: Callable[[db.Connection, Blob], Awaitable[tuple[T, int]]],
                   check: Callable[[list[PartRow]], None] = lambda parts: None) -> tuple[T, Blob | None]:
    """The one transaction of an assembly (see the module docstring), for any kind of file.

    ``again(con, file_id)``: what an upload that became file ``file_id`` before gives now (None: that file is
    gone); ``make(con, blob)``: stores what the blob becomes (step 5 but for the upload's own row) and returns it
    with the new file's id; ``check``: any rule of the caller's kind on the parts, before a byte is read. Returns
    the result and the blob (None when the upload had been assembled before); the caller deletes the staging
    directory when there is a blob."""
    file_id = input_file.id
    md5_checksum = input_file.md5_checksum if isinstance(input_file, api.types.InputFile) else ""

    async def txn(con: db.Connection) -> tuple[T, Blob | None]:
        u = await store.upload_for_update(con, me, file_id)
        if u is not None and u.assembled_id is not None:
            done = await again(con, u.assembled_id)
            if done is not None:
                return done, None
        parts = await store.parts(con, me, file_id)
        _check(deps, u, parts, input_file)
        check(parts)
        blob = await anyio.to_thread.run_sync(finalize, deps.blobs, me, file_id, parts,
                                              u.part_size if u is not None else None, deps.config.crash_at,
                                              md5_checksum)
        result, new_id = await make(con, blob)
        if u is not None:
            await store.mark_assembled(con, me, file_id, new_id, deps.clock())
        return result, blob

    return await deps.txn(name, txn)


async def store_upload(deps: Media, me: int, input_file: api.types.TypeInputFile, readers: store.Grant, *,
                       photo: bool, mime_type: str = "application/octet-stream",
                       attributes: list[api.types.TypeDocumentAttribute] | None = None) -> FileRow:
    """The file an upload becomes (assembled now, or the one it became before), granted to ``readers``."""
    if not isinstance(input_file, (api.types.InputFile, api.types.InputFileBig)):
        raise RpcError(400, "FILE_PARTS_INVALID")
    started = time.perf_counter()

    async def again(con: db.Connection, file_id: int) -> FileRow | None:
        done = await store.file(con, file_id)
        return done if done is not None and await store.grant(con, done.id, readers) else None

    async def make(con: db.Connection, blob: Blob) -> tuple[FileRow, int]:
        kind, mime, sizes = DOCUMENT, mime_type, []
        attrs = list(attributes or [])
        decoded = None
        if photo and blob.size <= deps.config.photo_max_size:
            decoded = await anyio.to_thread.run_sync(photos.decode, deps.blobs.path(blob.sha256), blob.size)
        if decoded is not None:
            kind, mime = PHOTO, decoded.mime_type
            for letter, w, h, data in decoded.thumbs:
                thumb = await anyio.to_thread.run_sync(store_bytes, deps.blobs, data)
                sizes.append(SizeRow(letter, w, h, thumb.sha256, thumb.size))
            sizes.append(SizeRow(decoded.letter, decoded.width, decoded.height, blob.sha256, blob.size))
        elif not any(isinstance(a, api.types.DocumentAttributeFilename) for a in attrs):
            attrs.append(api.types.DocumentAttributeFilename(file_name=_filename(input_file) or "file"))
        row = FileRow(id=secrets.randbits(63) or 1, access_hash=secrets.randbits(63),
                      file_reference=secrets.token_bytes(16), owner_id=me, kind=kind, sha256=blob.sha256,
                      size=blob.size, mime_type=mime, name=_filename(input_file),
                      attributes=encode_attributes(attrs) if kind == DOCUMENT else None, date=int(deps.clock()))
        await store.add_blob_ref(con, blob.sha256, blob.size)
        for s in sizes:
            await store.add_blob_ref(con, s.sha256, s.size)
        await store.insert_file(con, row)
        for s in sizes:
            await store.insert_size(con, row.id, s)
        await store.grant(con, row.id, readers)
        return row, row.id

    row, blob = await assemble(deps, me, input_file, "assemble", again, make)
    if blob is not None:
        await anyio.to_thread.run_sync(deps.blobs.drop_upload, me, input_file.id)
        kind = "photo" if row.kind == PHOTO else "document"
        ASSEMBLED.labels(kind, "stored" if blob.new else "deduplicated").inc()
        ASSEMBLY_SECONDS.observe(time.perf_counter() - started)
        log.info("file %d assembled: %d bytes in %d parts, %s, sha256 %s%s, %.1f ms", row.id, row.size,
                 input_file.parts, kind, row.sha256.hex()[:16], "" if blob.new else " (deduplicated)",
                 (time.perf_counter() - started) * 1000)
    return row
