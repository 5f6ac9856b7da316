"""Secret-chat files: the media service's half of core.telegram.org/api/end-to-end, "Sending encrypted files".

A client sends a file to a secret chat encrypted under a one-time key and iv of its own (AES-256-IGE over the file
padded to whole 16-byte blocks), uploads the ciphertext with upload.saveFilePart / saveBigFilePart like any file,
and names the upload in messages.sendEncryptedFile or messages.uploadEncryptedFile as
``inputEncryptedFileUploaded`` (with the MD5 of the ciphertext, or an empty string) or
``inputEncryptedFileBigUploaded``, together with the key's 32-bit fingerprint. The key and iv themselves travel
inside the encrypted message, which this service never sees. The message service hands the InputEncryptedFile over
with ``media.attachEncrypted`` (internal.tl) and names the chat's other participant as its reader; this module:

- assembles an upload exactly like any other (assembly.py's ``assemble``: the same part checks and the same
  crash-safe, content-addressed transaction; FILE_PART_<n>_MISSING, FILE_PARTS_INVALID, MD5_CHECKSUM_INVALID,
  each before anything is stored), but stores a file of its own kind, ``ENCRYPTED``: never decoded (no Pillow, no
  thumbnails), no name, no attributes, no file reference, and the key_fingerprint the client gave kept with it
  (main migration 007). Its bytes count in the uploader's quota like any file's (the quota sums
  ``media_files.size`` per owner);
- checks what it can of bytes it cannot read: the file is not empty (``FILE_EMTPY``: the spec's own spelling, the
  error messages.sendEncryptedFile lists) and is whole AES blocks (``FILE_PARTS_INVALID`` otherwise);
- for ``inputEncryptedFile`` (id, access_hash: a stored encrypted file sent to a chat again, "to avoid saving the
  same content on the server twice"), checks that the caller may read it (``FILE_ID_INVALID`` otherwise, as for a
  download) and shares it with the new reader;
- answers the ``encryptedFile`` (id, access_hash, size, dc_id, key_fingerprint) the recipient's encryptedMessage
  carries. ``size`` is the ciphertext's, padding included: the real size is inside the encrypted message.

Reading (``readable``, called by handlers.locate): upload.getFile with ``inputEncryptedFileLocation`` (id,
access_hash) reads the file for its uploader and its readers, the other participant of each chat it was sent to or
uploaded for. Anyone else, a wrong access_hash, a file of another kind (and any other location naming this one)
get the same 400 FILE_ID_INVALID as any unreadable file.

Lifetime: every attach marks the file held (``held_at``), so the release (release.py) asks the message service
about it once ``release_grace`` has passed; files.inUse answers "carried" while a live secret chat carries it (the
message service's ``secret_files`` rows, shard migration 006: written with the message or the upload, deleted when
the chat's copy is discarded), so a file goes a sweep or so after the last chat that carried it is discarded.

The few statements about the key_fingerprint column are here, next to the only code that uses them, rather than in
store.py; everything else goes through store.py as for any file.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from prometheus_client import Counter

from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.internal.types import media as media_types
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLDecodeError
from services.common import db
from services.common.rpc import RpcError, signed_in
from services.media import assembly, store
from services.media.store import ENCRYPTED, FileRow

if TYPE_CHECKING:
    from services.media.handlers import Media

log = logging.getLogger("mtlab.media.encrypted")

ENCRYPTED_FILES = Counter("mtlab_media_encrypted_files_total", "Secret-chat files attached, by how: stored (new "
                          "content), deduplicated (content already there), again (an upload attached before), "
                          "resent (inputEncryptedFile)", ["how"])

BLOCK = 16  # AES's block: an encrypted file is whole blocks
MIME_TYPE = "application/octet-stream"  # all the server knows of a ciphertext; getFile answers storage.fileUnknown
MAX_READERS = 16  # a secret chat has two participants: each attach names the other one


@dataclass(frozen=True)
class Encrypted:
    """A stored encrypted file and the key_fingerprint every encryptedFile naming it carries."""

    file: FileRow
    key_fingerprint: int


def render(deps: Media, e: Encrypted) -> api.types.EncryptedFile:
    f = e.file
    return api.types.EncryptedFile(id=f.id, access_hash=f.access_hash, size=f.size, dc_id=deps.config.dc_id,
                                   key_fingerprint=e.key_fingerprint)


# -- the SQL of the key_fingerprint column ----------------------------------------------------------------------


async def _insert(con: db.Connection, f: FileRow, key_fingerprint: int) -> None:
    await con.execute(
        "INSERT INTO media_files (id, access_hash, file_reference, owner_id, kind, sha256, size, mime_type, name, "
        "attributes, date, key_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        f.id, f.access_hash, f.file_reference, f.owner_id, f.kind, f.sha256, f.size, f.mime_type, f.name,
        f.attributes, f.date, key_fingerprint)


async def _stored(con: db.Connection, file_id: int) -> Encrypted | None:
    """The encrypted file ``file_id``; None when it is gone (released). An upload the client attached before as a
    document or a photo cannot become a secret chat's file: FILE_PARTS_INVALID."""
    f = await store.file(con, file_id)
    if f is None:
        return None
    if f.kind != ENCRYPTED:
        raise RpcError(400, "FILE_PARTS_INVALID")
    fingerprint = await con.fetchval("SELECT key_fingerprint FROM media_files WHERE id = $1", file_id)
    return Encrypted(f, int(fingerprint))


# -- reading -------------------------------------------------------------------------------------------------


async def readable(deps: Media, ctx: rpc.Context, file_id: int, access_hash: int) -> FileRow | None:
    """The encrypted file, when the caller may read it (its uploader or a reader) and names it rightly; None
    otherwise, whatever the reason (the caller answers FILE_ID_INVALID for all of them alike). No channel ever
    holds one, so the readers by name are the whole rule."""
    me = signed_in(ctx)
    found = await deps.read("access", lambda con: store.access(con, file_id, me))
    if found is None or not found.named or found.file.kind != ENCRYPTED or found.file.access_hash != access_hash:
        return None
    return found.file


# -- media.attachEncrypted -------------------------------------------------------------------------------------


async def attach_encrypted(deps: Media, ctx: rpc.Context,
                           q: media_fn.AttachEncrypted) -> media_types.EncryptedAttached:
    me = signed_in(ctx)
    if len(q.readers) > MAX_READERS:
        raise RpcError(400, "MEDIA_INVALID")
    try:
        given = Reader(q.file).read_object()
    except TLDecodeError:
        raise RpcError(400, "MEDIA_INVALID") from None
    readers = store.Grant(users=tuple(r for r in q.readers if r != me), held_at=deps.clock())
    if isinstance(given, api.types.InputEncryptedFileUploaded):
        stored = await _store_upload(deps, me, api.types.InputFile(
            id=given.id, parts=given.parts, name="", md5_checksum=given.md5_checksum), given.key_fingerprint, readers)
    elif isinstance(given, api.types.InputEncryptedFileBigUploaded):
        stored = await _store_upload(deps, me, api.types.InputFileBig(id=given.id, parts=given.parts, name=""),
                                     given.key_fingerprint, readers)
    elif isinstance(given, api.types.InputEncryptedFile):
        stored = await _resend(deps, ctx, given, readers)
    elif isinstance(given, api.types.InputEncryptedFileEmpty):
        raise RpcError(400, "FILE_EMTPY")
    else:
        raise RpcError(400, "MEDIA_INVALID")
    return media_types.EncryptedAttached(file=render(deps, stored).to_bytes())


async def _resend(deps: Media, ctx: rpc.Context, ref: api.types.InputEncryptedFile, readers: store.Grant) -> Encrypted:
    """A stored encrypted file sent on (to another chat, or again): the caller must be able to read it."""
    f = await readable(deps, ctx, ref.id, ref.access_hash)
    if f is None:
        raise RpcError(400, "FILE_ID_INVALID")

    async def txn(con: db.Connection) -> Encrypted:
        if not await store.grant(con, f.id, readers):
            raise RpcError(400, "FILE_ID_INVALID")  # released since it was read above: no chat carries it
        found = await _stored(con, f.id)
        if found is None:
            raise RpcError(400, "FILE_ID_INVALID")
        return found

    found = await deps.txn("encrypted_resend", txn)
    ENCRYPTED_FILES.labels("resent").inc()
    return found


async def _store_upload(deps: Media, me: int, input_file: api.types.InputFile | api.types.InputFileBig,
                        key_fingerprint: int, readers: store.Grant) -> Encrypted:
    """The encrypted file an upload becomes (assembled now, or the one it became before), granted to ``readers``:
    assembly.assemble, the same transaction as any upload's, with nothing that would look inside (no decoding, no
    name) and one more rule on the parts (whole AES blocks)."""
    if input_file.parts == 0:
        raise RpcError(400, "FILE_EMTPY")
    started = time.perf_counter()

    async def again(con: db.Connection, file_id: int) -> Encrypted | None:
        """The upload was attached before (a resent sendEncryptedFile): the file it became, if still there."""
        done = await _stored(con, file_id)
        return done if done is not None and await store.grant(con, done.file.id, readers) else None

    def whole_blocks(parts: list[store.PartRow]) -> None:
        if sum(p.size for p in parts) % BLOCK:
            raise RpcError(400, "FILE_PARTS_INVALID")  # not whole AES blocks: no AES-256-IGE ciphertext

    async def make(con: db.Connection, blob: assembly.Blob) -> tuple[Encrypted, int]:
        row = FileRow(id=secrets.randbits(63) or 1, access_hash=secrets.randbits(63), file_reference=b"",
                      owner_id=me, kind=ENCRYPTED, sha256=blob.sha256, size=blob.size, mime_type=MIME_TYPE, name="",
                      attributes=None, date=int(deps.clock()))
        await store.add_blob_ref(con, blob.sha256, blob.size)
        await _insert(con, row, key_fingerprint)
        await store.grant(con, row.id, readers)
        return Encrypted(row, key_fingerprint), row.id

    stored, blob = await assembly.assemble(deps, me, input_file, "encrypted_assemble", again, make, whole_blocks)
    if blob is None:
        ENCRYPTED_FILES.labels("again").inc()
        return stored
    await anyio.to_thread.run_sync(deps.blobs.drop_upload, me, input_file.id)
    ENCRYPTED_FILES.labels("stored" if blob.new else "deduplicated").inc()
    log.info("encrypted file %d stored: %d bytes in %d parts, sha256 %s%s, %.1f ms", stored.file.id, stored.file.size,
             input_file.parts, stored.file.sha256.hex()[:16], "" if blob.new else " (deduplicated)",
             (time.perf_counter() - started) * 1000)
    return stored
