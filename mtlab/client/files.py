"""Uploading and downloading files with the SDK (core.telegram.org/api/files), in parts, with bounded memory.

    file = await files.upload(client.invoke, path, name="cat.png")        # an inputFile / inputFileBig
    await client.invoke(messages.SendMedia(peer=..., media=InputMediaUploadedPhoto(file=file), ...))
    with open("copy.png", "wb") as out:
        await files.download(client.invoke, files.location(message.media), out)

``upload`` reads the source one part at a time (512 KiB by default) and keeps ``workers`` parts in flight, 8 by
default (saveFilePart, or saveBigFilePart above 10 MB, as the spec asks; the MD5 of a small file goes in
inputFile); at most twice that many parts are in memory (in flight, and read ahead). ``download`` keeps
``workers`` getFile requests of 1 MiB in flight, 4 by default (a sliding window: a new one as soon as the oldest is
written) and writes them in order; at most that many chunks are in memory. ``mtlab bench media`` measured those
defaults best: with 4 parts in flight an upload idled between parts; 8 chunks of a download no longer helped.
Written against anyio: it runs wherever ``invoke`` runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from mtproto.tl import api

Invoke = Callable[[Any], Awaitable[Any]]

PART = 512 * 1024
CHUNK = 1024 * 1024
BIG = 10 * 1024 * 1024


async def upload(invoke: Invoke, source: bytes | Path | BinaryIO, *, name: str = "", part_size: int = PART,
                 workers: int = 8, file_id: int | None = None) -> api.types.InputFile | api.types.InputFileBig:
    """Send ``source`` in parts; the InputFile that names the upload in sendMedia/uploadMedia."""
    if isinstance(source, bytes):
        stream: BinaryIO = io.BytesIO(source)
    elif isinstance(source, Path):
        stream = source.open("rb")
        name = name or source.name
    else:
        stream = source
    try:
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        big = size > BIG
        total = -(-size // part_size)
        file_id = file_id if file_id is not None else secrets.randbits(63)
        # The spec's checksum, of a small file only: inputFileBig has none, and hashing a big file would cost a
        # quarter of its upload's CPU here for nothing.
        md5 = None if big else hashlib.md5()
        send, receive = anyio.create_memory_object_stream[tuple[int, bytes]](workers)

        async def sender(parts: MemoryObjectReceiveStream[tuple[int, bytes]]) -> None:
            async with parts:
                async for number, data in parts:
                    if big:
                        await invoke(api.functions.upload.SaveBigFilePart(
                            file_id=file_id, file_part=number, file_total_parts=total, bytes=data))
                    else:
                        await invoke(api.functions.upload.SaveFilePart(file_id=file_id, file_part=number, bytes=data))

        async with _first_error(), anyio.create_task_group() as tg:
            with receive:
                for _ in range(workers):
                    tg.start_soon(sender, receive.clone())
            async with send:
                for number in range(total):
                    data = stream.read(part_size)
                    if md5 is not None:
                        md5.update(data)
                    await send.send((number, data))
    finally:
        if isinstance(source, Path):
            stream.close()
    if md5 is None:
        return api.types.InputFileBig(id=file_id, parts=total, name=name)
    return api.types.InputFile(id=file_id, parts=total, name=name, md5_checksum=md5.hexdigest())


@contextlib.asynccontextmanager
async def _first_error() -> AsyncIterator[None]:
    """The first error of the parallel requests, as itself (an RpcError a caller can catch), not as a group."""
    try:
        yield
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group


def location(media: Any, thumb: str = "") -> api.types.TypeInputFileLocation:
    """Where the file of a MessageMedia (a document, or a photo's largest size unless ``thumb``) is read from."""
    if isinstance(media, api.types.MessageMediaPhoto) and isinstance(media.photo, api.types.Photo):
        p = media.photo
        return api.types.InputPhotoFileLocation(id=p.id, access_hash=p.access_hash, file_reference=p.file_reference,
                                                thumb_size=thumb or p.sizes[-1].type)
    if isinstance(media, api.types.MessageMediaDocument) and isinstance(media.document, api.types.Document):
        d = media.document
        return api.types.InputDocumentFileLocation(id=d.id, access_hash=d.access_hash,
                                                   file_reference=d.file_reference, thumb_size=thumb)
    raise ValueError(f"no file in {type(media).__name__}")


async def download(invoke: Invoke, where: api.types.TypeInputFileLocation, out: BinaryIO, *,
                   workers: int = 4) -> int:
    """Write the file at ``where`` to ``out``; the number of bytes written.

    A sliding window: ``workers`` getFile requests are in flight at all times, and as soon as the oldest answer
    is written the next request goes out, so one slow answer does not idle the others (waiting for a whole batch
    did). The end is the first answer shorter than a chunk; the requests already sent past it answer nothing."""
    chunks: dict[int, bytes] = {}
    arrived: dict[int, anyio.Event] = {}
    written = 0

    async def get(i: int, done: anyio.Event) -> None:
        got = await invoke(api.functions.upload.GetFile(location=where, offset=i * CHUNK, limit=CHUNK))
        chunks[i] = got.bytes
        done.set()

    async with _first_error(), anyio.create_task_group() as tg:

        def request(i: int) -> None:
            arrived[i] = anyio.Event()
            tg.start_soon(get, i, arrived[i])

        for i in range(workers):
            request(i)
        i = 0
        while True:
            await arrived.pop(i).wait()
            data = chunks.pop(i)
            out.write(data)
            written += len(data)
            if len(data) < CHUNK:
                break
            request(i + workers)  # at most ``workers`` chunks are in flight or waiting to be written
            i += 1
    return written
