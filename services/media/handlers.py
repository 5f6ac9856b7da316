"""One function per RPC method the media service answers (core.telegram.org/api/files).

- ``upload.saveFilePart`` / ``upload.saveBigFilePart``: stage one part of an upload, after every rule and limit
  that can be checked before the bytes touch the disk (``save_part``).
- ``media.attach`` (internal, from the message service): turn an InputMedia into the MessageMedia of a message;
  an uploaded file is assembled here (``assembly.py``) and its readers recorded.
- ``media.attachEncrypted`` (internal, for secret chats' sendEncryptedFile / uploadEncryptedFile): encrypted.py
  stores the client's ciphertext as a file of its own kind, never decoded.
- ``upload.getFile`` / ``upload.getFileHashes``: read a stored file, by whoever may (``locate``; a secret chat's
  file with ``inputEncryptedFileLocation``, by the chat's participants: encrypted.py).

Upload rules (the spec's, with its error names, all 400):

- a part is 1 byte to 512 KiB (FILE_PART_EMPTY, FILE_PART_TOO_BIG); every part but the last has the same size,
  divisible by 1024 and dividing 512 KiB (FILE_PART_SIZE_INVALID; a size that differs from the other parts':
  FILE_PART_SIZE_CHANGED); the last part may be smaller;
- a file over 10 MB (``small_file_max``) must use saveBigFilePart, whose file_total_parts stays the same for every
  part and is at most ``max_parts`` (FILE_PARTS_INVALID); a part number outside the file is FILE_PART_INVALID;
- parts may come in any order, concurrently, and again (the newest copy wins).

Parts arrive in any order, so "every part but the last" is checked as the parts show it: the upload row keeps the
part size once a part is known not to be the last (a part below the highest number seen, or the previous highest
when a higher one arrives), and the size of the highest part, which may not exceed it.

Access (``readable``, ``locate``): a file is read by its uploader, by its readers (the users a message carrying it
was sent to) and, for a channel's post, by the channel's members now (asked of the message service with
files.memberOf, the answer trusted for ``member_ttl`` seconds). Anyone else, a wrong access_hash, a wrong kind of
location and a file that does not exist all get the same 400 FILE_ID_INVALID, so a probe learns nothing. A reader
with a file_reference that is not the file's current one gets 400 FILE_REFERENCE_EXPIRED
(core.telegram.org/api/file_reference: refetch the message for a fresh one).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from prometheus_client import Counter

from mtproto.tl import api
from mtproto.tl.internal.functions import files as files_fn
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.internal.types import media as media_types
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLDecodeError, TLFunction
from services.common import db
from services.common.config import MediaConfig
from services.common.rpc import Caller, RpcError, signed_in
from services.common.service import Result
from services.media import assembly, encrypted, store
from services.media.blobs import LocalBlobs
from services.media.store import DOCUMENT, PHOTO, FileRow, SizeRow, UploadRow

log = logging.getLogger("mtlab.media")
T = TypeVar("T")

PART_MAX = 512 * 1024  # the largest part, and what every part size must divide
WINDOW = 1024 * 1024  # getFile never crosses a 1 MiB boundary
HASH_CHUNK = 128 * 1024  # getFileHashes: one SHA-256 per 128 KiB (the CDN's chunk size)
MAX_READERS = 200_000  # readers one attach may name (a big group's members)
MAX_NAME = 255
MEMBER_CACHE = 100_000  # (user, channel) answers remembered at most; beyond, forgotten all at once

RECEIVED = Counter("mtlab_media_received_bytes_total", "Part bytes accepted (staged)")
SENT = Counter("mtlab_media_sent_bytes_total", "File bytes sent by upload.getFile")
PARTS = Counter("mtlab_media_parts_total", "Parts received, by method and outcome (ok or the error name)",
                ["method", "outcome"])


@dataclass
class Media:
    """What the handlers need, injected by server.py (and by the tests, with their own clock)."""

    config: MediaConfig
    pool: db.Pool
    blobs: LocalBlobs
    clock: Callable[[], float] = field(default=time.time)
    #: The message service (files.memberOf for channels' files, files.inUse for the release); None: not
    #: configured, so a channel's file is read only by its readers by name and nothing is released.
    messages: Caller | None = None
    #: (user, channel) -> until when the message service's "a member" answer is trusted (``member_ttl``).
    members: dict[tuple[int, int], float] = field(default_factory=dict)

    async def txn(self, name: str, fn: Callable[[db.Connection], Awaitable[T]], *, durable: bool = True,
                  lock: int | None = None) -> T:
        """``fn`` in one named transaction; ``durable=False``: the commit does not wait for the WAL flush (for
        writes a server crash may lose harmlessly: a staged part's row); ``lock``: an advisory lock taken (and held
        until the end) in the same round trip as BEGIN."""
        prelude = "" if durable else "SET LOCAL synchronous_commit TO off"
        if lock is not None:
            prelude += f"{'; ' if prelude else ''}SELECT pg_advisory_xact_lock({int(lock)})"
        return await db.run_txn(self.pool, f"media.{name}", fn, retries=self.config.txn_retries, prelude=prelude)

    async def read(self, name: str, fn: Callable[[db.Connection], Awaitable[T]]) -> T:
        """``fn``, one SELECT, without BEGIN and COMMIT around it: one statement is a transaction by itself, so
        this is one round trip instead of three (a download asks this for every part it reads)."""
        started = time.perf_counter()
        async with self.pool.acquire() as con:
            result = await fn(con)
        db.TXN_SECONDS.labels(f"media.{name}").observe(time.perf_counter() - started)
        return result


def _full_size(size: int) -> bool:
    """A size every part but the last may have: divisible by 1 KiB and dividing 512 KiB."""
    return size % 1024 == 0 and PART_MAX % size == 0


# -- upload.saveFilePart / saveBigFilePart ------------------------------------------------------------------


def check_sizes(u: UploadRow, number: int, size: int) -> None:
    """Fit part ``number`` of ``size`` bytes into what ``u`` knows of the part sizes (updating it), or raise."""

    def not_last(s: int) -> None:
        if not _full_size(s):
            raise RpcError(400, "FILE_PART_SIZE_INVALID")
        if u.part_size is None:
            u.part_size = s
        elif s != u.part_size:
            raise RpcError(400, "FILE_PART_SIZE_CHANGED")

    known_not_last = number < u.total_parts - 1 if u.big and u.total_parts is not None else number < u.last_part
    if known_not_last:
        not_last(size)
    elif not u.big and number > u.last_part >= 0:
        not_last(u.last_size)  # the previous highest part was not the last after all
    if number > u.last_part:
        u.last_part, u.last_size = number, size
    elif number == u.last_part:
        u.last_size = size
    if u.part_size is not None and u.last_size > u.part_size:
        raise RpcError(400, "FILE_PART_SIZE_CHANGED")


async def save_part(deps: Media, me: int, file_id: int, number: int, data: bytes, total: int | None) -> bool:
    cfg = deps.config
    size, big = len(data), total is not None
    if number < 0:
        raise RpcError(400, "FILE_PART_INVALID")
    if size == 0:
        raise RpcError(400, "FILE_PART_EMPTY")
    if size > PART_MAX:
        raise RpcError(400, "FILE_PART_TOO_BIG")
    if total is not None:
        if not 0 < total <= cfg.max_parts:
            raise RpcError(400, "FILE_PARTS_INVALID")
        if number >= total:
            raise RpcError(400, "FILE_PART_INVALID")
        if number < total - 1 and (total - 1) * size + 1 > cfg.max_file_size:
            raise RpcError(400, "FILE_PARTS_INVALID")  # the file would be larger than allowed
    else:
        if number >= cfg.max_parts:
            raise RpcError(400, "FILE_PART_INVALID")
        # Whether this part is the last or not, the file is at least (number + 1) * size bytes.
        if (number + 1) * size > min(cfg.small_file_max, cfg.max_file_size):
            raise RpcError(400, "FILE_PARTS_INVALID")  # a file this big must use saveBigFilePart
    now = deps.clock()

    async def txn(con: db.Connection) -> int:
        # Under the upload's advisory lock (taken with BEGIN): the parts of one upload are checked, and written,
        # one after the other, while other uploads go on in parallel.
        state = await store.begin_part(con, me, file_id, number, big, total, now)
        u, old = state.upload, state.old
        if u.assembled_id is not None or u.big != big or u.total_parts != total:
            raise RpcError(400, "FILE_PARTS_INVALID")  # a file_id reused, or the kind or part count changed
        check_sizes(u, number, size)
        grown = size - (old.size if old else 0)
        if state.stored + state.staged + grown > cfg.quota_bytes:
            raise RpcError(400, "MEDIA_QUOTA_EXCEEDED")
        if old is None and state.in_flight + 1 > cfg.parts_in_flight:
            raise RpcError(400, "UPLOAD_PARTS_TOO_MANY")
        u.bytes += grown
        u.parts += 0 if old else 1
        # Its place in the finished file, when known (blobs.py): part 0 is at 0, any other once the part size is;
        # until then it waits in a side file, which the token names.
        if number == 0 or u.part_size is not None:
            offset, token = number * (u.part_size or 0), 0
        else:
            offset, token = 0, secrets.randbits(63) or 1
        await store.save_part(con, u, store.PartRow(number, size, token), now)
        # Written before the commit, so a committed part is a written one, and an assembly (which takes the
        # upload's row lock) never hashes a slot file that a part is being written into.
        await anyio.to_thread.run_sync(deps.blobs.write_part, me, file_id, number, token, offset, data)
        return old.token if old is not None and old.token != token else 0

    # The limits are checked (and the part recorded) before a byte is written: a refused part costs no disk. Not
    # durable: the commit does not wait for the WAL flush. A part row a server crash loses is as good as a part
    # the crash kept from being written: assembly finds it missing and the client sends it again. The assembly's
    # commit, which makes a file, is durable.
    previous = await deps.txn("save_part", txn, durable=False, lock=store.upload_lock_key(me, file_id))
    if previous:  # the side file of a copy sent before
        await anyio.to_thread.run_sync(deps.blobs.drop_part, me, file_id, number, previous)
    RECEIVED.inc(size)
    return True


async def _counted(method: str, work: Awaitable[bool]) -> bool:
    try:
        result = await work
    except RpcError as exc:
        PARTS.labels(method, exc.message).inc()
        log.info("%s refused: %s", method, exc.message)
        raise
    PARTS.labels(method, "ok").inc()
    return result


async def save_file_part(deps: Media, ctx: rpc.Context, q: api.functions.upload.SaveFilePart) -> bool:
    return await _counted("saveFilePart", save_part(deps, signed_in(ctx), q.file_id, q.file_part, q.bytes, None))


async def save_big_file_part(deps: Media, ctx: rpc.Context, q: api.functions.upload.SaveBigFilePart) -> bool:
    return await _counted("saveBigFilePart",
                          save_part(deps, signed_in(ctx), q.file_id, q.file_part, q.bytes, q.file_total_parts))


# -- media.attach -------------------------------------------------------------------------------------------


def render(deps: Media, f: FileRow, sizes: list[SizeRow]) -> api.types.TypeMessageMedia:
    """The MessageMedia a message carrying ``f`` shows (documents and photos of layer 229)."""
    if f.kind == PHOTO:
        photo_sizes: list[api.types.TypePhotoSize] = [api.types.PhotoSize(type=s.type, w=s.w, h=s.h, size=s.size)
                                                      for s in sizes]
        return api.types.MessageMediaPhoto(photo=api.types.Photo(
            id=f.id, access_hash=f.access_hash, file_reference=f.file_reference, date=f.date, sizes=photo_sizes,
            dc_id=deps.config.dc_id))
    return api.types.MessageMediaDocument(document=api.types.Document(
        id=f.id, access_hash=f.access_hash, file_reference=f.file_reference, date=f.date, mime_type=f.mime_type,
        size=f.size, dc_id=deps.config.dc_id, attributes=assembly.decode_attributes(f.attributes)))


async def member_of_any(deps: Media, ctx: rpc.Context, channels: list[int]) -> bool:
    """Whether the caller is a member of one of ``channels`` now (the message service says; a yes is trusted for
    ``member_ttl`` seconds, so a download of many parts asks once)."""
    me = signed_in(ctx)
    if not channels or deps.messages is None:
        return False
    now = deps.clock()
    if any(deps.members.get((me, c), 0.0) > now for c in channels):
        return True
    query = files_fn.MemberOf(channel_ids=channels)
    answer = query.read_result(Reader(await deps.messages.call(query.to_bytes(), ctx)))
    if len(deps.members) > MEMBER_CACHE:
        deps.members.clear()
    for c in answer.channel_ids:
        deps.members[(me, c)] = now + deps.config.member_ttl
    return bool(answer.channel_ids)


async def readable(deps: Media, ctx: rpc.Context, file_id: int) -> FileRow | None:
    """The file, when the caller may read it: its uploader, a reader by name, or a member of a channel that
    posted it. None when it does not exist or they may not: the callers answer both the same way."""
    me = signed_in(ctx)
    found = await deps.read("access", lambda con: store.access(con, file_id, me))
    if found is None:
        return None
    if found.named or await member_of_any(deps, ctx, found.channels):
        return found.file
    return None


async def _existing(deps: Media, ctx: rpc.Context, kind: int, ref: Any, readers: store.Grant) -> FileRow:
    """A stored file sent again (inputMediaDocument / inputMediaPhoto, a forward): the caller must be able to
    read it."""
    if not isinstance(ref, (api.types.InputDocument, api.types.InputPhoto)):
        raise RpcError(400, "MEDIA_EMPTY")
    f = await readable(deps, ctx, ref.id)
    if f is None or f.kind != kind or f.access_hash != ref.access_hash:
        raise RpcError(400, "MEDIA_INVALID")
    if f.file_reference != ref.file_reference:
        raise RpcError(400, "FILE_REFERENCE_EXPIRED")

    async def txn(con: db.Connection) -> None:
        if not await store.grant(con, f.id, readers):
            raise RpcError(400, "MEDIA_INVALID")  # released since it was read above: no message carries it

    await deps.txn("attach_existing", txn)
    return f


async def attach(deps: Media, ctx: rpc.Context, q: media_fn.Attach) -> media_types.Attached:
    me = signed_in(ctx)
    if len(q.readers) > MAX_READERS:
        raise RpcError(400, "MEDIA_INVALID")
    try:
        media = Reader(q.media).read_object()
    except TLDecodeError:
        raise RpcError(400, "MEDIA_INVALID") from None
    readers = store.Grant(users=tuple(r for r in q.readers if r != me), channel_id=q.channel_id,
                          held_at=deps.clock() if q.held else None)
    if isinstance(media, api.types.InputMediaUploadedDocument):
        if len(media.mime_type) > MAX_NAME:
            raise RpcError(400, "MEDIA_INVALID")
        f = await assembly.store_upload(deps, me, media.file, readers, photo=False, mime_type=media.mime_type,
                                        attributes=list(media.attributes))
    elif isinstance(media, api.types.InputMediaUploadedPhoto):
        f = await assembly.store_upload(deps, me, media.file, readers, photo=True)
    elif isinstance(media, api.types.InputMediaDocument):
        f = await _existing(deps, ctx, DOCUMENT, media.id, readers)
    elif isinstance(media, api.types.InputMediaPhoto):
        f = await _existing(deps, ctx, PHOTO, media.id, readers)
    else:
        raise RpcError(400, "MEDIA_INVALID")
    if f.kind not in (DOCUMENT, PHOTO):  # an upload that became a secret chat's file is no message's media
        raise RpcError(400, "MEDIA_INVALID")
    sizes = await deps.txn("attach_sizes", lambda con: store.sizes(con, f.id)) if f.kind == PHOTO else []
    return media_types.Attached(media=render(deps, f, sizes).to_bytes())


# -- upload.getFile / getFileHashes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    file: FileRow
    sha256: bytes
    size: int
    mime_type: str


async def locate(deps: Media, ctx: rpc.Context, location: api.types.TypeInputFileLocation) -> Located:
    """The bytes a location names, if the caller may read them (see the module docstring for the errors)."""
    if isinstance(location, api.types.InputEncryptedFileLocation):  # a secret chat's file (encrypted.py)
        found = await encrypted.readable(deps, ctx, location.id, location.access_hash)
        if found is None:
            raise RpcError(400, "FILE_ID_INVALID")
        return Located(found, found.sha256, found.size, found.mime_type)
    if isinstance(location, api.types.InputDocumentFileLocation):
        kind = DOCUMENT
    elif isinstance(location, api.types.InputPhotoFileLocation):
        kind = PHOTO
    else:
        raise RpcError(400, "LOCATION_INVALID")

    f = await readable(deps, ctx, location.id)
    sizes = await deps.read("locate", lambda con: store.sizes(con, location.id)) if f and f.kind == PHOTO else []
    if f is None or f.kind != kind or f.access_hash != location.access_hash:
        raise RpcError(400, "FILE_ID_INVALID")
    if f.file_reference != location.file_reference:
        raise RpcError(400, "FILE_REFERENCE_EXPIRED")
    if kind == DOCUMENT:
        if location.thumb_size:
            raise RpcError(400, "LOCATION_INVALID")  # documents get no thumbnails here
        return Located(f, f.sha256, f.size, f.mime_type)
    wanted = location.thumb_size or (sizes[-1].type if sizes else "")
    size = next((s for s in sizes if s.type == wanted), None)
    if size is None:
        raise RpcError(400, "LOCATION_INVALID")
    mime = f.mime_type if size.sha256 == f.sha256 else "image/jpeg"  # thumbnails are JPEG
    return Located(f, size.sha256, size.size, mime)


FILE_TYPES: dict[str, api.types.storage.TypeFileType] = {
    "image/jpeg": api.types.storage.FileJpeg(), "image/png": api.types.storage.FilePng(),
    "image/gif": api.types.storage.FileGif(), "image/webp": api.types.storage.FileWebp(),
    "application/pdf": api.types.storage.FilePdf(), "audio/mpeg": api.types.storage.FileMp3(),
    "video/mp4": api.types.storage.FileMp4(), "video/quicktime": api.types.storage.FileMov(),
}


def check_window(offset: int, limit: int, precise: bool) -> None:
    """upload.getFile's rules: offset and limit multiples of 4 KiB (1 KiB when ``precise``), limit at most 1 MiB
    and (unless precise) dividing 1 MiB, and the request inside one 1 MiB window."""
    align = 1024 if precise else 4096
    if offset < 0 or offset % align:
        raise RpcError(400, "OFFSET_INVALID")
    if limit <= 0 or limit > WINDOW or limit % align or (not precise and WINDOW % limit):
        raise RpcError(400, "LIMIT_INVALID")
    if offset // WINDOW != (offset + limit - 1) // WINDOW:
        raise RpcError(400, "LIMIT_INVALID")


async def get_file(deps: Media, ctx: rpc.Context, q: api.functions.upload.GetFile) -> api.types.upload.File:
    check_window(q.offset, q.limit, bool(q.precise))
    found = await locate(deps, ctx, q.location)
    data = b""
    if q.offset < found.size:
        data = await anyio.to_thread.run_sync(deps.blobs.read, found.sha256, q.offset, q.limit)
    SENT.inc(len(data))
    kind = FILE_TYPES.get(found.mime_type, api.types.storage.FileUnknown()) if q.offset == 0 else \
        api.types.storage.FilePartial()
    return api.types.upload.File(type=kind, mtime=found.file.date, bytes=data)


async def get_file_hashes(deps: Media, ctx: rpc.Context,
                          q: api.functions.upload.GetFileHashes) -> list[api.types.FileHash]:
    """SHA-256 of each 128 KiB chunk of the 1 MiB window from ``offset`` (rounded down to a chunk)."""
    if q.offset < 0:
        raise RpcError(400, "OFFSET_INVALID")
    found = await locate(deps, ctx, q.location)
    start = q.offset - q.offset % HASH_CHUNK
    if start >= found.size:
        return []
    window = await anyio.to_thread.run_sync(deps.blobs.read, found.sha256, start, WINDOW)
    return [api.types.FileHash(offset=start + i, limit=len(window[i:i + HASH_CHUNK]),
                               hash=hashlib.sha256(window[i:i + HASH_CHUNK]).digest())
            for i in range(0, len(window), HASH_CHUNK)]


Method = Callable[[Media, rpc.Context, Any], Awaitable[Result]]

#: The methods this service answers, by the TL function class whose bytes arrive.
METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.upload.SaveFilePart: save_file_part,
    api.functions.upload.SaveBigFilePart: save_big_file_part,
    api.functions.upload.GetFile: get_file,
    api.functions.upload.GetFileHashes: get_file_hashes,
    media_fn.Attach: attach,
    media_fn.AttachEncrypted: encrypted.attach_encrypted,
}
