"""A media service process killed in the middle of an assembly (MTLAB_MEDIA_CRASH_AT): no half-written blob is
ever visible, no metadata points at a blob that is not whole, and the same upload assembles once the service is
back. Real process, real Postgres, parts sent over internal RPC as the gateway sends them."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.runtime import Reader
from services.common.rpc import RpcClient, RpcError, ServiceUnavailable, context
from services.media.assembly import CRASH_EXIT
from tests.helpers.media import KIB, MIB, input_file, location, media_process, parts_of

ALICE, BOB = 201, 202


async def call(client: RpcClient, user: int, request: Any) -> Any:
    return request.read_result(Reader(await client.call(request.to_bytes(), context(user_id=user))))


async def attach(client: RpcClient, user: int, f: Any, readers: list[int]) -> Any:
    media = api.types.InputMediaUploadedDocument(file=f, mime_type="application/octet-stream", attributes=[])
    answer = await call(client, user, media_fn.Attach(media=media.to_bytes(), readers=readers))
    return Reader(answer.media).read_object()


async def upload(client: RpcClient, user: int, file_id: int, data: bytes) -> None:
    for i, part in enumerate(parts_of(data, 512 * KIB)):
        await call(client, user, api.functions.upload.SaveFilePart(file_id=file_id, file_part=i, bytes=part))


async def download(client: RpcClient, user: int, media: Any, size: int) -> bytes:
    got = bytearray()
    for offset in range(0, size, MIB):
        got += (await call(client, user, api.functions.upload.GetFile(location=location(media), offset=offset,
                                                                      limit=MIB))).bytes
    return bytes(got)


def upload_then_crash(service: Any, file_id: int, data: bytes, readers: list[int]) -> None:
    """Alice uploads ``data`` and attaches it; the service, told to crash in the assembly, dies answering."""

    async def run() -> None:
        async with RpcClient("media", "127.0.0.1", service.rpc_port) as client:
            with anyio.fail_after(30):
                await client.wait_connected()
                await upload(client, ALICE, file_id, data)
                with pytest.raises(ServiceUnavailable):  # the process died while assembling
                    await attach(client, ALICE, input_file(file_id, data, 512 * KIB), readers)

    anyio.run(run)
    assert service.wait() == CRASH_EXIT


async def rows(dsn: str, sql: str) -> Any:
    con = await asyncpg.connect(dsn)
    try:
        return await con.fetchval(sql)
    finally:
        await con.close()


@pytest.mark.parametrize("where", ["write", "rename"])
def test_a_crash_during_assembly_leaves_no_half_file(database: str, redis_url: str, tmp_path: Path,
                                                      where: str) -> None:
    data = os.urandom(6 * MIB + 3 * KIB)  # big enough that the crash lands mid-file
    file_id = secrets.randbits(63)
    store = tmp_path / "store"
    service = media_process(tmp_path, database, redis_url, MTLAB_MEDIA_CRASH_AT=where)
    try:
        _crash_then_recover(service, database, store, data, file_id, where)
    finally:
        service.stop()


def _crash_then_recover(service: Any, database: str, store: Path, data: bytes, file_id: int, where: str) -> None:
    service.start()
    upload_then_crash(service, file_id, data, [BOB])
    blobs = [p for p in (store / "blobs").rglob("*") if p.is_file()]
    temps = list((store / "tmp").iterdir())
    staged = [p for p in (store / "staging").rglob("*") if p.is_file()]
    if where == "write":
        # halfway through hashing the staged bytes: nothing under blobs/, nothing to clean up, the upload as it was
        assert blobs == [] and temps == []
        assert [p.read_bytes() for p in staged] == [data]
    else:
        # the blob is complete and in place, but no metadata was committed: no file anybody can name
        [blob] = blobs
        assert blob.name == hashlib.sha256(data).hexdigest() and blob.read_bytes() == data
    assert anyio.run(rows, database, "SELECT count(*) FROM media_files") == 0
    assert anyio.run(rows, database, "SELECT count(*) FROM media_blobs") == 0

    service.start(MTLAB_MEDIA_CRASH_AT="")

    async def again() -> None:
        async with RpcClient("media", "127.0.0.1", service.rpc_port) as client:
            with anyio.fail_after(30):
                await client.wait_connected()
                media = await attach(client, ALICE, input_file(file_id, data, 512 * KIB), [BOB])
                assert await download(client, BOB, media, len(data)) == data
                with pytest.raises(RpcError):
                    await call(client, 999, api.functions.upload.GetFile(location=location(media), offset=0,
                                                                         limit=MIB))

    anyio.run(again)
    assert list((store / "tmp").iterdir()) == []
    assert [p.name for p in (store / "blobs").rglob("*") if p.is_file()] == [hashlib.sha256(data).hexdigest()]
    assert anyio.run(rows, database, "SELECT refs FROM media_blobs") == 1


def test_an_orphan_changed_after_a_crash_is_not_trusted(database: str, redis_url: str, tmp_path: Path) -> None:
    """A crash after the link leaves an orphan blob that shares its bytes with the upload's staged file; a part sent
    again then changes them. The next upload of the real content must not take that orphan for its blob."""
    data = os.urandom(2 * MIB)
    file_id = secrets.randbits(63)
    store = tmp_path / "store"
    service = media_process(tmp_path, database, redis_url, MTLAB_MEDIA_CRASH_AT="rename")
    try:
        service.start()
        upload_then_crash(service, file_id, data, [])
        [orphan] = [p for p in (store / "blobs").rglob("*") if p.is_file()]
        service.start(MTLAB_MEDIA_CRASH_AT="")

        async def change_then_upload_again() -> None:
            async with RpcClient("media", "127.0.0.1", service.rpc_port) as client:
                with anyio.fail_after(30):
                    await client.wait_connected()
                    await call(client, ALICE, api.functions.upload.SaveFilePart(file_id=file_id, file_part=0,
                                                                                bytes=os.urandom(512 * KIB)))
                    assert orphan.read_bytes() != data  # the orphan's bytes changed under its name
                    other = secrets.randbits(63)
                    await upload(client, BOB, other, data)
                    media = await attach(client, BOB, input_file(other, data, 512 * KIB), [])
                    assert await download(client, BOB, media, len(data)) == data

        anyio.run(change_then_upload_again)
        blob = store / "blobs" / orphan.relative_to(store / "blobs")
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    finally:
        service.stop()
