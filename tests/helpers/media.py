"""The media service in-process, on real Postgres and a real blob directory: its handlers called through the same
bytes-in, bytes-out path the internal RPC server uses, with a clock the test moves.

    async with MediaLab(dsn, tmp) as lab:
        media = await lab.upload(alice, data)                 # parts, then media.attach: a MessageMedia
        assert await lab.download(alice, media) == data
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.runtime import Reader
from services.common import db
from services.common.config import MediaConfig
from services.common.migrations import migrate
from services.common.rpc import context
from services.common.service import rpc_handler
from services.media.blobs import LocalBlobs
from services.media.handlers import METHODS, Media
from shard_db.layout import MAIN_MIGRATIONS
from tests.helpers.auth import ServiceProcess
from tests.helpers.gateway import free_port

log = logging.getLogger("tests.media")
KIB, MIB = 1024, 1024 * 1024
U = api.functions.upload


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def parts_of(data: bytes, part_size: int) -> list[bytes]:
    return [data[i:i + part_size] for i in range(0, len(data), part_size)]


def input_file(file_id: int, data: bytes, part_size: int, *, big: bool = False, md5: bool = True,
               name: str = "file.bin") -> api.types.TypeInputFile:
    n = len(parts_of(data, part_size))
    if big:
        return api.types.InputFileBig(id=file_id, parts=n, name=name)
    return api.types.InputFile(id=file_id, parts=n, name=name,
                               md5_checksum=hashlib.md5(data).hexdigest() if md5 else "")


def location(media: Any, thumb: str = "") -> api.types.TypeInputFileLocation:
    """Where a MessageMedia's file is read from (the largest size of a photo unless ``thumb``)."""
    if isinstance(media, api.types.MessageMediaPhoto):
        p = media.photo
        return api.types.InputPhotoFileLocation(id=p.id, access_hash=p.access_hash, file_reference=p.file_reference,
                                                thumb_size=thumb or p.sizes[-1].type)
    d = media.document
    return api.types.InputDocumentFileLocation(id=d.id, access_hash=d.access_hash, file_reference=d.file_reference,
                                               thumb_size=thumb)


class MediaLab:
    def __init__(self, dsn: str, root: Path, **config: Any) -> None:
        self.dsn = dsn
        self.root = root
        self.clock = Clock()
        self.config = MediaConfig(dir=str(root), **config)
        self.to_media: InProcess | None = None  # media_and_messages: the message service's link to this one

    async def __aenter__(self) -> MediaLab:
        self.pool = await db.create_pool(self.dsn, max_size=8)
        await migrate(self.pool, MAIN_MIGRATIONS, namespace="shard_map")
        self.blobs = LocalBlobs(self.root)
        self.blobs.open()
        self.deps = Media(self.config, self.pool, self.blobs, clock=self.clock)
        self.handlers = {cls.CONSTRUCTOR_ID: rpc_handler("media_test", self.deps, cls, fn, log)
                         for cls, fn in METHODS.items()}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def call(self, user: int, request: Any) -> Any:
        data = await self.handlers[request.CONSTRUCTOR_ID](context(user_id=user), request.to_bytes())
        return request.read_result(Reader(data))

    async def send_parts(self, user: int, file_id: int, data: bytes, part_size: int, *, big: bool = False,
                         order: list[int] | None = None, concurrency: int = 1) -> None:
        parts = parts_of(data, part_size)
        numbers = order if order is not None else list(range(len(parts)))
        limit = anyio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with limit:
                if big:
                    await self.call(user, U.SaveBigFilePart(file_id=file_id, file_part=i, file_total_parts=len(parts),
                                                            bytes=parts[i]))
                else:
                    await self.call(user, U.SaveFilePart(file_id=file_id, file_part=i, bytes=parts[i]))

        async with anyio.create_task_group() as tg:
            for i in numbers:
                tg.start_soon(one, i)

    async def attach(self, user: int, media: Any, readers: list[int] | None = None) -> Any:
        answer = await self.call(user, media_fn.Attach(media=media.to_bytes(), readers=readers or []))
        return Reader(answer.media).read_object()

    async def upload(self, user: int, data: bytes, *, part_size: int = 512 * KIB, big: bool | None = None,
                     readers: list[int] | None = None, concurrency: int = 4, photo: bool = False,
                     file_id: int | None = None) -> Any:
        """Send ``data`` in parts (concurrently, last part first) and attach it as a document (or photo)."""
        big = len(data) > 10 * MIB if big is None else big
        file_id = file_id if file_id is not None else secrets.randbits(63)
        n = len(parts_of(data, part_size))
        await self.send_parts(user, file_id, data, part_size, big=big, order=list(reversed(range(n))),
                              concurrency=concurrency)
        f = input_file(file_id, data, part_size, big=big)
        media: Any = (api.types.InputMediaUploadedPhoto(file=f) if photo else
                      api.types.InputMediaUploadedDocument(file=f, mime_type="application/octet-stream", attributes=[]))
        return await self.attach(user, media, readers)

    async def download(self, user: int, media: Any, *, chunk: int = 1024 * KIB, thumb: str = "") -> bytes:
        loc = location(media, thumb)
        out = bytearray()
        offset = 0
        while True:
            got = await self.call(user, U.GetFile(location=loc, offset=offset, limit=chunk))
            out += got.bytes
            if len(got.bytes) < chunk:
                return bytes(out)
            offset += chunk

    def blob_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "blobs").glob("*/*/*") if p.is_file())

    def temp_files(self) -> list[Path]:
        return sorted((self.root / "tmp").iterdir())


def media_process(tmp: Path, postgres_dsn: str, redis_url: str, **env: str) -> ServiceProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    rpc_port, metrics_port = free_port(), free_port()
    full = {**os.environ, "MTLAB_POSTGRES_DSN": postgres_dsn, "MTLAB_REDIS_URL": redis_url,
            "MTLAB_MEDIA_RPC_PORT": str(rpc_port), "MTLAB_MEDIA_METRICS_PORT": str(metrics_port),
            "MTLAB_MEDIA_DIR": str(tmp / "store"), **env}
    return ServiceProcess("services.media", full, tmp / "media.log", rpc_port, metrics_port)


class InProcess:
    """An RPC client (``services.common.rpc.Caller``) that hands each query's bytes to another service's handlers
    in this process, as its RPC server would; ``after`` runs once after a call of a given constructor (a test
    changes the world at that exact point)."""

    def __init__(self, handlers: dict[int, Any]) -> None:
        self.handlers = handlers
        self.after: dict[int, Any] = {}

    async def call(self, query: bytes, ctx: Any) -> bytes:
        constructor = int.from_bytes(query[:4], "little")
        answer: bytes = await self.handlers[constructor](ctx, query)
        hook = self.after.pop(constructor, None)
        if hook is not None:
            await hook()
        return answer


@contextlib.asynccontextmanager
async def media_and_messages(dsn: str, root: Path, messages_config: dict[str, Any] | None = None,
                             **media_config: Any) -> AsyncIterator[tuple[Any, MediaLab]]:
    """The message service (tests/helpers/messages.py) and the media service in this process, on one database,
    each calling the other as over internal RPC: sendMedia and forwards reach media.attach, downloads of a channel's
    file reach files.memberOf, the release reaches files.inUse."""
    from services.messages import media as messages_media
    from tests.helpers.messages import MessageLab

    async with MessageLab(dsn, **(messages_config or {})) as messages, MediaLab(dsn, root, **media_config) as media:
        to_media = InProcess(media.handlers)
        link = messages_media.MediaLink(messages.deps, to_media)
        messages.handlers |= {cls.CONSTRUCTOR_ID: rpc_handler("messages_test", link, cls, fn, log)
                              for cls, fn in messages_media.METHODS.items()}
        media.deps.messages = InProcess(messages.handlers)
        media.to_media = to_media
        yield messages, media
