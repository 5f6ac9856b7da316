"""messages.sendMedia and messages.uploadMedia: messages that carry a photo or a document (private chats).

The message service never touches file bytes. It hands the client's InputMedia to the media service over internal
RPC (``media.attach``, mtproto/tl/schema/internal.tl) with the users who will see the message; the media service
assembles an uploaded file (or checks a stored one the caller may send on), records those users as its readers,
and answers the MessageMedia. That answer is stored with the message as TL bytes (the ``media`` column), delivered
to the recipient's box through the outbox like any message, and rendered by ``render.media``.

Why an RPC and not a shared store module: the blobs and staged parts are on the media service's disk (or object
store), which the message service cannot and should not reach; the media service stays the only writer of the
media tables; and one call per message is nothing next to the upload it completes.

The order makes a crash harmless: the file is stored (and readable by the recipient) before the message is
written; if the message service dies in between, a resend of the same request (same random_id) attaches the same
upload again, which the media service answers with the same file, and the send itself is deduplicated by random_id.

Groups and channels are not served yet (PEER_ID_INVALID): their readers are the members, which the group's and
the channel's own send paths would have to name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLFunction
from services.common import users
from services.common.rpc import RpcClient, RpcError
from services.common.service import Result
from services.messages import handlers, render
from services.messages.handlers import Draft, Messages
from services.messages.store import USER


@dataclass
class MediaLink:
    """The message service's dependencies and its connection to the media service (None: not configured)."""

    messages: Messages
    media: RpcClient | None


def _me(ctx: rpc.Context) -> int:
    if ctx.user_id is None:
        raise RpcError(401, "AUTH_KEY_UNREGISTERED")
    return ctx.user_id


async def attach(link: MediaLink, ctx: rpc.Context, media: api.types.TypeInputMedia,
                 readers: list[int]) -> bytes:
    """The MessageMedia (TL bytes) the media service makes of ``media``; its errors come back as they are."""
    if link.media is None:
        raise RpcError(500, "SERVICE_UNAVAILABLE")
    query = media_fn.Attach(media=media.to_bytes(), readers=readers)
    answer = query.read_result(Reader(await link.media.call(query.to_bytes(), ctx)))
    return answer.media


async def send_media(link: MediaLink, ctx: rpc.Context, q: api.functions.messages.SendMedia) -> api.types.TypeUpdates:
    deps = link.messages
    me = _me(ctx)
    if len(q.message) > deps.config.max_length:
        raise RpcError(400, "MEDIA_CAPTION_TOO_LONG")
    peer_type, peer_id = await handlers.resolve_peer(deps, me, q.peer)
    if peer_type != USER:
        raise RpcError(400, "PEER_ID_INVALID")  # groups and channels: see the module docstring
    if q.random_id == 0:
        raise RpcError(400, "RANDOM_ID_INVALID")
    media = await attach(link, ctx, q.media, [peer_id] if peer_id != me else [])
    reply_to = q.reply_to.reply_to_msg_id if isinstance(q.reply_to, api.types.InputReplyToMessage) else None
    draft = Draft(random_id=q.random_id, message=q.message, entities=render.encode_entities(q.entities), media=media,
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
    Only the caller may read it until then."""
    me = _me(ctx)
    await handlers.resolve_peer(link.messages, me, q.peer)
    return render.media(await attach(link, ctx, q.media, [])) or api.types.MessageMediaEmpty()


Method = Callable[[MediaLink, rpc.Context, Any], Awaitable[Result]]

METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.messages.SendMedia: send_media,
    api.functions.messages.UploadMedia: upload_media,
}
