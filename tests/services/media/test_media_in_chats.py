"""Media in basic groups and channels, and forwarded media, with the message service and the media service on real
Postgres, each calling the other as over internal RPC (tests/helpers/media.py: media_and_messages): who may download
a file is exactly who can see a message carrying it."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.runtime import Reader
from services.common.rpc import RpcError
from tests.helpers.media import KIB, MediaLab, input_file, media_and_messages
from tests.helpers.messages import MessageLab, User

F, CH = api.functions.messages, api.functions.channels


def run(dsn: str, root: Path, body: Callable[[MessageLab, MediaLab], Awaitable[Any]], **config: Any) -> Any:
    async def go() -> Any:
        async with media_and_messages(dsn, root, **config) as (messages, media):
            return await body(messages, media)

    return asyncio.run(go())


def png(w: int, h: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)).save(out, "PNG")
    return out.getvalue()


async def uploaded(media: MediaLab, user: User, data: bytes, *, photo: bool = False) -> api.types.TypeInputMedia:
    """``data`` uploaded in parts by ``user``: the InputMedia a sendMedia names it with."""
    file_id = secrets.randbits(63)
    await media.send_parts(user.id, file_id, data, 64 * KIB, concurrency=4)
    f = input_file(file_id, data, 64 * KIB)
    if photo:
        return api.types.InputMediaUploadedPhoto(file=f)
    return api.types.InputMediaUploadedDocument(file=f, mime_type="application/pdf", attributes=[])


async def refused(call: Awaitable[Any]) -> str:
    with pytest.raises(RpcError) as info:
        await call
    return info.value.message


async def history(messages: MessageLab, user: User, peer: Any) -> list[Any]:
    page = await messages.call(user, F.GetHistory(peer=peer, offset_id=0, offset_date=0, add_offset=0, limit=50,
                                                  max_id=0, min_id=0, hash=0))
    return list(page.messages)


def input_user(u: User) -> api.types.InputUser:
    return api.types.InputUser(user_id=u.id, access_hash=u.access_hash)


def input_channel(peer: api.types.InputPeerChannel) -> api.types.InputChannel:
    return api.types.InputChannel(channel_id=peer.channel_id, access_hash=peer.access_hash)


def logged(rows: list[Any]) -> list[Any]:
    """Update-log bodies (what getDifference hands out and the pusher pushes), decoded."""
    return [Reader(bytes(r["body"])).read_object() for r in rows]


def test_a_group_message_with_media_is_readable_by_its_members_only(database: str, tmp_path: Path) -> None:
    data = os.urandom(200 * KIB + 5)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice, bob, carol, dave = [await messages.user(n) for n in ("Alice", "Bob", "Carol", "Dave")]
        made = await messages.call(alice, F.CreateChat(users=[input_user(bob), input_user(carol)], title="Docs"))
        peer = api.types.InputPeerChat(chat_id=made.updates.chats[0].id)
        sent = await messages.call(alice, F.SendMedia(peer=peer, media=await uploaded(media, alice, data),
                                                      message="the spec", random_id=7))
        [new] = [u for u in sent.updates if isinstance(u, api.types.UpdateNewMessage)]
        document = new.message.media.document
        assert new.message.message == "the spec" and document.size == len(data)

        for member in (alice, bob, carol):
            [shown, _created] = await history(messages, member, peer)
            assert shown.media.document.id == document.id and shown.message == "the spec"
            assert await media.download(member.id, shown.media) == data
        assert await refused(media.download(dave.id, new.message.media)) == "FILE_ID_INVALID"

        # The members' update logs carry it as they carry text: getDifference and the pushes read these rows.
        bobs = logged(await messages.shard_rows(
            "SELECT body FROM update_log WHERE owner_id = $1 AND kind = 'updateNewMessage' ORDER BY pts", bob.id))
        assert bobs[-1].message.media.document.id == document.id
        # The group's own row carries it too, and the shard's generated file_id column names the file.
        [row] = await messages.shard_rows("SELECT file_id FROM chat_messages WHERE chat_id = $1 AND media IS NOT NULL",
                                          peer.chat_id)
        assert row["file_id"] == document.id
        copies = await messages.shard_rows("SELECT DISTINCT file_id FROM messages WHERE peer_type = 2 AND "
                                           "media IS NOT NULL")
        assert {r["file_id"] for r in copies} == {document.id}

        # A resend (same random_id) is the same message; nothing new is stored.
        again = await messages.call(alice, F.SendMedia(peer=peer, media=await uploaded(media, alice, data),
                                                       message="the spec", random_id=7))
        assert [u.id for u in again.updates if isinstance(u, api.types.UpdateMessageID)] == [new.message.id]
        # Outsiders cannot post into the group.
        assert await refused(messages.call(dave, F.SendMedia(peer=peer, media=await uploaded(media, dave, b"x"),
                                                             message="", random_id=1))) == "CHAT_ID_INVALID"

    run(database, tmp_path, body)


def test_a_member_added_while_the_file_was_attached_can_read_it(database: str, tmp_path: Path) -> None:
    """The readers are named before the message is written; when the members change in between, the newcomers are
    named too before anything is delivered (without that, Dave would hold a message whose file he cannot read)."""
    data = os.urandom(70 * KIB)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice, bob, dave = [await messages.user(n) for n in ("Alice", "Bob", "Dave")]
        made = await messages.call(alice, F.CreateChat(users=[input_user(bob)], title="Race"))
        peer = api.types.InputPeerChat(chat_id=made.updates.chats[0].id)
        upload = await uploaded(media, alice, data)

        async def dave_joins() -> None:
            await messages.call(alice, F.AddChatUser(chat_id=peer.chat_id, user_id=input_user(dave), fwd_limit=0))

        assert media.to_media is not None
        media.to_media.after[media_fn.Attach.CONSTRUCTOR_ID] = dave_joins  # right after the first attach
        await messages.call(alice, F.SendMedia(peer=peer, media=upload, message="", random_id=1))
        [*_, shown] = [m for m in await history(messages, dave, peer) if getattr(m, "media", None)]
        assert await media.download(dave.id, shown.media) == data

    run(database, tmp_path, body)


def test_a_channel_post_with_media_is_readable_by_members_now_and_later(database: str, tmp_path: Path) -> None:
    picture = png(400, 300)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        owner, bob, carol = [await messages.user(n) for n in ("Owner", "Bob", "Carol")]
        peer = messages.channel(await messages.call(owner, CH.CreateChannel(broadcast=True, title="Pics", about="")))
        await messages.call(bob, CH.JoinChannel(channel=input_channel(peer)))
        sent = await messages.call(owner, F.SendMedia(peer=peer, media=await uploaded(media, owner, picture,
                                                                                      photo=True),
                                                      message="a picture", random_id=1))
        [new] = [u for u in sent.updates if isinstance(u, api.types.UpdateNewChannelMessage)]
        photo = new.message.media
        assert isinstance(photo, api.types.MessageMediaPhoto) and new.message.post

        [post, _created] = await history(messages, bob, peer)
        assert post.media.photo.id == photo.photo.id and post.message == "a picture"
        assert await media.download(bob.id, post.media) == picture
        # The channel's log (getDifference for channels, the pushes) carries the post with its photo.
        [entry] = logged(await messages.shard_rows("SELECT body FROM channel_update_log WHERE channel_id = $1 AND "
                                                   "kind = 'updateNewChannelMessage' AND pts > 1", peer.channel_id))
        assert entry.message.media.photo.id == photo.photo.id
        # One row names the channel as the reader; no row per subscriber.
        assert await media.pool.fetchval("SELECT count(*) FROM media_readers WHERE file_id = $1", photo.photo.id) == 0
        assert await media.pool.fetchval("SELECT channel_id FROM media_channel_readers WHERE file_id = $1",
                                         photo.photo.id) == peer.channel_id

        # Carol is no member: the same answer as for a file that does not exist. Once she joins, she reads it.
        assert await refused(media.download(carol.id, photo)) == "FILE_ID_INVALID"
        await messages.call(carol, CH.JoinChannel(channel=input_channel(peer)))
        assert await media.download(carol.id, photo) == picture
        # Bob leaves: once the membership answer he had is stale, he reads it no more.
        await messages.call(bob, CH.LeaveChannel(channel=input_channel(peer)))
        media.clock.now += media.config.member_ttl + 1
        assert await refused(media.download(bob.id, photo)) == "FILE_ID_INVALID"

        # A subscriber of a broadcast channel cannot post, and his file does not become the channel's.
        upload = await uploaded(media, carol, b"not a post")
        assert await refused(messages.call(carol, F.SendMedia(peer=peer, media=upload, message="",
                                                              random_id=2))) == "CHAT_WRITE_FORBIDDEN"
        assert await media.pool.fetchval("SELECT count(*) FROM media_channel_readers") == 1

    run(database, tmp_path, body)


def test_a_supergroup_member_posts_media_every_member_reads_it(database: str, tmp_path: Path) -> None:
    data = os.urandom(3 * KIB)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        owner, bob = await messages.user("Owner"), await messages.user("Bob")
        peer = messages.channel(await messages.call(owner, CH.CreateChannel(megagroup=True, title="Talk", about="")))
        await messages.call(bob, CH.JoinChannel(channel=input_channel(peer)))
        sent = await messages.call(bob, F.SendMedia(peer=peer, media=await uploaded(media, bob, data), message="",
                                                    random_id=1))
        [new] = [u for u in sent.updates if isinstance(u, api.types.UpdateNewChannelMessage)]
        assert new.message.from_id == api.types.PeerUser(user_id=bob.id)
        assert await media.download(owner.id, new.message.media) == data

    run(database, tmp_path, body)


def test_forwarding_media_names_the_new_recipient_as_a_reader(database: str, tmp_path: Path) -> None:
    data, picture = os.urandom(90 * KIB), png(200, 120)

    async def body(messages: MessageLab, media: MediaLab) -> None:
        alice, bob, carol, dave = [await messages.user(n) for n in ("Alice", "Bob", "Carol", "Dave")]
        await messages.call(alice, F.SendMedia(peer=messages.peer(bob), media=await uploaded(media, alice, data),
                                               message="for Bob", random_id=1))
        [got] = await history(messages, bob, messages.peer(alice))
        assert await refused(media.download(carol.id, got.media)) == "FILE_ID_INVALID"

        fwd = await messages.call(bob, F.ForwardMessages(from_peer=messages.peer(alice), id=[got.id],
                                                         random_id=[11], to_peer=messages.peer(carol)))
        [new] = [u for u in fwd.updates if isinstance(u, api.types.UpdateNewMessage)]
        assert new.message.fwd_from.from_id == api.types.PeerUser(user_id=alice.id)
        [carols] = await history(messages, carol, messages.peer(bob))
        assert await media.download(carol.id, carols.media) == data  # FILE_ID_INVALID before this change
        assert await refused(media.download(dave.id, carols.media)) == "FILE_ID_INVALID"

        # From a group: a member forwards the group's photo to someone outside it.
        made = await messages.call(alice, F.CreateChat(users=[input_user(bob)], title="Pics"))
        group = api.types.InputPeerChat(chat_id=made.updates.chats[0].id)
        await messages.call(alice, F.SendMedia(peer=group, media=await uploaded(media, alice, picture, photo=True),
                                               message="", random_id=2))
        [in_group, *_] = await history(messages, bob, group)
        await messages.call(bob, F.ForwardMessages(from_peer=group, id=[in_group.id], random_id=[12],
                                                   to_peer=messages.peer(dave)))
        [daves] = await history(messages, dave, messages.peer(bob))
        assert await media.download(dave.id, daves.media) == picture

    run(database, tmp_path, body)
