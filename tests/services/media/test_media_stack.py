"""Files end to end on a whole stack (`mtlab up --detach`: gateway, auth, messages, updates, media, Postgres, Redis):
the SDK uploads through the gateway and sends a photo and a big document in a private chat, the recipient downloads
them intact, a stranger cannot; stock Telethon sends a photo and a document and downloads them back byte-identical;
in a secret chat, the SDK sends a small and a big file encrypted end to end, the other device decrypts them
byte-identical, the media service holds only their ciphertext, and nobody else can read it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from telethon import TelegramClient
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import MemorySession

from mtlab.client import Client, ClientConfig, RpcError, account, files
from mtlab.client.secret import ChatReady, ChatRequested, Event, FileMessage, SecretChats
from mtproto.tl import api
from tests.helpers.auth import fresh_test_number
from tests.helpers.client import public_pem
from tests.helpers.stack import Stack, running_stack

F = api.functions.messages


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


def peer(user: api.types.User) -> api.types.InputPeerUser:
    assert user.access_hash is not None
    return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash)


def png(w: int, h: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)).save(out, "PNG")  # noise: thumbnails are smaller
    return out.getvalue()


async def fetch(client: Client, media: Any) -> bytes:
    out = io.BytesIO()
    await files.download(client.invoke, files.location(media), out)
    return out.getvalue()


def test_sdk_sends_a_photo_and_a_big_document_through_the_gateway(stack: Stack) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    numbers = [fresh_test_number() for _ in range(3)]
    picture, big = png(900, 600), os.urandom(10 * 1024 * 1024 + 1)

    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(config) as a, Client(config) as b, Client(config) as c:
                alice = await account.sign_in_or_up(a.invoke, *numbers[0], first_name="Alice")
                bob = await account.sign_in_or_up(b.invoke, *numbers[1], first_name="Bob")
                await account.sign_in_or_up(c.invoke, *numbers[2], first_name="Carol")
                photo_file = await files.upload(a.invoke, picture, name="blue.png")
                await a.invoke(F.SendMedia(peer=peer(bob), media=api.types.InputMediaUploadedPhoto(file=photo_file),
                                           message="a photo", random_id=1))
                big_file = await files.upload(a.invoke, big, name="big.bin")
                assert isinstance(big_file, api.types.InputFileBig)  # over 10 MB: saveBigFilePart
                await a.invoke(F.SendMedia(peer=peer(bob), media=api.types.InputMediaUploadedDocument(
                    file=big_file, mime_type="application/octet-stream", attributes=[]), message="", random_id=2))
                page = await b.invoke(F.GetHistory(peer=peer(alice), offset_id=0, offset_date=0, add_offset=0,
                                                   limit=10, max_id=0, min_id=0, hash=0))
                doc_msg, photo_msg = page.messages
                assert photo_msg.message == "a photo"
                assert isinstance(photo_msg.media, api.types.MessageMediaPhoto)
                assert [s.type for s in photo_msg.media.photo.sizes] == ["s", "m", "y"]  # 900 px: the 1280 box
                assert await fetch(b, photo_msg.media) == picture
                assert await fetch(b, doc_msg.media) == big
                with pytest.raises(RpcError) as info:
                    await fetch(c, photo_msg.media)
                assert info.value.message == "FILE_ID_INVALID"

    anyio.run(main)


def test_telethon_sends_and_downloads_a_photo_and_a_document(stack: Stack, tmp_path: Path) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    (alice_phone, alice_code), (bob_phone, bob_code) = fresh_test_number(), fresh_test_number()

    async def accounts() -> api.types.User:
        async with Client(config) as a, Client(config) as b:
            alice = await account.sign_in_or_up(a.invoke, alice_phone, alice_code, first_name="Alice")
            # Telethon cannot sign up: the SDK makes Bob's account
            bob = await account.sign_in_or_up(b.invoke, bob_phone, bob_code, first_name="Bob")
            # a first message, so Bob's dialogs show Alice (and Telethon learns her access_hash)
            await a.invoke(F.SendMessage(peer=peer(bob), message="send me files", random_id=1))
            return alice

    alice = anyio.run(accounts)
    telethon_rsa.add_key(public_pem(stack), old=False)
    picture = tmp_path / "red.png"
    picture.write_bytes(png(400, 300))
    document = tmp_path / "notes.bin"
    document.write_bytes(os.urandom(3 * 1024 * 1024 + 123))

    async def telethon_side() -> tuple[bytes, bytes, Any]:
        session = MemorySession()
        session.set_dc(2, "127.0.0.1", stack.port)
        client = TelegramClient(session, 1, "lab", receive_updates=False, connection_retries=1, request_retries=1)
        await asyncio.wait_for(client.connect(), 30)
        try:
            await client.send_code_request(bob_phone)
            await client.sign_in(bob_phone, bob_code)
            await client.get_dialogs()
            sent_photo = await client.send_file(alice.id, str(picture), caption="from Telethon")
            sent_doc = await client.send_file(alice.id, str(document), force_document=True)
            got_photo = await client.download_media(sent_photo, file=bytes)
            got_doc = await client.download_media(sent_doc, file=bytes)
            return got_photo, got_doc, sent_photo.media
        finally:
            await client.disconnect()

    got_photo, got_doc, media = asyncio.run(telethon_side())
    assert type(media).__name__ == "MessageMediaPhoto"
    assert got_photo == picture.read_bytes()
    assert got_doc == document.read_bytes()


async def events_until(engine: SecretChats, kind: type, count: int = 1) -> list[Event]:
    """What arrives for this device (updates.getDifference with its qts) until ``count`` events of ``kind`` came."""
    seen: list[Event] = []
    while sum(isinstance(e, kind) for e in seen) < count:
        seen += await engine.catch_up()
        await anyio.sleep(0.1)
    return [e for e in seen if isinstance(e, kind)]


def test_sdk_sends_files_in_a_secret_chat_through_the_gateway(stack: Stack) -> None:
    config = ClientConfig(server_keys=public_pem(stack), port=stack.port, ping_interval=None)
    numbers = [fresh_test_number() for _ in range(3)]
    small, big = os.urandom(200 * 1024 + 7), os.urandom(10 * 1024 * 1024 + 1)

    async def raw(client: Client, file: api.types.EncryptedFile, access_hash: int | None = None) -> bytes:
        out = io.BytesIO()
        where = api.types.InputEncryptedFileLocation(id=file.id, access_hash=file.access_hash if access_hash is None
                                                     else access_hash)
        await files.download(client.invoke, where, out)
        return out.getvalue()

    async def main() -> None:
        with anyio.fail_after(180):
            async with Client(config) as a, Client(config) as b, Client(config) as c:
                await account.sign_in_or_up(a.invoke, *numbers[0], first_name="Alice")
                bob = await account.sign_in_or_up(b.invoke, *numbers[1], first_name="Bob")
                await account.sign_in_or_up(c.invoke, *numbers[2], first_name="Carol")
                alices, bobs = SecretChats(a), SecretChats(b)
                assert bob.access_hash is not None
                chat = await alices.request(api.types.InputUser(user_id=bob.id, access_hash=bob.access_hash))
                await events_until(bobs, ChatRequested)
                await bobs.accept(chat.id)
                await events_until(alices, ChatReady)

                sent_small = await alices.send_file(chat.id, small, name="small.bin")
                sent_big = await alices.send_file(chat.id, big, name="big.bin", caption="the big one")
                assert sent_big.file.size == len(big) + 15 > files.BIG  # padded to blocks: saveBigFilePart
                got = await events_until(bobs, FileMessage, 2)
                assert [(g.name, g.size, g.file) for g in got if isinstance(g, FileMessage)] == [
                    ("small.bin", len(small), sent_small.file), ("big.bin", len(big), sent_big.file)]
                for message, data in zip(got, (small, big), strict=True):
                    assert isinstance(message, FileMessage)
                    out = io.BytesIO()
                    assert await bobs.download(message, out) == len(data)
                    assert out.getvalue() == data

                # The media service stores the ciphertext: what getFile hands out is the blob on its disk.
                stored = await raw(b, sent_small.file)
                assert len(stored) == sent_small.file.size and small[:4096] not in stored
                [blob] = list((stack.data_dir / "media").rglob(hashlib.sha256(stored).hexdigest()))
                assert blob.read_bytes() == stored
                for who, access_hash in ((c, None), (b, sent_small.file.access_hash ^ 1)):
                    with pytest.raises(RpcError) as info:
                        await raw(who, sent_small.file, access_hash)
                    assert info.value.message == "FILE_ID_INVALID"

    anyio.run(main)


def test_bench_media_measures_each_phase_of_real_transfers(stack: Stack, tmp_path: Path) -> None:
    """`mtlab bench media`'s measuring loop on this stack: two round trips of a small file, each a new content,
    each downloaded identical; every phase timed and the CPU of the client, the gateway and the media service read
    for it (figures never asserted, only that they are there and make sense)."""
    import json

    from mtlab.bench import media as bench

    state = json.loads((stack.data_dir / "supervisor.json").read_text())
    pids = {row["name"]: row["pid"] for row in state["services"] if row["name"] in ("gateway", "media")}
    source, target = tmp_path / "source.bin", tmp_path / "copy.bin"
    runs = anyio.run(bench._transfers, stack.port, public_pem(stack), source, target, 3 * 1024 * 1024 + 5, pids, 2)
    assert len(runs) == 2 and all(r.identical for r in runs)
    for r in runs:
        assert set(r.seconds) == set(bench.PHASES) and all(s > 0 for s in r.seconds.values())
        assert all(set(r.cpu[phase]) == set(bench.PROCESSES) for phase in bench.PHASES)
        assert all(v >= 0 for phase in bench.PHASES for v in r.cpu[phase].values())
    # The gateway decrypted and encrypted 12 MiB in all: tens of milliseconds, some clock ticks at least.
    assert sum(r.cpu[phase]["gateway"] for r in runs for phase in bench.PHASES) > 0
