"""Rows as the TL objects clients receive (layer 229): messages, dialogs, and the updates of the update log.

A box row becomes a ``message``: ``peer_id`` is the other side of the conversation from the box owner's point of
view (in a private chat, the other user; in Saved Messages, the owner), ``from_id`` who wrote it. The update log
keeps each update exactly as ``updates.getDifference`` and the push path hand it out, so these functions produce
bytes.
"""

from __future__ import annotations

from mtproto.tl import api
from mtproto.tl.runtime import INT, VECTOR_HEADER, Reader
from services.messages.store import CHANNEL, CHAT, USER, DialogRow, MessageRow


def peer(peer_type: int, peer_id: int) -> api.types.TypePeer:
    if peer_type == USER:
        return api.types.PeerUser(user_id=peer_id)
    if peer_type == CHAT:
        return api.types.PeerChat(chat_id=peer_id)
    if peer_type == CHANNEL:
        return api.types.PeerChannel(channel_id=peer_id)
    raise ValueError(f"unknown peer type {peer_type}")


def encode_entities(entities: list[api.types.TypeMessageEntity] | None) -> bytes | None:
    if not entities:
        return None
    return VECTOR_HEADER + INT.pack(len(entities)) + b"".join(e.to_bytes() for e in entities)


def decode_entities(data: bytes | None) -> list[api.types.TypeMessageEntity] | None:
    if data is None:
        return None
    r = Reader(data)
    return [e for e in r.read_vector(r.read_object) if isinstance(e, api.types.TypeMessageEntity)]


def media(data: bytes | None) -> api.types.TypeMessageMedia | None:
    """A message's media, kept as TL bytes in a column, or None."""
    if data is None:
        return None
    decoded = Reader(data).read_object()
    if not isinstance(decoded, api.types.TypeMessageMedia):
        raise TypeError(f"stored media is a {type(decoded).__name__}")
    return decoded


def action(data: bytes) -> api.types.TypeMessageAction:
    """A service message's action, kept as TL bytes."""
    decoded = Reader(data).read_object()
    if not isinstance(decoded, api.types.TypeMessageAction):
        raise TypeError(f"a stored message action is a {type(decoded).__name__}")
    return decoded


def message(m: MessageRow) -> api.types.TypeMessage:
    if m.action is not None:
        return api.types.MessageService(out=m.out, id=m.id, from_id=api.types.PeerUser(user_id=m.from_id),
                                        peer_id=peer(m.peer_type, m.peer_id), date=m.date, action=action(m.action))
    return api.types.Message(
        out=m.out, silent=m.silent, id=m.id, from_id=api.types.PeerUser(user_id=m.from_id),
        peer_id=peer(m.peer_type, m.peer_id), date=m.date, message=m.message,
        entities=decode_entities(m.entities), media=media(m.media),
        reply_to=api.types.MessageReplyHeader(reply_to_msg_id=m.reply_to_id) if m.reply_to_id else None,
        fwd_from=(api.types.MessageFwdHeader(from_id=api.types.PeerUser(user_id=m.fwd_from_id), date=m.fwd_date or 0)
                  if m.fwd_from_id is not None else None),
        edit_date=m.edit_date,
    )


def dialog(d: DialogRow) -> api.types.Dialog:
    return api.types.Dialog(peer=peer(d.peer_type, d.peer_id), top_message=d.top_message,
                            read_inbox_max_id=d.read_inbox_max_id, read_outbox_max_id=d.read_outbox_max_id,
                            unread_count=d.unread_count, unread_mentions_count=0, unread_reactions_count=0,
                            unread_poll_votes_count=0,
                            notify_settings=api.types.PeerNotifySettings())


# -- update log entries -------------------------------------------------------------------------------------


def new_message(m: MessageRow, pts: int) -> bytes:
    return api.types.UpdateNewMessage(message=message(m), pts=pts, pts_count=1).to_bytes()


def edit_message(m: MessageRow, pts: int) -> bytes:
    return api.types.UpdateEditMessage(message=message(m), pts=pts, pts_count=1).to_bytes()


def delete_messages(ids: list[int], pts: int) -> bytes:
    return api.types.UpdateDeleteMessages(messages=ids, pts=pts, pts_count=len(ids)).to_bytes()


def read_inbox(peer_id: int, max_id: int, still_unread: int, pts: int) -> bytes:
    return api.types.UpdateReadHistoryInbox(peer=api.types.PeerUser(user_id=peer_id), max_id=max_id,
                                            still_unread_count=still_unread, pts=pts, pts_count=1).to_bytes()


def read_outbox(peer_id: int, max_id: int, pts: int) -> bytes:
    return api.types.UpdateReadHistoryOutbox(peer=api.types.PeerUser(user_id=peer_id), max_id=max_id, pts=pts,
                                             pts_count=1).to_bytes()


def channel_changed(channel_id: int) -> bytes:
    """updateChannel: something about the channel changed for this user (joined, left): refetch it."""
    return api.types.UpdateChannel(channel_id=channel_id).to_bytes()
