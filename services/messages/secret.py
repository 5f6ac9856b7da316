"""The secret-chat relay: messages.getDhConfig, requestEncryption, acceptEncryption, discardEncryption,
sendEncrypted(+Service, +File), uploadEncryptedFile, receivedQueue, readEncryptedHistory and setEncryptedTyping
(core.telegram.org/api/end-to-end; the method pages under core.telegram.org/method/messages.*).

The server never has a key. It hands out the Diffie-Hellman parameters, relays g_a and g_b, stores the fingerprint
the accepting client announces, and carries encrypted bytes it cannot read from one device to the other. What it
checks is what it can see: g_a and g_b are 256-byte numbers in the range the security guidelines require, the
chat is in the state the method needs, the caller is the chat's participant on the chat's device, an encrypted
message is whole AES blocks behind the chat's key fingerprint, and a resend (same random_id) is not delivered twice.

A secret chat is between two devices (auth keys), not two users: the requesting device (``ctx.auth_key_id``) and
the one device of the other user that accepts. ``updateEncryption(encryptedChatRequested)`` goes to every device
the user is signed in on when the request arrives; once one accepts, the chat is bound to it and the others get
``updateEncryption(encryptedChatDiscarded)`` (their clients drop the request). Each device has its own qts queue
(secret_store.py): the durable truth, replayed by updates.getDifference(qts) and emptied by receivedQueue; after
each commit the update is also pushed live to that device (``Messages.relay``).

Each participant keeps a copy of the chat on their own shard. A change to the caller's copy and the outbox row
that carries it to the other copy commit together; outbox.py applies the row on the other shard (crash-safe, in
order, once). An encrypted message needs no outbox: it is one transaction on the recipient's shard, which checks
the recipient's copy and queues the message for their device.

Files (end-to-end, "Sending encrypted files"): the client encrypts a file under a one-time key and iv of its own,
uploads the ciphertext with upload.saveFilePart like any file, and sends it with messages.sendEncryptedFile: an
encrypted message (the key, iv and real size are inside it) plus an InputEncryptedFile naming the upload (or a
stored file again, inputEncryptedFile). The media service stores the ciphertext as it came, never decoded, readable
by the chat's two participants (services/media/encrypted.py, reached over media.attachEncrypted); the recipient's
encryptedMessage carries its encryptedFile (id, access_hash, size, dc_id, and the key_fingerprint the sender gave),
which it downloads with upload.getFile(inputEncryptedFileLocation). messages.uploadEncryptedFile stores one for a
chat without sending it. Lifetime: the chat's copy that the call touches (the recipient's for a message, the
caller's for an upload) records the file (``secret_files``) in the transaction that delivers it, and discarding a
copy forgets its files, so the media service's release keeps a file while a live chat carries it and frees it a
sweep or so after the last such chat is discarded (what the other device had not downloaded by then is gone, as
the messages the server no longer keeps).

Errors (400 unless noted): USER_ID_INVALID, DH_G_A_INVALID, DH_G_B_INVALID, RANDOM_ID_DUPLICATE,
RANDOM_LENGTH_INVALID, CHAT_ID_INVALID, CHAT_ID_EMPTY, ENCRYPTION_ID_INVALID, ENCRYPTION_ALREADY_ACCEPTED,
ENCRYPTION_ALREADY_DECLINED, ENCRYPTION_DECLINED, DATA_INVALID, DATA_TOO_LONG, MAX_QTS_INVALID,
MAX_DATE_INVALID; for files, the media service's: FILE_EMTPY (sic: the spec's spelling; inputEncryptedFileEmpty or
an upload of no parts), MD5_CHECKSUM_INVALID, FILE_PART_<n>_MISSING, FILE_PARTS_INVALID (also: not whole AES
blocks), FILE_ID_INVALID (inputEncryptedFile of a file the caller may not read), and 500 SERVICE_UNAVAILABLE when
no media service is configured.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import asyncpg
from prometheus_client import Counter

from mtproto.crypto.dh import DEFAULT_DH_PRIME, DEFAULT_G, dh_value_ok
from mtproto.tl import api
from mtproto.tl.internal.functions import media as media_fn
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLFunction
from services.common import db
from services.common.rpc import RpcError
from services.messages import outbox, secret_store, store
from services.messages.handlers import Messages, Method
from services.messages.secret_store import ACCEPTED, DISCARDED, REQUESTED, Queued, SecretChat

if TYPE_CHECKING:
    from services.messages.media import MediaLink
    from services.messages.media import Method as LinkMethod

log = logging.getLogger("mtlab.messages.secret")

SECRET = Counter("mtlab_messages_secret_total", "Secret-chat calls that changed something, by what happened",
                 ["event"])

#: messages.dhConfig.version: the number of the (p, g) pair below; bumped if they ever change.
DH_VERSION = 1
#: The most random bytes getDhConfig hands out in one answer.
RANDOM_MAX = 1024
#: The largest encrypted message accepted (the client's text is at most a few KiB; media go through files).
DATA_MAX = 256 * 1024
#: key_fingerprint (8) + msg_key (16) + at least one AES block: the smallest encrypted message there is.
DATA_MIN = 8 + 16 + 16
DH_SIZE = 256


def _me(ctx: rpc.Context) -> tuple[int, int]:
    """The caller and their device (auth key): a secret chat belongs to a device."""
    if ctx.user_id is None:
        raise RpcError(401, "AUTH_KEY_UNREGISTERED")
    return ctx.user_id, ctx.auth_key_id


def _dh_value(value: bytes, error: str) -> bytes:
    """g_a or g_b as the spec allows it: 256 bytes, 1 < v < p - 1 and 2^(2048-64) <= v <= p - 2^(2048-64)."""
    if len(value) != DH_SIZE or not dh_value_ok(int.from_bytes(value, "big"), DEFAULT_DH_PRIME):
        raise RpcError(400, error)
    return value


def _random_long() -> int:
    return int.from_bytes(os.urandom(8), "little", signed=True)


async def _devices(deps: Messages, user_id: int) -> list[int]:
    """The auth keys ``user_id`` is signed in with now (the auth service's tables in the main database)."""
    async with deps.main.acquire() as con:
        rows = await con.fetch("SELECT a.auth_key_id FROM authorizations a JOIN auth_keys k ON k.id = a.auth_key_id "
                               "WHERE a.user_id = $1 AND k.revoked_at IS NULL ORDER BY a.auth_key_id", user_id)
    return [int(r["auth_key_id"]) for r in rows]


async def _relay(deps: Messages, queued: list[Queued]) -> None:
    for q in queued:
        await deps.relay(q.user_id, q.update, auth_key_id=q.auth_key_id)


async def _own_copy(deps: Messages, me: int, key: int, chat_id: int, access_hash: int | None) -> SecretChat:
    """The caller's copy of a chat they may act on from this device, or 400 CHAT_ID_INVALID: unknown to them, a
    wrong access_hash, or bound to another of their devices."""
    shard = deps.shards.for_user(me)
    c = await deps.txn(shard, "secret_load", lambda con: secret_store.load(con, shard, me, chat_id))
    if c is None or (access_hash is not None and c.access_hash != access_hash):
        raise RpcError(400, "CHAT_ID_INVALID")
    if c.my_key is not None and c.my_key != key:
        raise RpcError(400, "CHAT_ID_INVALID")
    if c.my_key is None and key not in c.notified_keys:  # a request only the devices told of it may answer
        raise RpcError(400, "CHAT_ID_INVALID")
    return c


# -- the DH parameters ----------------------------------------------------------------------------------------


async def get_dh_config(deps: Messages, ctx: rpc.Context,
                        q: api.functions.messages.GetDhConfig) -> api.types.messages.TypeDhConfig:
    """p and g for the client's key exchange, plus ``random_length`` bytes from the server's CSPRNG, which the
    client mixes into its own secret (end-to-end: "Sending a Request")."""
    _me(ctx)
    if not 0 <= q.random_length <= RANDOM_MAX:
        raise RpcError(400, "RANDOM_LENGTH_INVALID")
    random = os.urandom(q.random_length)
    if q.version == DH_VERSION:
        return api.types.messages.DhConfigNotModified(random=random)
    return api.types.messages.DhConfig(g=DEFAULT_G, p=DEFAULT_DH_PRIME.to_bytes(DH_SIZE, "big"), version=DH_VERSION,
                                       random=random)


# -- opening and closing --------------------------------------------------------------------------------------


async def request_encryption(deps: Messages, ctx: rpc.Context,
                             q: api.functions.messages.RequestEncryption) -> api.types.TypeEncryptedChat:
    me, key = _me(ctx)
    if not isinstance(q.user_id, api.types.InputUser) or q.user_id.user_id == me:
        raise RpcError(400, "USER_ID_INVALID")
    peer = (await deps.users([q.user_id.user_id])).get(q.user_id.user_id)
    if peer is None or peer.access_hash != q.user_id.access_hash:
        raise RpcError(400, "USER_ID_INVALID")
    g_a = _dh_value(q.g_a, "DH_G_A_INVALID")
    shard = deps.shards.for_user(me)

    async def resent(con: db.Connection) -> SecretChat | None:
        return await secret_store.by_random_id(con, shard, me, q.random_id)

    earlier = await deps.txn(shard, "secret_request_resent", resent)
    if earlier is not None:  # a resend answers the first request again; another request under its id is refused
        if earlier.participant_id != peer.id or earlier.g_a != g_a or earlier.admin_key != key:
            raise RpcError(400, "RANDOM_ID_DUPLICATE")
        return secret_store.render(earlier, key)
    devices = await _devices(deps, peer.id)
    async with deps.main.acquire() as con:
        chat_id = int(await con.fetchval("SELECT nextval('secret_chat_ids')"))
    c = SecretChat(owner_id=me, id=chat_id, access_hash=_random_long(), admin_id=me, admin_key=key,
                   participant_id=peer.id, participant_key=None, notified_keys=tuple(devices), state=REQUESTED,
                   g_a=g_a, g_b=None, key_fingerprint=None, random_id=q.random_id, date=deps.now())

    async def txn(con: db.Connection) -> None:
        await secret_store.insert(con, shard, c)
        seq, _ = await store.state(con, shard, me)
        await store.add_outbox(con, shard, me, seq, "secret_request", peer.id, secret_store.request_payload(c))

    try:
        await deps.txn(shard, "secret_request", txn)
    except asyncpg.UniqueViolationError as exc:  # the same random_id twice at once: the other one won
        if exc.constraint_name != "secret_chats_random_id":
            raise
        raise RpcError(400, "RANDOM_ID_DUPLICATE") from None
    SECRET.labels("requested").inc()
    if deps.config.deliver_inline:
        await outbox.drain(deps, shard, me)
    return secret_store.render(c, key)


async def accept_encryption(deps: Messages, ctx: rpc.Context,
                            q: api.functions.messages.AcceptEncryption) -> api.types.TypeEncryptedChat:
    """The participant's device accepts: the chat is bound to it. The server cannot check ``key_fingerprint``
    (it has no key); it passes it on, and the requesting client compares it with the key it computes."""
    me, key = _me(ctx)
    g_b = _dh_value(q.g_b, "DH_G_B_INVALID")
    if not isinstance(q.peer, api.types.InputEncryptedChat):
        raise RpcError(400, "CHAT_ID_INVALID")
    chat_id, access_hash = q.peer.chat_id, q.peer.access_hash
    shard = deps.shards.for_user(me)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[SecretChat, list[Queued]]:
        c = await secret_store.load(con, shard, me, chat_id, lock=True)
        if c is None or c.access_hash != access_hash or c.owner_id != c.participant_id:
            raise RpcError(400, "CHAT_ID_INVALID")
        if c.state == ACCEPTED:
            raise RpcError(400, "ENCRYPTION_ALREADY_ACCEPTED")
        if c.state == DISCARDED:
            raise RpcError(400, "ENCRYPTION_ALREADY_DECLINED")
        if key not in c.notified_keys:
            raise RpcError(400, "CHAT_ID_INVALID")  # a device signed in after the request never saw it
        c = replace(c, state=ACCEPTED, participant_key=key, g_b=g_b, key_fingerprint=q.key_fingerprint)
        await secret_store.save(con, shard, c)
        # The user's other devices told of the request: it is gone for them.
        gone = api.types.UpdateEncryption(chat=api.types.EncryptedChatDiscarded(id=c.id), date=date)
        queued = [await secret_store.enqueue(con, shard, me, other, date, gone)
                  for other in c.notified_keys if other != key]
        seq, _ = await store.state(con, shard, me)
        await store.add_outbox(con, shard, me, seq, "secret_accept", c.admin_id, {
            "id": c.id, "g_b": secret_store.b64(g_b), "key_fingerprint": q.key_fingerprint,
            "participant_key": key, "date": date})
        return c, queued

    c, queued = await deps.txn(shard, "secret_accept", txn)
    SECRET.labels("accepted").inc()
    await _relay(deps, queued)
    if deps.config.deliver_inline:
        await outbox.drain(deps, shard, me)
    return secret_store.render(c, key)


async def discard_encryption(deps: Messages, ctx: rpc.Context, q: api.functions.messages.DiscardEncryption) -> bool:
    """Either side closes the chat (or the participant declines the request): both copies are discarded and the
    other side's device hears of it."""
    me, key = _me(ctx)
    if not q.chat_id:
        raise RpcError(400, "CHAT_ID_EMPTY")
    mine = await _own_copy(deps, me, key, q.chat_id, None)
    shard = deps.shards.for_user(me)
    date = deps.now()

    async def txn(con: db.Connection) -> list[Queued]:
        c = await secret_store.load(con, shard, me, mine.id, lock=True)
        if c is None:
            raise RpcError(400, "ENCRYPTION_ID_INVALID")
        if c.state == DISCARDED:
            raise RpcError(400, "ENCRYPTION_ALREADY_DECLINED")
        queued = await secret_store.discard(con, shard, c, bool(q.delete_history), date, skip_key=key)
        seq, _ = await store.state(con, shard, me)
        await store.add_outbox(con, shard, me, seq, "secret_discard", c.peer_id, {
            "id": c.id, "history_deleted": bool(q.delete_history), "date": date})
        return queued

    queued = await deps.txn(shard, "secret_discard", txn)
    SECRET.labels("discarded").inc()
    await _relay(deps, queued)
    if deps.config.deliver_inline:
        await outbox.drain(deps, shard, me)
    return True


# -- messages -------------------------------------------------------------------------------------------------


async def _sendable(deps: Messages, ctx: rpc.Context, peer: Any, data: bytes | None) -> SecretChat:
    """The caller's copy of an accepted chat they may write to from this device, and ``data`` (the encrypted
    message, None for uploadEncryptedFile) as far as the server can check bytes it cannot read."""
    me, key = _me(ctx)
    if not isinstance(peer, api.types.InputEncryptedChat):
        raise RpcError(400, "CHAT_ID_INVALID")
    if data is not None and len(data) > DATA_MAX:
        raise RpcError(400, "DATA_TOO_LONG")
    mine = await _own_copy(deps, me, key, peer.chat_id, peer.access_hash)
    if mine.state == DISCARDED:
        raise RpcError(400, "ENCRYPTION_DECLINED")
    if mine.state != ACCEPTED or mine.key_fingerprint is None:
        raise RpcError(400, "CHAT_ID_INVALID")  # not accepted yet: there is no key to encrypt with
    # What the server can check of bytes it cannot read: the envelope key_fingerprint | msg_key | whole blocks.
    if data is not None and (len(data) < DATA_MIN or (len(data) - 24) % 16 or
                             data[:8] != mine.key_fingerprint.to_bytes(8, "little", signed=True)):
        raise RpcError(400, "DATA_INVALID")
    return mine


async def _deliver(deps: Messages, mine: SecretChat, random_id: int, data: bytes, *, service: bool,
                   file: api.types.EncryptedFile | None = None) -> api.types.messages.TypeSentEncryptedMessage:
    """Queue the message for the other participant's device, in one transaction on their shard; with ``file``,
    their copy (locked: a discard waits, or is waited for) carries the file from then on."""
    target = mine.peer_id
    shard = deps.shards.for_user(target)
    date = deps.now()

    async def txn(con: db.Connection) -> tuple[int, Queued | None]:
        theirs = await secret_store.load(con, shard, target, mine.id, lock=file is not None)
        if theirs is None or theirs.state == DISCARDED:
            raise RpcError(400, "ENCRYPTION_DECLINED")
        if theirs.state != ACCEPTED or theirs.my_key is None:
            raise RpcError(400, "CHAT_ID_INVALID")
        first = await secret_store.remember_random_id(con, shard, target, mine.id, random_id, date)
        if first is not None:
            return first, None  # a resend: delivered the first time
        message: api.types.TypeEncryptedMessage
        if service:
            message = api.types.EncryptedMessageService(random_id=random_id, chat_id=mine.id, date=date, bytes=data)
        else:
            message = api.types.EncryptedMessage(random_id=random_id, chat_id=mine.id, date=date, bytes=data,
                                                 file=file or api.types.EncryptedFileEmpty())
        if file is not None:
            await secret_store.carry_file(con, shard, target, mine.id, file.id, date)
        queued = await secret_store.enqueue(con, shard, target, theirs.my_key, date,
                                            api.types.UpdateNewEncryptedMessage(message=message, qts=0))
        return date, queued

    sent_date, queued = await deps.txn(shard, "secret_send", txn)
    if queued is not None:
        SECRET.labels("service" if service else "file" if file is not None else "message").inc()
        await _relay(deps, [queued])
    if file is not None:
        return api.types.messages.SentEncryptedFile(date=sent_date, file=file)
    return api.types.messages.SentEncryptedMessage(date=sent_date)


async def send_encrypted(deps: Messages, ctx: rpc.Context,
                         q: api.functions.messages.SendEncrypted) -> api.types.messages.TypeSentEncryptedMessage:
    mine = await _sendable(deps, ctx, q.peer, q.data)
    return await _deliver(deps, mine, q.random_id, q.data, service=False)


async def send_encrypted_service(deps: Messages, ctx: rpc.Context, q: api.functions.messages.SendEncryptedService
                                 ) -> api.types.messages.TypeSentEncryptedMessage:
    mine = await _sendable(deps, ctx, q.peer, q.data)
    return await _deliver(deps, mine, q.random_id, q.data, service=True)


# -- files (they need the media service: these take media.py's MediaLink) -------------------------------------


async def _attach_file(link: MediaLink, ctx: rpc.Context, file: api.types.TypeInputEncryptedFile,
                       reader: int) -> api.types.EncryptedFile:
    """The encryptedFile the media service makes of ``file`` (media.attachEncrypted: an upload stored as the
    client's ciphertext, or a stored one checked), readable from then on by ``reader`` too. Its errors come back
    as they are."""
    if link.media is None:
        raise RpcError(500, "SERVICE_UNAVAILABLE")
    query = media_fn.AttachEncrypted(file=file.to_bytes(), readers=[reader])
    answer = query.read_result(Reader(await link.media.call(query.to_bytes(), ctx)))
    encrypted = Reader(answer.file).read_object()
    if not isinstance(encrypted, api.types.EncryptedFile):
        raise RpcError(500, "INTERNAL")  # the media service answers nothing else
    return encrypted


async def send_encrypted_file(link: MediaLink, ctx: rpc.Context, q: api.functions.messages.SendEncryptedFile
                              ) -> api.types.messages.TypeSentEncryptedMessage:
    """An encrypted message with a file: the chat and the message are checked first (nothing is stored for a send
    that cannot happen), then the media service stores the file (or checks a stored one), readable by the other
    participant, then the message carrying its encryptedFile is queued for their device. The answer,
    messages.sentEncryptedFile, names the file for the sender too (to send it on with inputEncryptedFile)."""
    deps = link.messages
    mine = await _sendable(deps, ctx, q.peer, q.data)
    file = await _attach_file(link, ctx, q.file, mine.peer_id)
    return await _deliver(deps, mine, q.random_id, q.data, service=False, file=file)


async def upload_encrypted_file(link: MediaLink, ctx: rpc.Context,
                                q: api.functions.messages.UploadEncryptedFile) -> api.types.TypeEncryptedFile:
    """Store a file for a chat without sending it (the method page: "associate it to a secret chat"): readable by
    the chat's other participant, kept while the caller's copy of the chat is live, sent later with
    inputEncryptedFile."""
    deps = link.messages
    mine = await _sendable(deps, ctx, q.peer, None)
    file = await _attach_file(link, ctx, q.file, mine.peer_id)
    shard = deps.shards.for_user(mine.owner_id)
    date = deps.now()

    async def txn(con: db.Connection) -> None:
        c = await secret_store.load(con, shard, mine.owner_id, mine.id, lock=True)
        if c is None or c.state == DISCARDED:
            raise RpcError(400, "ENCRYPTION_DECLINED")  # discarded since: the file is released in time
        await secret_store.carry_file(con, shard, c.owner_id, c.id, file.id, date)

    await deps.txn(shard, "secret_upload_file", txn)
    SECRET.labels("file_uploaded").inc()
    return file


async def received_queue(deps: Messages, ctx: rpc.Context,
                         q: api.functions.messages.ReceivedQueue) -> list[int]:
    """The device has what its queue holds up to ``max_qts``: those rows go. Answers the random_ids of the
    encrypted messages among them (Telegram: the ones whose push notifications are cancelled)."""
    me, key = _me(ctx)
    if q.max_qts < 0:
        raise RpcError(400, "MAX_QTS_INVALID")
    shard = deps.shards.for_user(me)

    async def txn(con: db.Connection) -> list[int]:
        if q.max_qts > await secret_store.current_qts(con, shard, me, key):
            raise RpcError(400, "MAX_QTS_INVALID")  # acknowledging what was never given out: a client bug
        return await secret_store.acknowledge(con, shard, me, key, q.max_qts)

    return await deps.txn(shard, "secret_received_queue", txn)


async def read_encrypted_history(deps: Messages, ctx: rpc.Context,
                                 q: api.functions.messages.ReadEncryptedHistory) -> bool:
    """Relayed to the other device as updateEncryptedMessagesRead, live only (lost if it is offline: the
    end-to-end decryptedMessageActionReadMessages is what clients rely on)."""
    me, key = _me(ctx)
    if not isinstance(q.peer, api.types.InputEncryptedChat):
        raise RpcError(400, "CHAT_ID_INVALID")
    if q.max_date < 0:
        raise RpcError(400, "MAX_DATE_INVALID")
    c = await _own_copy(deps, me, key, q.peer.chat_id, q.peer.access_hash)
    if c.state == ACCEPTED and c.peer_key is not None:
        await deps.relay(c.peer_id, api.types.UpdateEncryptedMessagesRead(chat_id=c.id, max_date=q.max_date,
                                                                          date=deps.now()), auth_key_id=c.peer_key)
    return True


async def set_encrypted_typing(deps: Messages, ctx: rpc.Context,
                               q: api.functions.messages.SetEncryptedTyping) -> bool:
    """Relayed to the other device as updateEncryptedChatTyping, live only (typing may be lost)."""
    me, key = _me(ctx)
    if not isinstance(q.peer, api.types.InputEncryptedChat):
        raise RpcError(400, "CHAT_ID_INVALID")
    c = await _own_copy(deps, me, key, q.peer.chat_id, q.peer.access_hash)
    if q.typing and c.state == ACCEPTED and c.peer_key is not None:
        await deps.relay(c.peer_id, api.types.UpdateEncryptedChatTyping(chat_id=c.id), auth_key_id=c.peer_key)
    return True


#: The methods this module answers (server.py merges them into the service's table).
METHODS: dict[type[TLFunction[Any]], Method] = {
    api.functions.messages.GetDhConfig: get_dh_config,
    api.functions.messages.RequestEncryption: request_encryption,
    api.functions.messages.AcceptEncryption: accept_encryption,
    api.functions.messages.DiscardEncryption: discard_encryption,
    api.functions.messages.SendEncrypted: send_encrypted,
    api.functions.messages.SendEncryptedService: send_encrypted_service,
    api.functions.messages.ReceivedQueue: received_queue,
    api.functions.messages.ReadEncryptedHistory: read_encrypted_history,
    api.functions.messages.SetEncryptedTyping: set_encrypted_typing,
}

#: The methods that need the media service too: media.py merges them into its table (they take its MediaLink).
FILE_METHODS: dict[type[TLFunction[Any]], LinkMethod] = {
    api.functions.messages.SendEncryptedFile: send_encrypted_file,
    api.functions.messages.UploadEncryptedFile: upload_encrypted_file,
}
