"""Secret-chat files (services/media/encrypted.py, the file methods of services/messages/secret.py), in-process on
real Postgres and a real blob directory: devices of three users run the bundled client's end-to-end engine
(mtlab.client.secret) against the real handlers of the message, media and updates services, each call carrying
the device's auth key as the gateway sends it. A file goes out encrypted, is stored as the ciphertext it is, reaches
only the other device of the chat, is readable by the chat's two participants only, and lives as long as a chat
that carries it."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mtlab.client import files
from mtlab.client.secret import (
    ChatReady,
    ChatRequested,
    Dropped,
    FileMessage,
    encrypt_file,
    file_key_fingerprint,
)
from mtproto.tl import api, secret
from services.common.rpc import RpcError
from services.media import release
from services.media.store import ENCRYPTED
from tests.helpers.media import KIB, MediaLab, media_and_messages
from tests.helpers.secret import Device, SecretLab

F, U = api.functions.messages, api.functions.upload
GRACE = 600.0
log = logging.getLogger("tests.secret_files")


class Lab(SecretLab):
    media: MediaLab  # always one here

    async def person(self, name: str) -> Device:
        """A new user named ``name``, signed in on a new device."""
        return await self.device(await self.messages.user(name))


def run(dsn: str, root: Path, body: Callable[[Lab], Awaitable[Any]], **media_config: Any) -> Any:
    async def go() -> Any:
        config = {"release_grace": GRACE, "release_recheck": GRACE, "orphan_grace": GRACE, **media_config}
        async with media_and_messages(dsn, root, **config) as (messages, media):
            return await body(Lab(messages, media))

    return asyncio.run(go())


async def open_chat(a: Device, b: Device) -> int:
    """a asks b's user for a chat, b accepts, both are ready (and have read the layer notices): the chat id."""
    chat = await a.engine.request(api.types.InputUser(user_id=b.user.id, access_hash=b.user.access_hash))
    assert [type(e) for e in await b.events()] == [ChatRequested]
    await b.engine.accept(chat.id)
    assert [type(e) for e in await a.events()][:1] == [ChatReady]
    await b.events()
    return chat.id


def padded(n: int) -> int:
    return n + (-n % 16)


async def refused(call: Awaitable[Any]) -> str:
    with pytest.raises(RpcError) as info:
        await call
    return info.value.message


async def read_raw(device: Device, file_id: int, access_hash: int) -> bytes:
    """The stored bytes, as upload.getFile hands them out (no decryption)."""
    out = io.BytesIO()
    await files.download(device.invoke, api.types.InputEncryptedFileLocation(id=file_id, access_hash=access_hash), out)
    return out.getvalue()


def document(key: bytes, iv: bytes, size: int, name: str = "") -> secret.types.DecryptedMessageMediaDocument:
    attributes: list[Any] = [api.types.DocumentAttributeFilename(file_name=name)] if name else []
    return secret.types.DecryptedMessageMediaDocument(thumb=b"", thumb_w=0, thumb_h=0, mime_type="text/plain",
                                                      size=size, key=key, iv=iv, attributes=attributes, caption="")


async def uploaded(device: Device, data: bytes) -> tuple[api.types.InputFile | api.types.InputFileBig, bytes, bytes]:
    """``data`` encrypted under a fresh key and iv and uploaded in parts: (the upload, key, iv)."""
    key, iv = os.urandom(32), os.urandom(32)
    ciphertext = io.BytesIO()
    encrypt_file(io.BytesIO(data), ciphertext, key, iv, os.urandom)
    return await files.upload(device.invoke, ciphertext.getvalue(), part_size=64 * KIB), key, iv


def test_a_file_reaches_the_other_device_as_ciphertext_only_its_two_participants_can_read(database: str,
                                                                                         tmp_path: Path) -> None:
    data = os.urandom(300 * KIB + 5)

    async def body(lab: Lab) -> None:
        a, b, c = await lab.person("Alice"), await lab.person("Bob"), await lab.person("Carol")
        chat = await open_chat(a, b)
        sent = await a.engine.send_file(chat, data, name="notes.txt", mime_type="text/plain", caption="read this")
        assert sent.file.size == padded(len(data)) and sent.file.dc_id == 2

        [got] = await b.events()
        assert isinstance(got, FileMessage)
        assert (got.name, got.mime_type, got.size, got.caption) == ("notes.txt", "text/plain", len(data), "read this")
        assert got.file == sent.file  # the encryptedFile next to the message, with the sender's key_fingerprint
        assert got.file.key_fingerprint == file_key_fingerprint(got.media.key, got.media.iv)
        out = io.BytesIO()
        assert await b.engine.download(got, out) == len(data)
        assert out.getvalue() == data

        # What the server holds is the ciphertext, as a file of its own kind: no name, no attributes, no sizes.
        row = await lab.media.pool.fetchrow("SELECT * FROM media_files WHERE id = $1", sent.file.id)
        assert (row["kind"], row["name"], row["attributes"], row["mime_type"]) == (ENCRYPTED, "", None,
                                                                                   "application/octet-stream")
        assert row["owner_id"] == a.user.id and row["key_fingerprint"] == sent.file.key_fingerprint
        [blob] = [p for p in lab.media.blob_files() if p.name == bytes(row["sha256"]).hex()]
        stored = blob.read_bytes()
        assert len(stored) == padded(len(data)) and data[:4096] not in stored and data[-4096:] not in stored
        assert await read_raw(b, sent.file.id, sent.file.access_hash) == stored  # getFile hands out just that
        assert await lab.media.pool.fetchval("SELECT count(*) FROM media_photo_sizes") == 0

        # Nobody else reads it, and a wrong access_hash or another kind of location is no better.
        location = api.types.InputEncryptedFileLocation(id=sent.file.id, access_hash=sent.file.access_hash)
        assert await refused(c.invoke(U.GetFile(location=location, offset=0, limit=4096))) == "FILE_ID_INVALID"
        wrong = api.types.InputEncryptedFileLocation(id=sent.file.id, access_hash=sent.file.access_hash ^ 1)
        assert await refused(b.invoke(U.GetFile(location=wrong, offset=0, limit=4096))) == "FILE_ID_INVALID"
        as_document = api.types.InputDocumentFileLocation(id=sent.file.id, access_hash=sent.file.access_hash,
                                                          file_reference=b"", thumb_size="")
        assert await refused(b.invoke(U.GetFile(location=as_document, offset=0, limit=4096))) == "FILE_ID_INVALID"
        # Carol cannot send it on either (inputEncryptedFile needs a file its sender may read).
        carols = await open_chat(c, await lab.person("Dave"))
        with pytest.raises(RpcError, match="FILE_ID_INVALID"):
            await c.engine.send_stored_file(carols, sent.file, got.media)

    run(database, tmp_path, body)


def test_upload_encrypted_file_then_send_it_and_send_it_on_to_another_chat(database: str, tmp_path: Path) -> None:
    data = os.urandom(70 * KIB)

    async def body(lab: Lab) -> None:
        a, b, c = await lab.person("Alice"), await lab.person("Bob"), await lab.person("Carol")
        chat = await open_chat(a, b)
        upload, key, iv = await uploaded(a, data)
        assert isinstance(upload, api.types.InputFile)
        file = await a.invoke(F.UploadEncryptedFile(peer=a.engine.chats[chat].input, file=(
            api.types.InputEncryptedFileUploaded(id=upload.id, parts=upload.parts, md5_checksum=upload.md5_checksum,
                                                 key_fingerprint=file_key_fingerprint(key, iv)))))
        assert isinstance(file, api.types.EncryptedFile) and file.size == padded(len(data))
        assert await b.events() == []  # stored for the chat, not sent

        await a.engine.send_stored_file(chat, file, document(key, iv, len(data), "later.bin"))
        [got] = await b.events()
        assert isinstance(got, FileMessage) and got.file.id == file.id and got.name == "later.bin"
        out = io.BytesIO()
        await b.engine.download(got, out)
        assert out.getvalue() == data

        # Bob sends the file he received on to Carol: the same stored file, nothing uploaded again.
        onward = await open_chat(b, c)
        await b.engine.send_stored_file(onward, got.file, got.media, caption="from Alice")
        [carols] = await c.events()
        assert isinstance(carols, FileMessage) and carols.file.id == file.id and carols.caption == "from Alice"
        out = io.BytesIO()
        await c.engine.download(carols, out)
        assert out.getvalue() == data
        assert await lab.media.pool.fetchval("SELECT count(*) FROM media_files") == 1

    run(database, tmp_path, body)


def test_what_the_server_refuses_and_a_fingerprint_that_does_not_match(database: str, tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        a, b = await lab.person("Alice"), await lab.person("Bob")
        chat = await open_chat(a, b)
        peer = a.engine.chats[chat].input

        async def upload_encrypted(file: Any) -> str:
            return await refused(a.invoke(F.UploadEncryptedFile(peer=peer, file=file)))

        assert await upload_encrypted(api.types.InputEncryptedFileEmpty()) == "FILE_EMTPY"  # sic: the spec's name
        assert await upload_encrypted(api.types.InputEncryptedFileUploaded(
            id=1, parts=0, md5_checksum="", key_fingerprint=1)) == "FILE_EMTPY"
        assert await upload_encrypted(api.types.InputEncryptedFileUploaded(
            id=2, parts=1, md5_checksum="", key_fingerprint=1)) == "FILE_PART_0_MISSING"
        upload, key, iv = await uploaded(a, os.urandom(1000))
        assert isinstance(upload, api.types.InputFile)
        assert await upload_encrypted(api.types.InputEncryptedFileUploaded(
            id=upload.id, parts=upload.parts, md5_checksum="0" * 32, key_fingerprint=1)) == "MD5_CHECKSUM_INVALID"
        not_blocks = await files.upload(a.invoke, os.urandom(1000 + 3))
        assert await upload_encrypted(api.types.InputEncryptedFileUploaded(
            id=not_blocks.id, parts=not_blocks.parts, md5_checksum="", key_fingerprint=1)) == "FILE_PARTS_INVALID"
        assert await upload_encrypted(api.types.InputEncryptedFile(id=12345, access_hash=1)) == "FILE_ID_INVALID"
        # sendEncryptedFile checks the chat and the message before the file; an empty file is refused too.
        fingerprint = a.engine.chats[chat].fingerprint
        assert fingerprint is not None
        envelope = fingerprint.to_bytes(8, "little", signed=True) + bytes(32)
        assert await refused(a.invoke(F.SendEncryptedFile(peer=peer, random_id=7, data=b"short", file=(
            api.types.InputEncryptedFileEmpty())))) == "DATA_INVALID"
        assert await refused(a.invoke(F.SendEncryptedFile(peer=peer, random_id=7, data=envelope, file=(
            api.types.InputEncryptedFileEmpty())))) == "FILE_EMTPY"
        assert await b.events() == []

        # A fingerprint that is not the key's: the server cannot know (it has no key); the recipient drops it.
        file = await a.invoke(F.UploadEncryptedFile(peer=peer, file=api.types.InputEncryptedFileUploaded(
            id=upload.id, parts=upload.parts, md5_checksum=upload.md5_checksum,
            key_fingerprint=file_key_fingerprint(key, iv) ^ 0x5A5A)))
        await a.engine.send_stored_file(chat, file, document(key, iv, 1000))
        [dropped] = await b.events()
        assert isinstance(dropped, Dropped) and "fingerprint" in dropped.reason

        # An upload stored as a secret chat's file is not a document to show in a cloud chat.
        with pytest.raises(RpcError, match="MEDIA_INVALID"):
            await lab.messages.call(a.user, F.SendMedia(
                peer=lab.messages.peer(b.user), message="", random_id=9, media=api.types.InputMediaUploadedDocument(
                    file=upload, mime_type="text/plain", attributes=[])))

        await a.engine.close(chat)
        assert await upload_encrypted(api.types.InputEncryptedFile(id=file.id, access_hash=file.access_hash)) == \
            "ENCRYPTION_DECLINED"

    run(database, tmp_path, body)


def test_encrypted_files_count_in_the_uploaders_quota(database: str, tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        a, b = await lab.person("Alice"), await lab.person("Bob")
        chat = await open_chat(a, b)
        await a.engine.send_file(chat, os.urandom(40 * KIB))
        with pytest.raises(RpcError, match="MEDIA_QUOTA_EXCEEDED"):
            await a.engine.send_file(chat, os.urandom(40 * KIB))

    run(database, tmp_path, body, quota_bytes=64 * KIB)


def test_a_live_chats_files_are_kept_and_released_once_every_chat_carrying_them_is_discarded(database: str,
                                                                                           tmp_path: Path) -> None:
    """The lifetime rule: the release asks files.inUse, which answers "carried" for a file a live secret chat
    carries (sent in it, or stored for it with uploadEncryptedFile); discarding the last such chat lets it go."""
    data = os.urandom(20 * KIB)

    async def later(lab: Lab) -> int:
        lab.media.clock.now += GRACE + 1
        return await release.once(lab.media.deps)

    async def body(lab: Lab) -> None:
        a, b, c = await lab.person("Alice"), await lab.person("Bob"), await lab.person("Carol")
        chat = await open_chat(a, b)
        sent = await a.engine.send_file(chat, data)
        [got] = await b.events()
        upload, key, iv = await uploaded(a, b"kept for later")
        stored = await a.invoke(F.UploadEncryptedFile(peer=a.engine.chats[chat].input, file=(
            api.types.InputEncryptedFileUploaded(id=upload.id, parts=upload.parts, md5_checksum="",
                                                 key_fingerprint=file_key_fingerprint(key, iv)))))
        assert await later(lab) == 0 and await later(lab) == 0  # asked about, and again: both carried
        out = io.BytesIO()
        await b.engine.download(got, out)
        assert out.getvalue() == data

        onward = await open_chat(b, c)
        await b.engine.send_stored_file(onward, got.file, got.media)
        await a.engine.close(chat)  # Alice's copy, then (through the outbox) Bob's: discarded
        assert await later(lab) == 1  # the stored one; the sent one is still in Bob and Carol's chat
        assert await refused(read_raw(a, stored.id, stored.access_hash)) == "FILE_ID_INVALID"
        [carols] = await c.events()
        out = io.BytesIO()
        await c.engine.download(carols, out)
        assert out.getvalue() == data

        await c.engine.close(onward)
        assert await later(lab) == 1
        assert await refused(read_raw(c, sent.file.id, sent.file.access_hash)) == "FILE_ID_INVALID"
        assert await lab.media.pool.fetchval("SELECT count(*) FROM media_files") == 0
        assert await lab.messages.shard_rows("SELECT * FROM secret_files") == []  # both chats' rows went

    run(database, tmp_path, body)
