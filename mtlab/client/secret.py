"""Secret chats, the client's end-to-end side (core.telegram.org/api/end-to-end, /api/end-to-end/seq_no,
/mtproto/security_guidelines for the DH checks).

The server relays; only the two devices ever hold the chat's key. ``SecretChats`` is fed the updates the server
sends (``updateEncryption``, ``updateNewEncryptedMessage``: from the live push, from ``ordered_updates``, or from
``updates.getDifference(qts=...)`` through ``catch_up``) and calls ``invoke`` for what it does. Keys live in this
object's memory only: nothing here writes them anywhere or sends them.

Key exchange (end-to-end, "Key Generation"): ``messages.getDhConfig`` gives p and g (checked once per prime: a safe
2048-bit prime, g a generator of the right subgroup) and 256 random bytes from the server, XORed into the client's
own 256 random bytes to make the secret a (or b). g_a and g_b are checked against the ranges of the security
guidelines. key = pow(g_b, a, p) as 256 big-endian bytes; key_fingerprint = the last 8 bytes of SHA1(key) as a
little-endian long. The requester compares the fingerprint the accepter announced with its own key's and discards
the chat when they differ.

Messages (end-to-end, "Sending encrypted messages", MTProto 2.0): a ``decryptedMessageLayer`` (at least 15 random
bytes, the layer, in_seq_no, out_seq_no, the decryptedMessage) is serialized, prefixed with its length (32 bits)
and padded with 12..1024 random bytes to a multiple of 16. msg_key is the middle 128 bits of
SHA256(key[88+x : 120+x] + plaintext + padding) and the AES-256-IGE key and iv come from key and msg_key exactly as in
MTProto 2.0, with x = 0 for messages from the chat's originator and 8 for the other direction. What travels is
key_fingerprint (8) | msg_key (16) | the ciphertext: byte for byte MTProto 2.0's auth_key_id | msg_key | data with
the chat key in place of the auth key and the originator in the client's place, so ``mtproto.crypto.message``'s
``encrypt_message`` / ``decrypt_message`` do it (their ``from_client`` is "sent by the originator").

Receiving checks everything before using anything: the fingerprint and msg_key (``decrypt_message``), then the
length prefix (a multiple of 4, leaving 12..1024 bytes of padding), one whole ``decryptedMessageLayer`` and at least
15 random bytes, then the sequence numbers (seq_no page): both carry the parity of their direction (the peer's
out_seq_no is odd when the peer began the chat), and out_seq_no must be the next one expected; a repeat is
dropped, a gap or a wrong parity abort the chat (the resend protocol is not built).

Layers: each side sends ``decryptedMessageActionNotifyLayer`` once the chat is up; until the peer's arrives, the
``layer`` field says ``SECRET_LAYER``.

Files (end-to-end, "Sending encrypted files"): a file is encrypted under a one-time key and iv (32 random bytes
each, in no way related to the chat's key) with AES-256-IGE, padded with random bytes to whole 16-byte blocks, and
the ciphertext uploaded like any file (``files.upload``: saveFilePart, or saveBigFilePart above 10 MB). Then
messages.sendEncryptedFile carries two things: outside, an inputEncryptedFileUploaded (or ...BigUploaded) naming
the upload with the 32-bit key fingerprint, md5(key + iv)'s first 4 bytes XOR its next 4 as a little-endian int;
inside the encrypted message, a decryptedMessageMediaDocument with the key, the iv and the real size. The server
stores the ciphertext and hands the recipient an encryptedFile(id, access_hash, size, dc_id, key_fingerprint)
next to the message. The recipient checks the fingerprint against the key and iv it decrypted (another file in
the envelope is dropped), downloads with inputEncryptedFileLocation, decrypts, and cuts the padding off at the
real size. IGE chains every block to the one before, so a file of any size goes through in chunks of
``FILE_CHUNK``: each chunk starts from the iv the previous one ended with (its last ciphertext block, its last
plaintext block), in both directions. Sending encrypts into a temporary file and uploads that (``workers`` parts
of it in memory at a time); receiving decrypts as the parts arrive (``FileDecryptor``, the sink ``files.download``
writes to), so neither holds the file in memory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import md5, sha1
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar, cast

import anyio

from mtlab.client import files
from mtlab.client.errors import RpcError
from mtproto.crypto.dh import check_dh_params, check_dh_value, dh_value_ok
from mtproto.crypto.ige import ige256_decrypt, ige256_encrypt
from mtproto.crypto.message import decrypt_message, encrypt_message
from mtproto.errors import RemoteProtocolError
from mtproto.tl import api, secret
from mtproto.tl.runtime import Reader, TLFunction, TLObject

log = logging.getLogger("mtlab.client.secret")

R = TypeVar("R")
RandBytes = Callable[[int], bytes]

#: The end-to-end layer this client speaks (decryptedMessage#91cc4674 is layer 73's).
SECRET_LAYER = 73
DH_SIZE = 256
MIN_RANDOM_BYTES = 15
PADDING_MIN, PADDING_MAX = 12, 1024

WAITING, REQUESTED, ACTIVE, CLOSED = "waiting", "requested", "active", "closed"

BLOCK = 16  # AES's block
FILE_KEY_SIZE = 32  # a file's key and its iv: "2 random 256-bit numbers"
#: What a file is encrypted or decrypted by at a time (whole blocks): the memory a file in transit costs here.
FILE_CHUNK = 1024 * 1024
#: decryptedMessageMediaDocument's size is an int up to layer 143 (this client speaks 73).
FILE_SIZE_MAX = 2**31 - 1
#: The media a file's message carries: its key, iv and real size.
FileMedia = secret.types.DecryptedMessageMediaDocument | secret.types.DecryptedMessageMediaPhoto


class Invoker(Protocol):
    """What ``SecretChats`` needs of a client: ``mtlab.client.Client`` is one."""

    def invoke(self, query: TLFunction[R]) -> Awaitable[R]: ...


class SecretChatError(Exception):
    """A message or chat the peer (or someone between) got wrong: dropped, or the chat aborted."""


# -- the pure part: keys, sealing, opening, sequence numbers ---------------------------------------------------


def key_fingerprint(key: bytes) -> int:
    """The 64 lower-order bits of SHA1(key), i.e. its last 8 bytes, as a signed little-endian long."""
    return int.from_bytes(sha1(key).digest()[-8:], "little", signed=True)


def mix_secret(own: bytes, server_random: bytes) -> int:
    """The DH secret: the client's 256 random bytes XOR the server's (end-to-end: "Sending a Request")."""
    if len(own) != DH_SIZE or len(server_random) != DH_SIZE:
        raise ValueError(f"need {DH_SIZE} random bytes from each side")
    return int.from_bytes(bytes(a ^ b for a, b in zip(own, server_random, strict=True)), "big")


def padding_length(body: int, randbytes: RandBytes) -> int:
    """12..1024 bytes that bring 4 + body + padding to a multiple of 16, a random number of blocks above the least."""
    least = PADDING_MIN + (-(4 + body + PADDING_MIN)) % 16
    extra = randbytes(1)[0] % 8 * 16
    return least + extra if least + extra <= PADDING_MAX else least


def seal(key: bytes, layer: secret.types.DecryptedMessageLayer, *, originator: bool, randbytes: RandBytes) -> bytes:
    """The ``data`` of messages.sendEncrypted: key_fingerprint | msg_key | AES-256-IGE(length | layer | padding)."""
    body = layer.to_bytes()
    plaintext = len(body).to_bytes(4, "little") + body + randbytes(padding_length(len(body), randbytes))
    return encrypt_message(key, plaintext, from_client=originator)


def open_sealed(key: bytes, data: bytes, *, originator: bool) -> secret.types.DecryptedMessageLayer:
    """The layer inside ``data`` sent by the originator (``originator=True``) or the other side, or
    ``SecretChatError`` whatever is wrong: fingerprint, msg_key, length, padding, the TL inside."""
    try:
        plaintext = decrypt_message(key, data, from_client=originator)
    except RemoteProtocolError as exc:
        raise SecretChatError(str(exc)) from None
    length = int.from_bytes(plaintext[:4], "little")
    padding = len(plaintext) - 4 - length
    if length % 4 or not PADDING_MIN <= padding <= PADDING_MAX:
        raise SecretChatError(f"length {length} leaves {padding} bytes of padding")
    reader = Reader(plaintext[4:4 + length])
    try:
        layer = reader.read_object()
    except Exception as exc:  # any malformed TL: the message is not one
        raise SecretChatError(f"not TL: {exc}") from None
    if reader.remaining() or not isinstance(layer, secret.types.DecryptedMessageLayer):
        raise SecretChatError(f"not one decryptedMessageLayer ({type(layer).__name__})")
    if len(layer.random_bytes) < MIN_RANDOM_BYTES:
        raise SecretChatError(f"only {len(layer.random_bytes)} random bytes")
    return layer


# -- files: the key fingerprint, and AES-256-IGE a chunk at a time ----------------------------------------------


def file_key_fingerprint(key: bytes, iv: bytes) -> int:
    """A file's 32-bit key fingerprint (end-to-end, "Sending encrypted files"): digest = md5(key + iv), then
    digest[0:4] XOR digest[4:8], read as TL reads an int (little-endian, signed)."""
    digest = md5(key + iv).digest()
    return int.from_bytes(bytes(a ^ b for a, b in zip(digest[:4], digest[4:8], strict=True)), "little", signed=True)


def _read_up_to(source: BinaryIO, n: int) -> bytes:
    """``n`` bytes of ``source``, fewer only at its end (a pipe or a socket may hand over less per read)."""
    pieces: list[bytes] = []
    got = 0
    while got < n:
        piece = source.read(n - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def encrypt_file(source: BinaryIO, out: BinaryIO, key: bytes, iv: bytes, randbytes: RandBytes) -> int:
    """Write AES-256-IGE(``source`` + random padding to whole blocks) to ``out``, ``FILE_CHUNK`` bytes at a time;
    the size of ``source``. Each chunk goes on from the iv the previous one ended with, so the chunks make one IGE
    stream, identical to encrypting the whole file at once. Blocking: run it in a worker thread."""
    chain, size = iv, 0
    while True:
        chunk = _read_up_to(source, FILE_CHUNK)
        size += len(chunk)
        last = len(chunk) < FILE_CHUNK
        if last:
            chunk += randbytes(-len(chunk) % BLOCK)
        if chunk:
            encrypted = ige256_encrypt(chunk, key, chain)
            chain = encrypted[-BLOCK:] + chunk[-BLOCK:]  # y_n and x_n: the iv of the next chunk
            out.write(encrypted)
        if last:
            return size


class FileDecryptor:
    """The sink ``files.download`` writes a secret chat's file into: ciphertext in (in order, pieces of any size),
    the plaintext out to ``out``, cut at ``size`` (the padding never reaches it). Holds less than a block between
    writes. ``finish`` says whether exactly the whole file came."""

    def __init__(self, out: BinaryIO, key: bytes, iv: bytes, size: int) -> None:
        self.out, self.key, self.chain, self.left = out, key, iv, size
        self.pending = b""  # the start of a block the next write completes
        self.received = 0

    def write(self, data: bytes) -> int:
        self.received += len(data)
        buffered = self.pending + bytes(data)
        whole = len(buffered) - len(buffered) % BLOCK
        self.pending = buffered[whole:]
        if whole:
            block = buffered[:whole]
            plain = ige256_decrypt(block, self.key, self.chain)
            self.chain = block[-BLOCK:] + plain[-BLOCK:]
            kept = plain[:self.left]
            self.left -= len(kept)
            self.out.write(kept)
        return len(data)

    def finish(self, expected: int) -> None:
        """Raises SecretChatError unless ``expected`` bytes of whole blocks came and they covered the size."""
        if self.received != expected or self.pending or self.left:
            raise SecretChatError(f"the file came as {self.received} bytes, {expected} expected: cut short or "
                                  "not the file the message names")


def file_problem(file: api.types.TypeEncryptedFile | None, media: FileMedia) -> str | None:
    """Why a received file cannot be the one the message describes (None: it can). The envelope's encryptedFile
    is the server's word and the media's key, iv and size are the sender's, encrypted: a fingerprint that differs
    means another file was put next to the message."""
    if not isinstance(file, api.types.EncryptedFile):
        return "a file message without a file"
    if len(media.key) != FILE_KEY_SIZE or len(media.iv) != FILE_KEY_SIZE:
        return "the file's key or iv is not 32 bytes"
    if file_key_fingerprint(media.key, media.iv) != file.key_fingerprint:
        return "the file's key fingerprint does not match its key: not the file that was sent"
    if file.size % BLOCK or not 0 <= media.size <= file.size:
        return f"a file of {file.size} bytes cannot hold {media.size} bytes encrypted"
    return None


async def download_file(invoke: files.Invoke, file: api.types.TypeEncryptedFile, media: FileMedia, out: BinaryIO, *,
                        workers: int = 4) -> int:
    """Download a secret chat's file (upload.getFile with inputEncryptedFileLocation), decrypt it as it arrives and
    write the plaintext to ``out``: its size. SecretChatError when the file is not the one ``media`` describes
    (checked before a byte is read, and again at the end)."""
    problem = file_problem(file, media)
    if problem is not None or not isinstance(file, api.types.EncryptedFile):
        raise SecretChatError(problem or "no file")
    sink = FileDecryptor(out, media.key, media.iv, media.size)
    where = api.types.InputEncryptedFileLocation(id=file.id, access_hash=file.access_hash)
    # files.download only writes to its sink, in order: the decryptor is all of BinaryIO it needs.
    received = await files.download(invoke, where, cast(BinaryIO, sink), workers=workers)
    sink.finish(file.size)
    if received != file.size:
        raise SecretChatError(f"the download gave {received} bytes, {file.size} expected")
    return media.size


@dataclass
class SecretChat:
    """One chat on this device. ``out_raw``/``in_raw``: the raw seq_no counters (seq_no page), messages sent and
    received so far."""

    id: int
    access_hash: int
    peer_id: int
    originator: bool
    state: str
    date: int = 0
    key: bytes | None = field(default=None, repr=False)
    fingerprint: int | None = None
    a: int | None = field(default=None, repr=False)  # the requester's secret until the peer accepts
    g_a: bytes | None = field(default=None, repr=False)  # a request's g_a until this device accepts
    out_raw: int = 0
    in_raw: int = 0
    peer_layer: int | None = None

    @property
    def input(self) -> api.types.InputEncryptedChat:
        return api.types.InputEncryptedChat(chat_id=self.id, access_hash=self.access_hash)

    def next_seq(self) -> tuple[int, int]:
        """(in_seq_no, out_seq_no) for the next message sent: 2*raw + x, x by who began the chat (seq_no page)."""
        x_in, x_out = (0, 1) if self.originator else (1, 0)
        return 2 * self.in_raw + x_in, 2 * self.out_raw + x_out

    def check_seq(self, layer: secret.types.DecryptedMessageLayer) -> bool:
        """Whether a received message is the next one (True), a repeat (False); raises on a gap or bad parity."""
        peer_x_in, peer_x_out = (1, 0) if self.originator else (0, 1)
        if layer.in_seq_no % 2 != peer_x_in or layer.out_seq_no % 2 != peer_x_out:
            raise SecretChatError("seq_no parity is wrong: a mirrored or forged message")
        if (layer.in_seq_no - peer_x_in) // 2 > self.out_raw:
            raise SecretChatError("the peer claims to have received messages never sent")
        raw = (layer.out_seq_no - peer_x_out) // 2
        if raw < self.in_raw:
            return False
        if raw > self.in_raw:
            raise SecretChatError(f"gap: message {raw} arrived, {self.in_raw} expected")
        return True


# -- events ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequested:
    chat: SecretChat


@dataclass(frozen=True)
class ChatReady:
    chat: SecretChat


@dataclass(frozen=True)
class ChatClosed:
    chat: SecretChat
    reason: str


@dataclass(frozen=True)
class Message:
    chat: SecretChat
    text: str
    random_id: int
    date: int


@dataclass(frozen=True)
class FileMessage:
    """A file arrived (checked against its key fingerprint): ``SecretChats.download`` fetches and decrypts it."""

    chat: SecretChat
    caption: str
    random_id: int
    date: int
    file: api.types.EncryptedFile
    media: FileMedia

    @property
    def name(self) -> str:
        """The name the sender gave (a documentAttributeFilename), or ""."""
        if isinstance(self.media, secret.types.DecryptedMessageMediaDocument):
            for a in self.media.attributes:
                if isinstance(a, api.types.DocumentAttributeFilename):
                    return a.file_name
        return ""

    @property
    def mime_type(self) -> str:
        if isinstance(self.media, secret.types.DecryptedMessageMediaDocument):
            return self.media.mime_type
        return "image/jpeg"  # decryptedMessageMediaPhoto: a JPEG, as clients send photos

    @property
    def size(self) -> int:
        return self.media.size


@dataclass(frozen=True)
class SentFile:
    """A file sent: its message's random_id, the encryptedFile the server stored (``send_stored_file`` sends it
    again, as inputEncryptedFile, without uploading), and the media that reads it (key, iv, size)."""

    random_id: int
    file: api.types.EncryptedFile
    media: FileMedia


@dataclass(frozen=True)
class Action:
    chat: SecretChat
    action: secret.types.TypeDecryptedMessageAction


@dataclass(frozen=True)
class Dropped:
    chat_id: int
    reason: str


Event = ChatRequested | ChatReady | ChatClosed | Message | FileMessage | Action | Dropped


# -- the engine -----------------------------------------------------------------------------------------------


class SecretChats:
    """This device's secret chats: open, accept, send, close, and whatever the server's updates say."""

    def __init__(self, client: Invoker, *, randbytes: RandBytes = os.urandom) -> None:
        self.client = client
        self.randbytes = randbytes
        self.chats: dict[int, SecretChat] = {}
        self.qts = 0  # the newest qts handled (and acknowledged with messages.receivedQueue)
        self._dh: tuple[int, int, int] | None = None  # (version, g, p) checked

    # -- what the user does -------------------------------------------------------------------------------

    async def request(self, user: api.types.InputUser) -> SecretChat:
        """Ask ``user`` for a secret chat: ``ChatReady`` comes once one of their devices accepts."""
        g, p, a = await self._secret()
        g_a = pow(g, a, p)
        random_id = int.from_bytes(self.randbytes(4), "little", signed=True) or 1
        chat = await self.client.invoke(api.functions.messages.RequestEncryption(
            user_id=user, random_id=random_id, g_a=g_a.to_bytes(DH_SIZE, "big")))
        if not isinstance(chat, api.types.EncryptedChatWaiting):
            raise SecretChatError(f"requestEncryption answered {type(chat).__name__}")
        c = SecretChat(id=chat.id, access_hash=chat.access_hash, peer_id=chat.participant_id, originator=True,
                       state=WAITING, date=chat.date, a=a)
        self.chats[c.id] = c
        return c

    async def accept(self, chat_id: int) -> SecretChat:
        """Accept a request this device was told of: the chat is bound to this device."""
        c = self.chats.get(chat_id)
        if c is None or c.state != REQUESTED or c.g_a is None:
            raise SecretChatError(f"no request {chat_id} to accept")
        g, p, b = await self._secret()
        g_a = int.from_bytes(c.g_a, "big")
        check_dh_value(g_a, p)
        key = pow(g_a, b, p).to_bytes(DH_SIZE, "big")
        g_b = pow(g, b, p).to_bytes(DH_SIZE, "big")
        fingerprint = key_fingerprint(key)
        answer = await self.client.invoke(api.functions.messages.AcceptEncryption(
            peer=c.input, g_b=g_b, key_fingerprint=fingerprint))
        if not isinstance(answer, api.types.EncryptedChat):
            raise SecretChatError(f"acceptEncryption answered {type(answer).__name__}")
        c.key, c.fingerprint, c.g_a, c.state = key, fingerprint, None, ACTIVE
        await self._notify_layer(c)
        return c

    async def send(self, chat_id: int, text: str) -> int:
        """Send ``text``; returns its random_id."""
        c = self._active(chat_id)
        random_id = int.from_bytes(self.randbytes(8), "little", signed=True)
        await self._send(c, secret.types.DecryptedMessage(random_id=random_id, ttl=0, message=text), random_id)
        return random_id

    async def send_file(self, chat_id: int, source: bytes | Path | BinaryIO, *, name: str = "",
                        mime_type: str = "application/octet-stream", caption: str = "",
                        workers: int = 4) -> SentFile:
        """Send a file (``source``: bytes, a path, or a binary file at its start) to the chat: encrypted under a
        fresh key and iv into a temporary file, uploaded, then messages.sendEncryptedFile. ``name`` (default: the
        path's) travels inside the encryption, as a documentAttributeFilename; the server sees only sizes."""
        c = self._active(chat_id)
        if isinstance(source, Path):
            name = name or source.name
        key, iv = self.randbytes(FILE_KEY_SIZE), self.randbytes(FILE_KEY_SIZE)
        fingerprint = file_key_fingerprint(key, iv)
        with contextlib.ExitStack() as stack:
            if isinstance(source, bytes):
                plain: BinaryIO = io.BytesIO(source)
            elif isinstance(source, Path):
                plain = stack.enter_context(source.open("rb"))
            else:
                plain = source
            ciphertext = stack.enter_context(tempfile.TemporaryFile())
            size = await anyio.to_thread.run_sync(encrypt_file, plain, ciphertext, key, iv, self.randbytes)
            if size == 0:
                raise SecretChatError("nothing to send: the file is empty")
            if size > FILE_SIZE_MAX:
                raise SecretChatError(f"{size} bytes: more than a layer-{SECRET_LAYER} file's size can say")
            uploaded = await files.upload(self.client.invoke, ciphertext, workers=workers)
        input_file: api.types.TypeInputEncryptedFile
        if isinstance(uploaded, api.types.InputFileBig):
            input_file = api.types.InputEncryptedFileBigUploaded(id=uploaded.id, parts=uploaded.parts,
                                                                 key_fingerprint=fingerprint)
        else:
            input_file = api.types.InputEncryptedFileUploaded(id=uploaded.id, parts=uploaded.parts,
                                                              md5_checksum=uploaded.md5_checksum,
                                                              key_fingerprint=fingerprint)
        attributes: list[TLObject] = [api.types.DocumentAttributeFilename(file_name=name)] if name else []
        media = secret.types.DecryptedMessageMediaDocument(thumb=b"", thumb_w=0, thumb_h=0, mime_type=mime_type,
                                                           size=size, key=key, iv=iv, attributes=attributes,
                                                           caption="")
        return await self._send_file(c, input_file, media, caption)

    async def send_stored_file(self, chat_id: int, file: api.types.EncryptedFile, media: FileMedia, *,
                               caption: str = "") -> SentFile:
        """Send a file the server stores already (one sent or received before, or messages.uploadEncryptedFile's)
        to the chat without uploading it again: inputEncryptedFile(id, access_hash), with ``media`` (its key, iv
        and size: the same ciphertext needs the same key)."""
        ref = api.types.InputEncryptedFile(id=file.id, access_hash=file.access_hash)
        return await self._send_file(self._active(chat_id), ref, media, caption)

    async def download(self, message: FileMessage, out: BinaryIO, *, workers: int = 4) -> int:
        """The plaintext of a file that arrived, written to ``out``: its size (SecretChatError if it is not the
        file the message describes)."""
        return await download_file(self.client.invoke, message.file, message.media, out, workers=workers)

    async def close(self, chat_id: int, *, delete_history: bool = False) -> None:
        c = self.chats.get(chat_id)
        if c is None or c.state == CLOSED:
            return
        self._forget(c)
        await self.client.invoke(api.functions.messages.DiscardEncryption(chat_id=chat_id,
                                                                          delete_history=delete_history))

    # -- what the server says -----------------------------------------------------------------------------

    async def handle(self, update: Any) -> list[Event]:
        """One update; anything but a secret chat's is ignored. Acknowledges an encrypted message's qts."""
        if isinstance(update, api.types.UpdateEncryption):
            return await self._chat_changed(update.chat)
        if isinstance(update, api.types.UpdateNewEncryptedMessage):
            if 0 < update.qts <= self.qts:
                return []  # seen already (a push and a difference both brought it)
            events = await self._message(update.message)
            if update.qts > self.qts:
                self.qts = update.qts
                await self.client.invoke(api.functions.messages.ReceivedQueue(max_qts=self.qts))
            return events
        return []

    async def catch_up(self) -> list[Event]:
        """What this device's queue holds after ``self.qts`` (updates.getDifference), handled in order."""
        events: list[Event] = []
        while True:
            state = await self.client.invoke(api.functions.updates.GetState())
            diff = await self.client.invoke(api.functions.updates.GetDifference(
                pts=state.pts, qts=self.qts, date=state.date))
            if not isinstance(diff, (api.types.updates.Difference, api.types.updates.DifferenceSlice)):
                return events
            reached = diff.state if isinstance(diff, api.types.updates.Difference) else diff.intermediate_state
            for u in diff.other_updates:  # updateEncryption first: a chat is ready before its messages
                if isinstance(u, api.types.UpdateEncryption):
                    events += await self._chat_changed(u.chat)
            for m in diff.new_encrypted_messages:
                events += await self._message(m)
            acknowledge = reached.qts >= self.qts
            self.qts = max(self.qts, reached.qts)
            if acknowledge:
                await self.client.invoke(api.functions.messages.ReceivedQueue(max_qts=self.qts))
            if isinstance(diff, api.types.updates.Difference):
                return events

    # -- inside -------------------------------------------------------------------------------------------

    async def _secret(self) -> tuple[int, int, int]:
        """(g, p, a fresh secret): getDhConfig, p and g checked the first time they are seen."""
        version = self._dh[0] if self._dh is not None else 0
        config = await self.client.invoke(api.functions.messages.GetDhConfig(version=version, random_length=DH_SIZE))
        if isinstance(config, api.types.messages.DhConfig):
            p = int.from_bytes(config.p, "big")
            check_dh_params(config.g, p)  # a safe 2048-bit prime and a generator of its big subgroup
            self._dh = (config.version, config.g, p)
        if self._dh is None:
            raise SecretChatError("dhConfigNotModified before any dhConfig")
        _, g, p = self._dh
        while True:
            a = mix_secret(self.randbytes(DH_SIZE), config.random)
            if dh_value_ok(pow(g, a, p), p):  # the peer would refuse anything else; astronomically rare
                return g, p, a

    async def _chat_changed(self, chat: api.types.TypeEncryptedChat) -> list[Event]:
        c = self.chats.get(chat.id)
        if isinstance(chat, api.types.EncryptedChatRequested):
            if c is not None:
                return []
            c = SecretChat(id=chat.id, access_hash=chat.access_hash, peer_id=chat.admin_id, originator=False,
                           state=REQUESTED, date=chat.date, g_a=chat.g_a)
            self.chats[c.id] = c
            return [ChatRequested(c)]
        if isinstance(chat, api.types.EncryptedChatDiscarded):
            if c is None or c.state == CLOSED:
                return []
            self._forget(c)
            return [ChatClosed(c, "history deleted" if chat.history_deleted else "closed")]
        if isinstance(chat, api.types.EncryptedChat) and c is not None and c.state == WAITING and c.a is not None:
            _, _, p = self._dh or (0, 0, 0)
            try:
                g_b = int.from_bytes(chat.g_a_or_b, "big")
                check_dh_value(g_b, p)
            except RemoteProtocolError:
                return await self._abort(c, "the peer's g_b is out of range")
            key = pow(g_b, c.a, p).to_bytes(DH_SIZE, "big")
            c.a = None
            if key_fingerprint(key) != chat.key_fingerprint:
                return await self._abort(c, "key fingerprint mismatch: the keys differ")
            c.key, c.fingerprint, c.state = key, chat.key_fingerprint, ACTIVE
            await self._notify_layer(c)
            return [ChatReady(c)]
        return []

    async def _message(self, m: api.types.TypeEncryptedMessage) -> list[Event]:
        c = self.chats.get(m.chat_id)
        if c is None or c.state != ACTIVE or c.key is None:
            return [Dropped(m.chat_id, "no such active chat on this device")]
        try:
            layer = open_sealed(c.key, m.bytes, originator=not c.originator)
        except SecretChatError as exc:
            log.info("secret chat %d: dropped a message: %s", c.id, exc)
            return [Dropped(c.id, str(exc))]
        try:
            fresh = c.check_seq(layer)
        except SecretChatError as exc:
            return await self._abort(c, str(exc))
        if not fresh:
            return [Dropped(c.id, "a repeat")]
        c.in_raw += 1
        inner = layer.message
        if isinstance(inner, secret.types.DecryptedMessage):
            if inner.random_id != m.random_id:
                return await self._abort(c, "random_id differs inside and outside")
            media = inner.media
            if isinstance(media, (secret.types.DecryptedMessageMediaDocument, secret.types.DecryptedMessageMediaPhoto)):
                file = m.file if isinstance(m, api.types.EncryptedMessage) else None
                problem = file_problem(file, media)
                if problem is not None or not isinstance(file, api.types.EncryptedFile):
                    log.info("secret chat %d: dropped a file: %s", c.id, problem)
                    return [Dropped(c.id, problem or "no file")]
                return [FileMessage(c, inner.message or media.caption, inner.random_id, m.date, file, media)]
            return [Message(c, inner.message, inner.random_id, m.date)]
        if isinstance(inner.action, secret.types.DecryptedMessageActionNotifyLayer):
            c.peer_layer = inner.action.layer
        return [Action(c, inner.action)]

    async def _send_file(self, c: SecretChat, input_file: api.types.TypeInputEncryptedFile, media: FileMedia,
                         caption: str) -> SentFile:
        random_id = int.from_bytes(self.randbytes(8), "little", signed=True)
        message = secret.types.DecryptedMessage(random_id=random_id, ttl=0, message=caption, media=media)
        sent = await self._send(c, message, random_id, file=input_file)
        if not isinstance(sent, api.types.messages.SentEncryptedFile) or \
                not isinstance(sent.file, api.types.EncryptedFile):
            raise SecretChatError(f"sendEncryptedFile answered {type(sent).__name__} without a file")
        return SentFile(random_id, sent.file, media)

    async def _send(self, c: SecretChat, message: secret.types.TypeDecryptedMessage, random_id: int, *,
                    file: api.types.TypeInputEncryptedFile | None = None
                    ) -> api.types.messages.TypeSentEncryptedMessage:
        if c.key is None:
            raise SecretChatError(f"secret chat {c.id} has no key")
        in_seq, out_seq = c.next_seq()
        layer = secret.types.DecryptedMessageLayer(
            random_bytes=self.randbytes(16), layer=min(SECRET_LAYER, c.peer_layer or SECRET_LAYER),
            in_seq_no=in_seq, out_seq_no=out_seq, message=message)
        data = seal(c.key, layer, originator=c.originator, randbytes=self.randbytes)
        c.out_raw += 1  # sent or not, this seq_no is used: the peer would see a repeat otherwise
        query: TLFunction[api.types.messages.TypeSentEncryptedMessage]
        if file is not None:
            query = api.functions.messages.SendEncryptedFile(peer=c.input, random_id=random_id, data=data, file=file)
        elif isinstance(message, secret.types.DecryptedMessageService):
            query = api.functions.messages.SendEncryptedService(peer=c.input, random_id=random_id, data=data)
        else:
            query = api.functions.messages.SendEncrypted(peer=c.input, random_id=random_id, data=data)
        try:
            return await self.client.invoke(query)
        except RpcError as exc:
            # ...unless the server refused it (a 400 comes before the message is queued, and a refused file is
            # likelier than a refused text: a quota, a checksum): the next message takes this seq_no.
            if exc.code == 400:
                c.out_raw -= 1
            raise

    async def _notify_layer(self, c: SecretChat) -> None:
        random_id = int.from_bytes(self.randbytes(8), "little", signed=True)
        action = secret.types.DecryptedMessageActionNotifyLayer(layer=SECRET_LAYER)
        await self._send(c, secret.types.DecryptedMessageService(random_id=random_id, action=action), random_id)

    async def _abort(self, c: SecretChat, reason: str) -> list[Event]:
        """The chat cannot be trusted any more: forget the key and tell the server to discard it."""
        log.warning("secret chat %d aborted: %s", c.id, reason)
        self._forget(c)
        await self.client.invoke(api.functions.messages.DiscardEncryption(chat_id=c.id))
        return [ChatClosed(c, reason)]

    def _active(self, chat_id: int) -> SecretChat:
        c = self.chats.get(chat_id)
        if c is None or c.state != ACTIVE:
            raise SecretChatError(f"secret chat {chat_id} is not open")
        return c

    @staticmethod
    def _forget(c: SecretChat) -> None:
        c.state, c.key, c.a, c.g_a = CLOSED, None, None, None
