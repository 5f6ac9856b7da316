"""Uploads, assembly and downloads in the media service, on real Postgres and a real blob directory
(tests/helpers/media.py): the spec's part rules and errors, sizes on each side of the limits, out of order and
concurrent parts, deduplication, access control, quotas, expiry."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mtproto.tl import api
from services.common.rpc import RpcError
from services.media import sweep
from tests.helpers.media import KIB, MIB, MediaLab, U, input_file, location

ALICE, BOB, CAROL = 101, 102, 103


def run(dsn: str, root: Path, body: Callable[[MediaLab], Awaitable[Any]], **config: Any) -> Any:
    async def go() -> Any:
        async with MediaLab(dsn, root, **config) as lab:
            return await body(lab)

    return asyncio.run(go())


async def refused(call: Awaitable[Any]) -> str:
    with pytest.raises(RpcError) as info:
        await call
    return info.value.message


def document(file: Any, mime: str = "application/octet-stream") -> api.types.InputMediaUploadedDocument:
    return api.types.InputMediaUploadedDocument(file=file, mime_type=mime, attributes=[])


@pytest.mark.parametrize("size", [0, 1, 512 * KIB, 10 * MIB + 1, 30 * MIB],
                         ids=["0B", "1B", "512KiB", "10MiB+1-big", "30MiB-big"])
def test_upload_and_download_round_trip(database: str, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)

    async def body(lab: MediaLab) -> None:
        media = await lab.upload(ALICE, data, readers=[BOB], concurrency=8)
        assert isinstance(media, api.types.MessageMediaDocument)
        assert media.document.size == size
        assert await lab.download(ALICE, media) == data
        assert await lab.download(BOB, media, chunk=256 * KIB) == data
        # the staged parts are gone once assembled; the blob is one file named by its hash
        assert not any((tmp_path / "staging").rglob("*.*"))
        [blob] = lab.blob_files()
        assert blob.name == hashlib.sha256(data).hexdigest()

    run(database, tmp_path, body)


def test_small_parts_out_of_order_and_a_smaller_last_part(database: str, tmp_path: Path) -> None:
    data = os.urandom(5 * 64 * KIB + 777)

    async def body(lab: MediaLab) -> None:
        file_id = 42
        await lab.send_parts(ALICE, file_id, data, 64 * KIB, order=[5, 2, 0, 4, 1, 3], concurrency=6)
        media = await lab.attach(ALICE, document(input_file(file_id, data, 64 * KIB)))
        assert await lab.download(ALICE, media) == data
        hashes = await lab.call(ALICE, U.GetFileHashes(location=location(media), offset=0))
        assert [h.offset for h in hashes] == [0, 128 * KIB, 256 * KIB]
        assert b"".join(h.hash for h in hashes) == b"".join(
            hashlib.sha256(data[o:o + 128 * KIB]).digest() for o in (0, 128 * KIB, 256 * KIB))

    run(database, tmp_path, body)


def test_missing_parts_are_named(database: str, tmp_path: Path) -> None:
    data = os.urandom(4 * 32 * KIB)

    async def body(lab: MediaLab) -> None:
        await lab.send_parts(ALICE, 7, data, 32 * KIB, order=[0, 1, 3])
        assert await refused(lab.attach(ALICE, document(input_file(7, data, 32 * KIB)))) == "FILE_PART_2_MISSING"
        assert await refused(lab.attach(ALICE, document(input_file(8, data, 32 * KIB)))) == "FILE_PART_0_MISSING"
        await lab.send_parts(ALICE, 7, data, 32 * KIB, order=[2])  # the client resends what was missing
        media = await lab.attach(ALICE, document(input_file(7, data, 32 * KIB)))
        assert await lab.download(ALICE, media) == data

    run(database, tmp_path, body)


def test_wrong_md5_is_refused_and_leaves_no_file(database: str, tmp_path: Path) -> None:
    data = os.urandom(100 * KIB)

    async def body(lab: MediaLab) -> None:
        await lab.send_parts(ALICE, 9, data, 64 * KIB)
        wrong = api.types.InputFile(id=9, parts=2, name="x", md5_checksum=hashlib.md5(b"other").hexdigest())
        assert await refused(lab.attach(ALICE, document(wrong))) == "MD5_CHECKSUM_INVALID"
        assert await lab.pool.fetchval("SELECT count(*) FROM media_files") == 0
        # an empty md5 skips the check (the spec: checked "in case it was passed")
        media = await lab.attach(ALICE, document(input_file(9, data, 64 * KIB, md5=False)))
        assert await lab.download(ALICE, media) == data

    run(database, tmp_path, body)


def test_part_size_rules(database: str, tmp_path: Path) -> None:
    async def body(lab: MediaLab) -> None:
        save: Callable[..., Awaitable[Any]] = lambda fid, i, n: lab.call(  # noqa: E731
            ALICE, U.SaveFilePart(file_id=fid, file_part=i, bytes=b"x" * n))
        assert await refused(save(1, 0, 512 * KIB + 1024)) == "FILE_PART_TOO_BIG"
        assert await refused(save(1, 0, 0)) == "FILE_PART_EMPTY"
        assert await refused(save(1, -1, 1024)) == "FILE_PART_INVALID"
        # a size that changes: part 0 was 64 KiB, part 1 claims 128 KiB
        await save(2, 0, 64 * KIB)
        assert await refused(save(2, 1, 128 * KIB)) == "FILE_PART_SIZE_CHANGED"
        # a part that cannot be the last (a higher one exists) must divide 512 KiB
        await save(3, 5, 1000)
        assert await refused(save(3, 2, 1000)) == "FILE_PART_SIZE_INVALID"
        assert await refused(save(3, 6, 1024)) == "FILE_PART_SIZE_INVALID"  # part 5 (1000 B) would not be last
        # the last part may be smaller, and may arrive first
        await save(4, 3, 1000)
        await save(4, 0, 4 * KIB)
        # small files end at 10 MiB: beyond, saveBigFilePart is required
        assert await refused(save(5, 20, 512 * KIB)) == "FILE_PARTS_INVALID"
        big: Callable[..., Awaitable[Any]] = lambda fid, i, total, n: lab.call(  # noqa: E731
            ALICE, U.SaveBigFilePart(file_id=fid, file_part=i, file_total_parts=total, bytes=b"x" * n))
        assert await refused(big(6, 0, 4, 1000)) == "FILE_PART_SIZE_INVALID"  # not the last: must divide 512 KiB
        assert await refused(big(6, 4, 4, 1024)) == "FILE_PART_INVALID"
        assert await refused(big(6, 0, 4001, 1024)) == "FILE_PARTS_INVALID"
        await big(7, 0, 3, 1024)
        assert await refused(big(7, 1, 5, 1024)) == "FILE_PARTS_INVALID"  # the part count changed
        assert await refused(save(7, 1, 1024)) == "FILE_PARTS_INVALID"  # small and big under one file_id

    run(database, tmp_path, body)


def test_big_path_is_checked_at_assembly(database: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 512 * KIB)

    async def body(lab: MediaLab) -> None:
        await lab.send_parts(ALICE, 11, data, 512 * KIB, big=True)
        small = input_file(11, data, 512 * KIB)  # inputFile naming a saveBigFilePart upload
        assert await refused(lab.attach(ALICE, document(small))) == "FILE_PARTS_INVALID"
        media = await lab.attach(ALICE, document(input_file(11, data, 512 * KIB, big=True)))
        assert await lab.download(ALICE, media) == data

    run(database, tmp_path, body)


def test_get_file_offset_and_limit_rules(database: str, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB)

    async def body(lab: MediaLab) -> None:
        media = await lab.upload(ALICE, data)
        loc = location(media)
        get = lambda offset, limit, precise=False: lab.call(  # noqa: E731
            ALICE, U.GetFile(location=loc, offset=offset, limit=limit, precise=precise))
        assert await refused(get(1024, 4096)) == "OFFSET_INVALID"
        assert await refused(get(0, 1000)) == "LIMIT_INVALID"
        assert await refused(get(0, 3 * 4096)) == "LIMIT_INVALID"  # does not divide 1 MiB
        assert await refused(get(0, 2 * MIB)) == "LIMIT_INVALID"
        assert await refused(get(MIB - 4096, 8192)) == "LIMIT_INVALID"  # crosses a 1 MiB boundary
        assert await refused(get(-4096, 4096)) == "OFFSET_INVALID"
        assert (await get(MIB + 4096, 64 * KIB)).bytes == data[MIB + 4096:MIB + 4096 + 64 * KIB]
        # precise: 1 KiB alignment, any multiple of 1 KiB, still inside one window
        assert (await get(1024, 3 * 1024, True)).bytes == data[1024:4096]
        assert await refused(get(MIB - 1024, 2048, True)) == "LIMIT_INVALID"
        assert (await get(3 * MIB, 4096)).bytes == b""  # at the end: nothing more

    run(database, tmp_path, body)


def test_only_the_uploader_and_readers_may_download(database: str, tmp_path: Path) -> None:
    data = os.urandom(50 * KIB)

    async def body(lab: MediaLab) -> None:
        media = await lab.upload(ALICE, data, readers=[BOB])
        d = media.document
        assert await lab.download(BOB, media) == data
        # Carol was shown nothing: the same error as a file that does not exist, or a wrong access_hash
        assert await refused(lab.download(CAROL, media)) == "FILE_ID_INVALID"
        ghost = api.types.MessageMediaDocument(document=api.types.Document(
            id=d.id + 1, access_hash=d.access_hash, file_reference=d.file_reference, date=0, mime_type="", size=1,
            dc_id=2, attributes=[]))
        assert await refused(lab.download(ALICE, ghost)) == "FILE_ID_INVALID"
        forged = api.types.InputDocumentFileLocation(id=d.id, access_hash=d.access_hash ^ 1,
                                                     file_reference=d.file_reference, thumb_size="")
        assert await refused(lab.call(BOB, U.GetFile(location=forged, offset=0, limit=4096))) == "FILE_ID_INVALID"
        stale = api.types.InputDocumentFileLocation(id=d.id, access_hash=d.access_hash,
                                                    file_reference=secrets.token_bytes(16), thumb_size="")
        assert await refused(lab.call(BOB, U.GetFile(location=stale, offset=0, limit=4096))) == \
            "FILE_REFERENCE_EXPIRED"
        assert await refused(lab.call(CAROL, U.GetFile(location=stale, offset=0, limit=4096))) == "FILE_ID_INVALID"
        # Bob sends the file on to Carol (inputMediaDocument): now she may read it
        again = api.types.InputMediaDocument(id=api.types.InputDocument(
            id=d.id, access_hash=d.access_hash, file_reference=d.file_reference))
        assert await refused(lab.attach(CAROL, again, readers=[BOB])) == "MEDIA_INVALID"  # not hers to send
        resent = await lab.attach(BOB, again, readers=[CAROL])
        assert resent.document.id == d.id
        assert await lab.download(CAROL, media) == data

    run(database, tmp_path, body)


def test_same_content_from_two_users_at_once_is_stored_once(database: str, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)

    async def body(lab: MediaLab) -> None:
        a, b = await asyncio.gather(lab.upload(ALICE, data), lab.upload(BOB, data))
        assert a.document.id != b.document.id
        assert len(lab.blob_files()) == 1
        assert await lab.pool.fetchval("SELECT refs FROM media_blobs") == 2
        assert await lab.download(ALICE, a) == data == await lab.download(BOB, b)
        assert await refused(lab.download(BOB, a)) == "FILE_ID_INVALID"  # one blob, two files, two owners
        # releasing one file keeps the blob; releasing the last frees it (the sweeper deletes the bytes)
        from services.media import store
        assert await lab.deps.txn("t", lambda con: store.release_file(con, a.document.id)) == []
        assert await lab.download(BOB, b) == data
        freed = await lab.deps.txn("t", lambda con: store.release_file(con, b.document.id))
        assert freed == [hashlib.sha256(data).digest()]
        lab.clock.now += 3600
        os.utime(lab.blob_files()[0], (lab.clock.now - 3600, lab.clock.now - 3600))
        assert await sweep.once(lab.deps) == (0, 1)
        assert lab.blob_files() == []

    run(database, tmp_path, body)


def test_a_resent_upload_reuses_its_file(database: str, tmp_path: Path) -> None:
    data = os.urandom(70 * KIB)

    async def body(lab: MediaLab) -> None:
        await lab.send_parts(ALICE, 5, data, 64 * KIB)
        f = input_file(5, data, 64 * KIB)
        first, second = await asyncio.gather(lab.attach(ALICE, document(f)), lab.attach(ALICE, document(f)))
        assert first.document.id == second.document.id
        assert await lab.pool.fetchval("SELECT count(*) FROM media_files") == 1
        assert await lab.pool.fetchval("SELECT refs FROM media_blobs") == 1

    run(database, tmp_path, body)


def test_quotas(database: str, tmp_path: Path) -> None:
    async def body(lab: MediaLab) -> None:
        await lab.send_parts(ALICE, 1, os.urandom(3 * 64 * KIB), 64 * KIB)
        assert await refused(lab.call(ALICE, U.SaveFilePart(file_id=2, file_part=0, bytes=b"x" * 1024))) == \
            "UPLOAD_PARTS_TOO_MANY"
        await lab.call(ALICE, U.SaveFilePart(file_id=1, file_part=2, bytes=b"y" * 64 * KIB))  # a resend is no new part
        await lab.upload(BOB, os.urandom(200 * KIB), part_size=128 * KIB)
        assert await refused(lab.call(BOB, U.SaveFilePart(file_id=3, file_part=0, bytes=b"x" * 64 * KIB))) == \
            "MEDIA_QUOTA_EXCEEDED"

    run(database, tmp_path, body, parts_in_flight=3, quota_bytes=256 * KIB)


def test_abandoned_uploads_expire(database: str, tmp_path: Path) -> None:
    async def body(lab: MediaLab) -> None:
        await lab.send_parts(ALICE, 1, os.urandom(100 * KIB), 64 * KIB)
        assert await sweep.once(lab.deps) == (0, 0)
        lab.clock.now += 3601
        assert await sweep.once(lab.deps) == (1, 0)
        assert await lab.pool.fetchval("SELECT count(*) FROM media_upload_parts") == 0
        assert not any((tmp_path / "staging").rglob("*.*"))
        data = os.urandom(10)
        assert await refused(lab.attach(ALICE, document(input_file(1, data, 64 * KIB)))) == "FILE_PART_0_MISSING"

    run(database, tmp_path, body, upload_expiry=3600.0)


def _png(w: int, h: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)).save(out, "PNG")  # noise: thumbnails are smaller
    return out.getvalue()


def test_a_photo_gets_sizes_and_a_non_image_becomes_a_document(database: str, tmp_path: Path) -> None:
    png = _png(640, 480)

    async def body(lab: MediaLab) -> None:
        media = await lab.upload(ALICE, png, photo=True, readers=[BOB])
        assert isinstance(media, api.types.MessageMediaPhoto)
        sizes = {s.type: (s.w, s.h) for s in media.photo.sizes}
        assert sizes == {"s": (100, 75), "m": (320, 240), "x": (640, 480)}
        assert await lab.download(BOB, media) == png  # the largest size is the original
        thumb = await lab.download(BOB, media, thumb="m")
        with Image.open(io.BytesIO(thumb)) as img:
            assert (img.format, img.size) == ("JPEG", (320, 240))
        junk = os.urandom(3000)
        doc = await lab.upload(ALICE, junk, photo=True)
        assert isinstance(doc, api.types.MessageMediaDocument)
        assert await lab.download(ALICE, doc) == junk

    run(database, tmp_path, body)


def test_a_tiny_photo_gets_no_thumbnail_bigger_than_itself(database: str, tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("1", (640, 480), 1).save(out, "PNG")  # one bit, one colour: a few hundred bytes
    flat = out.getvalue()

    async def body(lab: MediaLab) -> None:
        media = await lab.upload(ALICE, flat, photo=True)
        assert [(s.type, s.size) for s in media.photo.sizes] == [("x", len(flat))]
        assert await lab.download(ALICE, media) == flat

    run(database, tmp_path, body)
