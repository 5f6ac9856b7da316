"""Messages that carry a photo or a document: messages.sendMedia, messages.uploadMedia, forwarding them, and what
the media service asks back (files.memberOf, files.inUse).

The message service never touches file bytes. It hands the client's InputMedia to the media service over internal
RPC (``media.attach``, mtproto/tl/schema/internal.tl) with who will see the message; the media service assembles an
uploaded file (or checks a stored one the caller may send on), records them as its readers, and answers the
MessageMedia. That answer is stored with the message as TL bytes (the ``media`` column) and travels exactly like
text: in a private chat the recipient's copy comes through the outbox, in a basic group every member's copy does
(groups.py), a channel post is one row and one channel-log entry (channels.py); history, getDifference and the
pushes render it from there (``render.media``).

Who the readers are:

- a private chat: the other user;
- a basic group: its members when the message is written (a member's copy is delivered to exactly those; one
  who joins later never gets the message). If the members changed between the attach and the message's
  transaction, the newcomers are added as readers and the send tried again, so nobody ever holds a copy of a
  message whose file they may not read;
- a channel or supergroup: the channel itself (``channel_id``), not one row per subscriber: its members now and
  later may read the file, and the media service asks this service whether a user is a member
  (``files.memberOf``) when someone not named otherwise downloads it;
- a forward: the new recipient, named the same way before the forwarded copy is written (the edit to
  handlers.forward_messages is its ``share`` hook).

Why an RPC and not a shared store module: the blobs and staged parts are on the media service's disk (or object
store), which the message service cannot and should not reach; the media service stays the only writer of the
media tables; and one call per message is nothing next to the upload it completes.

The order makes a crash harmless: the file is stored (and readable by the recipients) before the message is
written; if the message service dies in between, a resend of the same request (same random_id) attaches the same
upload again, which the media service answers with the same file, and the send itself is deduplicated by random_id.

Freeing: the media service releases a file once no message carries it any more. It asks ``files.inUse``, which
searches every shard's ``file_id`` columns (generated from the media column, shard migration 005), the files live
secret chats carry (``secret_files``, shard migration 006: encrypted messages are not rows of the message tables,
so secret.py records each file a chat carried, and forgets it when the chat is discarded) and the deliveries still
waiting in the outboxes; the answer counts only when no shard moved during the search.

Secret-chat files (messages.sendEncryptedFile, uploadEncryptedFile) are secret.py's; they need the media service
too, so their methods take the same MediaLink and are served from this module's table (``secret.FILE_METHODS``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.functions import files as files_fn
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.internal.types import files as files_types
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLFunction
from services.common import users
from services.common.rpc import Caller, RpcError, signed_in
from services.common.service import Result
from services.messages import channels, groups, handlers, outbox, render, secret
from services.messages.handlers import Draft, Messages
from services.messages.store import USER, MessageRow

#: Times a group send is tried again when its members changed under it (each time the newcomers become readers).
MEMBER_RACE_RETRIES = 5


@dataclass
class MediaLink:
    """The message service's dependencies and its connection to the media service (None: not configured)."""

    messages: Messages
    media: Caller | None


def file_id(media: bytes | None) -> int | None:
    """The media service's id of the file a stored MessageMedia carries (what the ``file_id`` columns hold)."""
    shown = render.media(media)
    if isinstance(shown, api.types.MessageMediaPhoto) and isinstance(shown.photo, api.types.Photo):
        return shown.photo.id
    if isinstance(shown, api.types.MessageMediaDocument) and isinstance(shown.document, api.types.Document):
        return shown.document.id
    return None


def input_media(media: bytes) -> api.types.TypeInputMedia:
    """The InputMedia that sends a stored MessageMedia on (a forward, new readers of a group's file)."""
    shown = render.media(media)
    if isinstance(shown, api.types.MessageMediaPhoto) and isinstance(shown.photo, api.types.Photo):
        p = shown.photo
        return api.types.InputMediaPhoto(id=api.types.InputPhoto(id=p.id, access_hash=p.access_hash,
                                                                 file_reference=p.file_reference))
    if isinstance(shown, api.types.MessageMediaDocument) and isinstance(shown.document, api.types.Document):
        d = shown.document
        return api.types.InputMediaDocument(id=api.types.InputDocument(id=d.id, access_hash=d.access_hash,
                                                                       file_reference=d.file_reference))
    raise RpcError(400, "MEDIA_INVALID")


async def attach(link: MediaLink, ctx: rpc.Context, media: api.types.TypeInputMedia, readers: Iterable[int], *,
                 channel_id: int | None = None, held: bool = True) -> bytes:
    """The MessageMedia (TL bytes) the media service makes of ``media``, readable by ``readers`` (and the members
    of ``channel_id``); ``held``: for a message, so released once no message carries it. The media service's
    errors come back as they are."""
    if link.media is None:
        raise RpcError(500, "SERVICE_UNAVAILABLE")
    query = media_fn.Attach(media=media.to_bytes(), readers=sorted(set(readers)), channel_id=channel_id,
                            held=held)
    answer = query.read_result(Reader(await link.media.call(query.to_bytes(), ctx)))
    return answer.media


async def _to_group(link: MediaLink, ctx: rpc.Context, me: int, chat_id: int, q: api.functions.messages.SendMedia,
                    entities: bytes | None) -> api.types.Updates:
    deps = link.messages
    c = await groups.member_of(deps, me, chat_id)
    readers = set(c.member_ids)
    media = await attach(link, ctx, q.media, readers - {me})
    for _ in range(MEMBER_RACE_RETRIES):
        try:
            c, msg_id = await groups.send(deps, me, chat_id, q.random_id, q.message, entities, media, readers=readers)
        except groups.MembersChanged as changed:
            newcomers = changed.members - readers
            await attach(link, ctx, input_media(media), newcomers)
            readers |= newcomers
            continue
        return await groups.answer(deps, me, c, msg_id, q.random_id)
    raise RpcError(500, "STORAGE_UNAVAILABLE")  # the group's members changed under every try: let the client retry


async def send_media(link: MediaLink, ctx: rpc.Context, q: api.functions.messages.SendMedia) -> api.types.TypeUpdates:
    deps = link.messages
    me = signed_in(ctx)
    if len(q.message) > deps.config.max_length:
        raise RpcError(400, "MEDIA_CAPTION_TOO_LONG")
    if q.random_id == 0:
        raise RpcError(400, "RANDOM_ID_INVALID")
    entities = render.encode_entities(q.entities)
    if isinstance(q.peer, api.types.InputPeerChannel):
        c = await channels.resolve(deps, q.peer.channel_id, q.peer.access_hash)
        await channels.may_post(deps, me, c)  # before the file becomes readable by the channel's members
        media = await attach(link, ctx, q.media, [], channel_id=c.id)
        return await channels.post(deps, me, c, q.message, entities, q.random_id, media)
    if isinstance(q.peer, api.types.InputPeerChat):
        return await _to_group(link, ctx, me, q.peer.chat_id, q, entities)
    peer_type, peer_id = await handlers.resolve_peer(deps, me, q.peer)
    if peer_type != USER:
        raise RpcError(400, "PEER_ID_INVALID")
    media = await attach(link, ctx, q.media, [peer_id] if peer_id != me else [])
    reply_to = q.reply_to.reply_to_msg_id if isinstance(q.reply_to, api.types.InputReplyToMessage) else None
    draft = Draft(random_id=q.random_id, message=q.message, entities=entities, media=media,
                  reply_to_id=reply_to, silent=bool(q.silent))
    [m] = await handlers.send(deps, me, (peer_type, peer_id), [draft])
    shown = await deps.users({me, peer_id})
    return api.types.Updates(
        updates=[api.types.UpdateMessageID(id=m.id, random_id=q.random_id),
                 api.types.UpdateNewMessage(message=render.message(m), pts=m.pts, pts_count=1)],
        users=[users.render(shown[i], viewer=me) for i in sorted(shown)], chats=[], date=m.date, seq=0)


async def upload_media(link: MediaLink, ctx: rpc.Context,
                       q: api.functions.messages.UploadMedia) -> api.types.TypeMessageMedia:
    """Store an upload without sending it: the MessageMedia to send later as inputMediaDocument/inputMediaPhoto.
    Only the caller may read it until then, and it is not released for want of a message (``held`` unset)."""
    me = signed_in(ctx)
    await handlers.resolve_peer(link.messages, me, q.peer)
    return render.media(await attach(link, ctx, q.media, [], held=False)) or api.types.MessageMediaEmpty()


async def forward_messages(link: MediaLink, ctx: rpc.Context,
                           q: api.functions.messages.ForwardMessages) -> api.types.TypeUpdates:
    """handlers.forward_messages, with the files of the forwarded messages made readable by the new recipient
    before their copies are written."""

    async def share(found: Sequence[MessageRow], target: tuple[int, int]) -> None:
        peer_type, peer_id = target
        for m in found:
            if m.media is not None and peer_type == USER and peer_id != m.owner_id:
                await attach(link, ctx, input_media(m.media), [peer_id])

    return await handlers.forward_messages(link.messages, ctx, q, share=share)


# -- what the media service asks ------------------------------------------------------------------------------


async def member_of(link: MediaLink, ctx: rpc.Context, q: files_fn.MemberOf) -> files_types.Channels:
    """files.memberOf: which of these channels the context's user is a member of now."""
    return files_types.Channels(channel_ids=await channels.member_of(link.messages, signed_in(ctx), q.channel_ids))


async def in_use(link: MediaLink, ctx: rpc.Context, q: files_fn.InUse) -> files_types.Used:
    """files.inUse: which of these files some message still carries, on any shard (see the module docstring)."""
    used, complete = await carried(link.messages, q.file_ids)
    return files_types.Used(file_ids=sorted(used), complete=complete)


async def _map_versions(deps: Messages) -> list[tuple[int, int]]:
    async with deps.main.acquire() as con:
        rows = await con.fetch("SELECT logical, version FROM shard_map ORDER BY logical")
    return [(int(r["logical"]), int(r["version"])) for r in rows]


async def carried(deps: Messages, file_ids: Sequence[int]) -> tuple[set[int], bool]:
    """The files of ``file_ids`` some message (or a live secret chat) carries, and whether the search is complete.

    Every physical database is searched whatever its shards' state (a shard being moved is on both sides for a
    while). A move that switched during the search could hide a row from it (searched on the target before the
    copy, on the source after the clean-up), so the shard map's versions before and after must be equal for the
    answer to prove anything. Deliveries still in an outbox carry their media in the payload, not in a column:
    they are few (they are applied within moments), so they are decoded here."""
    wanted = set(file_ids)
    before = await _map_versions(deps)
    used: set[int] = set()
    for physical in sorted(deps.shards.map.dsns):
        pool = await deps.shards.pool(physical)
        async with pool.acquire() as con:
            rows = await con.fetch(
                "SELECT file_id FROM messages WHERE file_id = ANY($1::bigint[]) "
                "UNION SELECT file_id FROM chat_messages WHERE file_id = ANY($1::bigint[]) "
                "UNION SELECT file_id FROM channel_messages WHERE file_id = ANY($1::bigint[]) "
                "UNION SELECT file_id FROM secret_files WHERE file_id = ANY($1::bigint[])", sorted(wanted))
            used.update(int(r["file_id"]) for r in rows)
            waiting = await con.fetch("SELECT payload->>'media' AS media FROM outbox "
                                      "WHERE payload->>'media' IS NOT NULL")
            for r in waiting:
                carried_id = file_id(outbox.unb64(r["media"]))
                if carried_id is not None and carried_id in wanted:
                    used.add(carried_id)
    return used, before == await _map_versions(deps)


Method = Callable[[MediaLink, rpc.Context, Any], Awaitable[Result]]

METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.messages.SendMedia: send_media,
    api.functions.messages.UploadMedia: upload_media,
    api.functions.messages.ForwardMessages: forward_messages,
    files_fn.MemberOf: member_of,
    files_fn.InUse: in_use,
    **secret.FILE_METHODS,
}
