"""Assembly: the staged parts of an upload become one stored, content-addressed file, crash safely.

It happens when a message first references the upload (``media.attach``, from messages.sendMedia or uploadMedia):

1. read the upload's part rows and check them against the InputFile: every part 0..parts-1 present
   (else FILE_PART_<n>_MISSING, the first one missing), the kind right (inputFileBig for saveBigFilePart uploads,
   its part count the one every part named), the size within the limits (else FILE_PARTS_INVALID);
2. stream the parts, in order, into a temp file of the blob store while hashing them (SHA-256 names the blob,
   MD5 is checked against inputFile.md5_checksum: MD5_CHECKSUM_INVALID), one buffer at a time: the whole file is
   never in memory; fsync it;
3. rename it into place under its hash (``LocalBlobs.put``): identical content already stored is not written
   twice;
4. for a photo, decode it and store its thumbnails the same way (photos.py);
5. one transaction: a reference on each blob, the file row (and its sizes), its readers (and channel), the upload
   marked assembled (its part rows gone); then the staged part files are deleted.

A crash at any point leaves nothing half-visible: before 3, a temp file (deleted at the next start); between 3
and 5, a complete blob nobody references (the sweeper deletes it after ``orphan_grace``, unless an assembly of the
same content commits it first); the upload itself is untouched until 5 commits, so sending the message again
assembles it again. ``MTLAB_MEDIA_CRASH_AT`` provokes the first two cases for labs and tests.

An upload sent again (a resent sendMedia, or two messages with one InputFile) reuses the file it became.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from prometheus_client import Counter, Histogram

from mtproto.tl import api
from mtproto.tl.runtime import INT, VECTOR_HEADER, Reader
from services.common import db
from services.common.rpc import RpcError
from services.media import photos, store
from services.media.blobs import CHUNK, LocalBlobs
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


def concatenate(blobs: LocalBlobs, owner: int, file_id: int, parts: list[PartRow], crash_at: str,
                with_md5: bool = True) -> Blob:
    """Stream ``parts`` into a new blob (steps 2 and 3); ``with_md5``: the MD5 too (only a small file's inputFile
    names one: hashing 30 MiB of a big file twice would cost a fifth of its assembly). Blocking: run in a worker
    thread."""
    sha = hashlib.sha256()
    md5 = hashlib.md5() if with_md5 else None  # the spec's upload checksum
    temp = blobs.new_temp()
    total = sum(p.size for p in parts)
    written = 0
    try:
        with temp.open("wb") as out:
            for p in parts:
                path = blobs.part_path(owner, file_id, p.part, p.token)
                try:
                    f = path.open("rb")
                except FileNotFoundError:
                    raise RpcError(400, f"FILE_PART_{p.part}_MISSING") from None
                with f:
                    if os.fstat(f.fileno()).st_size != p.size:  # cut short by a crash or a full disk
                        raise RpcError(400, f"FILE_PART_{p.part}_MISSING")
                    while chunk := f.read(CHUNK):
                        sha.update(chunk)
                        if md5 is not None:
                            md5.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        if crash_at == "write" and written >= total // 2:
                            out.flush()
                            _crash("write")
            out.flush()
            os.fsync(out.fileno())
        digest = sha.digest()
        new = blobs.put(digest, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
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


async def store_upload(deps: Media, me: int, input_file: api.types.TypeInputFile, readers: store.Grant, *,
                       photo: bool, mime_type: str = "application/octet-stream",
                       attributes: list[api.types.TypeDocumentAttribute] | None = None) -> FileRow:
    """The file an upload becomes (assembled now, or the one it became before), granted to ``readers``."""
    if not isinstance(input_file, (api.types.InputFile, api.types.InputFileBig)):
        raise RpcError(400, "FILE_PARTS_INVALID")
    started = time.perf_counter()
    file_id = input_file.id

    async def read(con: db.Connection) -> tuple[store.UploadRow | None, list[PartRow], FileRow | None]:
        u = await store.upload_for_update(con, me, file_id)
        if u is not None and u.assembled_id is not None:
            done = await store.file(con, u.assembled_id)
            if done is not None and await store.grant(con, done.id, readers):
                return u, [], done
        return u, await store.parts(con, me, file_id), None

    u, parts, done = await deps.txn("assemble_read", read)
    if done is not None:
        return done
    _check(deps, u, parts, input_file)
    with_md5 = isinstance(input_file, api.types.InputFile) and bool(input_file.md5_checksum)
    blob = await anyio.to_thread.run_sync(concatenate, deps.blobs, me, file_id, parts, deps.config.crash_at,
                                          with_md5)
    if isinstance(input_file, api.types.InputFile) and input_file.md5_checksum and \
            input_file.md5_checksum.lower() != blob.md5:
        raise RpcError(400, "MD5_CHECKSUM_INVALID")  # the blob stays unreferenced: the sweeper's

    kind, sizes = DOCUMENT, []
    attrs = list(attributes or [])
    decoded = None
    if photo and blob.size <= deps.config.photo_max_size:
        decoded = await anyio.to_thread.run_sync(photos.decode, deps.blobs.path(blob.sha256), blob.size)
    if decoded is not None:
        kind, mime_type = PHOTO, decoded.mime_type
        for letter, w, h, data in decoded.thumbs:
            thumb = await anyio.to_thread.run_sync(store_bytes, deps.blobs, data)
            sizes.append(SizeRow(letter, w, h, thumb.sha256, thumb.size))
        sizes.append(SizeRow(decoded.letter, decoded.width, decoded.height, blob.sha256, blob.size))
    elif not any(isinstance(a, api.types.DocumentAttributeFilename) for a in attrs):
        attrs.append(api.types.DocumentAttributeFilename(file_name=_filename(input_file) or "file"))
    row = FileRow(id=secrets.randbits(63) or 1, access_hash=secrets.randbits(63),
                  file_reference=secrets.token_bytes(16), owner_id=me, kind=kind, sha256=blob.sha256,
                  size=blob.size, mime_type=mime_type, name=_filename(input_file),
                  attributes=encode_attributes(attrs) if kind == DOCUMENT else None, date=int(deps.clock()))

    async def commit(con: db.Connection) -> FileRow:
        u = await store.upload_for_update(con, me, file_id)
        if u is not None and u.assembled_id is not None:  # a concurrent attach of the same upload won
            other = await store.file(con, u.assembled_id)
            if other is not None and await store.grant(con, other.id, readers):
                return other
        await store.add_blob_ref(con, blob.sha256, blob.size)
        for s in sizes:
            await store.add_blob_ref(con, s.sha256, s.size)
        await store.insert_file(con, row)
        for s in sizes:
            await store.insert_size(con, row.id, s)
        await store.grant(con, row.id, readers)
        if u is not None:
            await store.mark_assembled(con, me, file_id, row.id, deps.clock())
        return row

    stored = await deps.txn("assemble_commit", commit)
    if stored is row:
        await anyio.to_thread.run_sync(deps.blobs.drop_upload, me, file_id)
        ASSEMBLED.labels("photo" if kind == PHOTO else "document", "stored" if blob.new else "deduplicated").inc()
        ASSEMBLY_SECONDS.observe(time.perf_counter() - started)
        log.info("file %d assembled: %d bytes in %d parts, %s, sha256 %s%s, %.1f ms", row.id, row.size, len(parts),
                 "photo" if kind == PHOTO else "document", row.sha256.hex()[:16], "" if blob.new else " (deduplicated)",
                 (time.perf_counter() - started) * 1000)
    return stored
