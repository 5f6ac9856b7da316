"""Releasing files no message carries any more (services/media/release.py), with the message service and the media
service on real Postgres calling each other as over internal RPC: a file goes once its last message is deleted,
never while any message, any delivery still waiting in an outbox, or a send in progress could still show it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.runtime import Reader
from services.common.rpc import RpcError
from services.media import release, sweep
from services.media.fsck import fsck
from services.messages import outbox
from tests.helpers.media import KIB, MediaLab, input_file, media_and_messages
from tests.helpers.messages import MessageLab, User

F, CH = api.functions.messages, api.functions.channels
GRACE = 600.0


def run(dsn: str, root: Path, body: Callable[[MessageLab, MediaLab], Awaitable[Any]],
        messages_config: dict[str, Any] | None = None) -> Any:
    async def go() -> Any:
        async with media_and_messages(dsn, root, messages_config, release_grace=GRACE, release_recheck=GRACE,
                                      orphan_grace=GRACE) as (messages, media):
            return await body(messages, media)

    return asyncio.run(go())


async def uploaded(media: MediaLab, user: User, data: bytes) -> api.types.InputMediaUploadedDocument:
    file_id = secrets.randbits(63)
    await media.send_parts(user.id, file_id, data, 64 * KIB)
    return api.types.InputMediaUploadedDocument(file=input_file(file_id, data, 64 * KIB), mime_type="text/plain",
                                                attributes=[])


async def history(messages: MessageLab, user: User, peer: Any) -> list[Any]:
    page = await messages.call(user, F.GetHistory(peer=peer, offset_id=0, offset_date=0, add_offset=0, limit=50,
                                                  max_id=0, min_id=0, hash=0))
    return list(page.messages)


async def attach_held(media: MediaLab, user: User, what: api.types.TypeInputMedia) -> Any:
    """media.attach as sendMedia calls it (for a message), with no message written after it."""
    answer = await media.call(user.id, media_fn.Attach(media=what.to_bytes(), readers=[], held=True))
    return Reader(answer.media).read_object()


async def later(media: MediaLab) -> int:
    """Time passes beyond every grace; one round of the release: files released."""
    media.clock.now += GRACE + 1
    return await release.once(media.deps)


async def refused(call: Awaitable[Any]) -> str:
    with pytest.raises(RpcError) as info:
        await call
    return info.value.message


def test_a_file_is_released_when_its_last_message_is_deleted_and_its_blob_swept(database: str,
                                                                               tmp_path: Path) -> None:
    data = os.urandom(100 * KIB)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice, bob = await messages.user("Alice"), await messages.user("Bob")
        sent = await messages.call(alice, F.SendMedia(peer=messages.peer(bob), media=await uploaded(media, alice, data),
                                                      message="", random_id=1))
        [new] = [u for u in sent.updates if isinstance(u, api.types.UpdateNewMessage)]
        doc = new.message.media
        assert await later(media) == 0  # both copies carry it

        await messages.call(alice, F.DeleteMessages(id=[new.message.id]))  # for Alice only: Bob's copy carries it
        assert await later(media) == 0
        assert await media.download(bob.id, doc) == data

        [bobs] = await history(messages, bob, messages.peer(alice))
        await messages.call(bob, F.DeleteMessages(id=[bobs.id]))
        assert await later(media) == 1
        assert await media.pool.fetchval("SELECT count(*) FROM media_files") == 0
        assert await media.pool.fetchval("SELECT count(*) FROM media_blobs") == 0
        assert await refused(media.download(alice.id, doc)) == "FILE_ID_INVALID"
        # The blob's bytes go at the sweeper's orphan step, once older than its grace.
        [blob] = media.blob_files()
        assert blob.name == hashlib.sha256(data).hexdigest()
        os.utime(blob, (media.clock.now - GRACE - 1, media.clock.now - GRACE - 1))
        assert await sweep.once(media.deps) == (0, 1)
        assert media.blob_files() == []
        report = await fsck(media.pool, media.blobs)
        assert report.problems == [] and report.orphans == []

    run(database, tmp_path, body)


def test_a_channel_post_and_a_group_message_release_their_files_when_deleted_for_everyone(database: str,
                                                                                         tmp_path: Path) -> None:
    async def body(messages: MessageLab, media: MediaLab) -> None:
        owner, bob = await messages.user("Owner"), await messages.user("Bob")
        channel = messages.channel(await messages.call(owner, CH.CreateChannel(broadcast=True, title="N", about="")))
        posted = await messages.call(owner, F.SendMedia(peer=channel, media=await uploaded(media, owner, b"post"),
                                                        message="", random_id=1))
        [post] = [u for u in posted.updates if isinstance(u, api.types.UpdateNewChannelMessage)]
        made = await messages.call(owner, F.CreateChat(users=[api.types.InputUser(
            user_id=bob.id, access_hash=bob.access_hash)], title="G"))
        group = api.types.InputPeerChat(chat_id=made.updates.chats[0].id)
        said = await messages.call(owner, F.SendMedia(peer=group, media=await uploaded(media, owner, b"group"),
                                                      message="", random_id=2))
        [in_group] = [u for u in said.updates if isinstance(u, api.types.UpdateNewMessage)]
        assert await later(media) == 0

        await messages.call(owner, CH.DeleteMessages(channel=api.types.InputChannel(
            channel_id=channel.channel_id, access_hash=channel.access_hash), id=[post.message.id]))
        assert await later(media) == 1
        assert await refused(media.download(owner.id, post.message.media)) == "FILE_ID_INVALID"

        await messages.call(owner, F.DeleteMessages(id=[in_group.message.id], revoke=True))  # every member's copy
        assert await later(media) == 1
        assert await media.pool.fetchval("SELECT count(*) FROM media_files") == 0

    run(database, tmp_path, body)


def test_a_delivery_waiting_in_the_outbox_keeps_its_file(database: str, tmp_path: Path) -> None:
    """Alice's copy is deleted while Bob's is still an outbox row (his shard is slow): the file must stay, or Bob
    would get a message whose file is gone."""
    data = os.urandom(10 * KIB)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice, bob = await messages.user("Alice"), await messages.user("Bob")
        sent = await messages.call(alice, F.SendMedia(peer=messages.peer(bob), media=await uploaded(media, alice, data),
                                                      message="", random_id=1))
        [new] = [u for u in sent.updates if isinstance(u, api.types.UpdateNewMessage)]
        await messages.call(alice, F.DeleteMessages(id=[new.message.id]))
        assert await history(messages, bob, messages.peer(alice)) == []  # not delivered yet
        assert await later(media) == 0

        await outbox.sweep(messages.deps, older_than=0, batch=100)  # now it is
        [bobs] = await history(messages, bob, messages.peer(alice))
        assert await media.download(bob.id, bobs.media) == data

    run(database, tmp_path, body, messages_config={"deliver_inline": False})


def test_what_is_never_released(database: str, tmp_path: Path) -> None:
    """A file stored with messages.uploadMedia (no message yet) stays; a file a message named less than the grace
    ago stays (its message may be being written); an attach whose message never came is released after it."""

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice, bob = await messages.user("Alice"), await messages.user("Bob")
        kept = await messages.call(alice, F.UploadMedia(peer=messages.peer(bob),
                                                        media=await uploaded(media, alice, b"for later")))
        abandoned = await attach_held(media, alice, await uploaded(media, alice, b"a send that died"))
        assert await release.once(media.deps) == 0  # within the grace: its message may be being written
        media.clock.now += GRACE / 2
        again = api.types.InputMediaDocument(id=api.types.InputDocument(
            id=abandoned.document.id, access_hash=abandoned.document.access_hash,
            file_reference=abandoned.document.file_reference))
        await attach_held(media, alice, again)  # named by a message again: the grace starts over
        media.clock.now += GRACE / 2 + 1
        assert await release.once(media.deps) == 0
        assert await later(media) == 1
        assert [r["id"] for r in await media.pool.fetch("SELECT id FROM media_files")] == [kept.document.id]

    run(database, tmp_path, body)


def test_nothing_is_released_when_a_shard_moved_during_the_search(database: str, tmp_path: Path) -> None:
    """A shard that moves while the message service searches could hide a message from it (searched on its new
    database before the copy, on the old one after the clean-up): such an answer proves nothing."""

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice = await messages.user("Alice")
        await attach_held(media, alice, await uploaded(media, alice, b"no message carries me"))
        media.clock.now += GRACE + 1
        shards, real_pool = messages.deps.shards, messages.deps.shards.pool

        async def pool_while_a_shard_moves(physical: Any) -> Any:
            await messages.main.execute("UPDATE shard_map SET version = version + 1 WHERE logical = 0")
            return await real_pool(physical)

        shards.pool = pool_while_a_shard_moves  # type: ignore[method-assign]
        assert await release.once(media.deps) == 0
        shards.pool = real_pool  # type: ignore[method-assign]
        assert await release.once(media.deps) == 1

    run(database, tmp_path, body)
