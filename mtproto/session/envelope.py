"""The plaintext inside an encrypted message, and the checks made once msg_key has matched.

core.telegram.org/mtproto/description ("Encrypted Message", "Encrypted Message: Decrypted Data"):

    salt (8) | session_id (8) | msg_id (8) | seq_no (4) | message_data_length (4) | message_data | padding

Padding is 12..1024 random bytes that make the whole a multiple of 16. ``seal`` builds it and hands it to
``mtproto.crypto.encrypt_message``; ``open_message`` verifies msg_key first (inside ``decrypt_message``) and only
then the length and padding, failing every check with the same error (core.telegram.org/mtproto/
security_guidelines), so a peer cannot tell which check it broke.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from mtproto.crypto import kdf
from mtproto.crypto.message import decrypt_message, encrypt_message
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

RandBytes = Callable[[int], bytes]

_HEADER = struct.Struct("<qqqii")  # salt, session_id, msg_id, seq_no, length
HEADER_SIZE = _HEADER.size  # 32
MIN_PADDING = 12
MAX_PADDING = 1024


@dataclass(frozen=True, slots=True)
class AuthKey:
    """An auth key with its id computed once (every message on the hot path needs it)."""

    key: bytes
    id: bytes  # 8 bytes, the low 64 bits of SHA1(key), as they prefix each message

    @classmethod
    def from_bytes(cls, key: bytes) -> AuthKey:
        if len(key) != 256:
            raise LocalProtocolError(f"an auth key is 256 bytes, got {len(key)}")
        return cls(key, kdf.auth_key_id(key))

    @property
    def id_int(self) -> int:
        value: int = struct.unpack("<q", self.id)[0]
        return value


@dataclass(frozen=True, slots=True)
class Plain:
    """One decrypted message: the header fields and the TL body."""

    salt: int
    session_id: int
    msg_id: int
    seq_no: int
    body: bytes


def _reject(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"cannot decrypt message: {reason}", TransportErrorCode.NOT_FOUND)


def padding_length(body_length: int) -> int:
    """The fewest padding bytes (at least 12) that make header + body + padding a multiple of 16."""
    return MIN_PADDING + (-(HEADER_SIZE + body_length + MIN_PADDING) % 16)


def seal(key: AuthKey, msg: Plain, randbytes: RandBytes, *, from_client: bool) -> bytes:
    """Encrypt one message: the transport payload ``auth_key_id | msg_key | ciphertext``."""
    body = msg.body
    if len(body) % 4:
        raise LocalProtocolError(f"a message body is a whole number of 4-byte words, got {len(body)} bytes")
    # One join: ``header + body + padding`` would copy a body of up to a megabyte twice.
    plaintext = b"".join((_HEADER.pack(msg.salt, msg.session_id, msg.msg_id, msg.seq_no, len(body)), body,
                          randbytes(padding_length(len(body)))))
    return encrypt_message(key.key, plaintext, from_client=from_client)


def open_message(key: AuthKey, payload: bytes, *, from_client: bool, padded: bool = False) -> Plain:
    """Decrypt and check one message; ``from_client`` is the side that sent it.

    ``padded``: the frame came over the padded intermediate transport, whose random tail the transport cannot
    always strip (mtproto.transport.framing); the encrypted part is the 24-byte header plus whole 16-byte blocks,
    so anything beyond the last whole block is that tail.

    Every failure raises the same ``RemoteProtocolError`` (-404): the caller drops the message and closes.
    """
    if padded and len(payload) > 24:
        payload = payload[: 24 + (len(payload) - 24) // 16 * 16]
    plaintext = decrypt_message(key.key, payload, from_client=from_client)  # msg_key verified first
    if len(plaintext) < HEADER_SIZE + MIN_PADDING:
        raise _reject("shorter than a header and the minimum padding")
    salt, session_id, msg_id, seq_no, length = _HEADER.unpack_from(plaintext)
    padding = len(plaintext) - HEADER_SIZE - length
    if length < 0 or length % 4 or not MIN_PADDING <= padding <= MAX_PADDING:
        raise _reject(f"message_data_length {length} leaves {padding} bytes of padding")
    return Plain(salt, session_id, msg_id, seq_no, plaintext[HEADER_SIZE : HEADER_SIZE + length])
