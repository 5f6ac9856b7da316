"""Perfect forward secrecy: binding a temporary auth key to a permanent one, both sides, sans-IO.

core.telegram.org/api/pfs and core.telegram.org/method/auth.bindTempAuthKey. A client that wants PFS never sends
anything under its permanent key: it creates a temporary key (``p_q_inner_data_temp_dc`` with ``expires_in``) and,
over that key, calls ``auth.bindTempAuthKey perm_auth_key_id nonce expires_at encrypted_message``. Recording a
past conversation and later stealing the permanent key then reveals nothing: the traffic was under a key that
both sides have forgotten.

``encrypted_message`` proves that the caller holds the permanent key. It is ``bind_auth_key_inner`` sealed "in
the usual way, but with MTProto v1" under the *permanent* key::

    perm_auth_key_id (8) | msg_key (16) | AES-256-IGE(plaintext + padding)
    plaintext = random (16) | msg_id (8) | seq_no = 0 (4) | length = 40 (4) | bind_auth_key_inner (40)
    bind_auth_key_inner = nonce | temp_auth_key_id | perm_auth_key_id | temp_session_id | expires_at

The 16 random bytes stand where salt and session_id would be; msg_key = SHA1(plaintext)[4:20], computed before
the 0..15 padding bytes are appended; key and iv come from MTProto 1.0's SHA1 KDF in the client-to-server
direction (``kdf.msg_key_v1``, ``kdf.message_key_iv_v1``). ``msg_id`` is the msg_id of the very message that
carries the call and ``temp_session_id`` its session, so a binding message cannot be replayed in another message,
session or key.

- ``bind_message`` (client): the encrypted_message for a call that will be sent as ``msg_id``; ``bind_query``
  wraps it in the auth.bindTempAuthKey query. A client that resends the call under a new msg_id (after
  bad_server_salt, say) must build it again for that id.
- ``open_bind_message`` (server): decrypts under the permanent key and checks every field against the query and
  the message that carried it. Every failure raises ``BindMessageInvalid``, whose reason is for the server's
  logs: the client is answered ``400 ENCRYPTED_MESSAGE_INVALID`` whatever the cause.

Who may bind what, and what a binding means afterwards, is the auth service's business
(``services/auth/handlers.py``).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable

from mtproto.crypto import kdf
from mtproto.crypto.ige import ige256_decrypt, ige256_encrypt
from mtproto.errors import RemoteProtocolError
from mtproto.session import AuthKey
from mtproto.tl import api, mt
from mtproto.tl.runtime import TLDecodeError

__all__ = ["BindMessageInvalid", "bind_message", "bind_query", "open_bind_message"]

RandBytes = Callable[[int], bytes]

_HEADER = struct.Struct("<16sqii")  # random, msg_id, seq_no, length
INNER_SIZE = 40  # bind_auth_key_inner, boxed: constructor id, four longs, one int
PLAINTEXT_SIZE = _HEADER.size + INNER_SIZE  # 72
ENCRYPTED_SIZE = 8 + 16 + PLAINTEXT_SIZE + (-PLAINTEXT_SIZE % 16)  # 104: one size only, the inner one is fixed


class BindMessageInvalid(RemoteProtocolError):
    """The binding message does not open under the permanent key, or says something other than the call.

    The peer misbehaved, but in the payload of a well-formed call: the caller answers that call with
    ``400 ENCRYPTED_MESSAGE_INVALID`` and keeps the connection (``transport_error`` is None).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid binding message: {reason}", None)
        self.reason = reason


def bind_message(perm_key: AuthKey, *, nonce: int, temp_auth_key_id: int, temp_session_id: int, expires_at: int,
                 msg_id: int, randbytes: RandBytes) -> bytes:
    """The ``encrypted_message`` of auth.bindTempAuthKey, for a call sent as ``msg_id`` in ``temp_session_id``."""
    inner = mt.types.BindAuthKeyInner(nonce=nonce, temp_auth_key_id=temp_auth_key_id,
                                      perm_auth_key_id=perm_key.id_int, temp_session_id=temp_session_id,
                                      expires_at=expires_at).to_bytes()
    plaintext = _HEADER.pack(randbytes(16), msg_id, 0, len(inner)) + inner
    key_of_message = kdf.msg_key_v1(plaintext)
    aes_key, aes_iv = kdf.message_key_iv_v1(perm_key.key, key_of_message, from_client=True)
    padded = plaintext + randbytes(-len(plaintext) % 16)
    return perm_key.id + key_of_message + ige256_encrypt(padded, aes_key, aes_iv)


def bind_query(perm_key: AuthKey, *, temp_auth_key_id: int, temp_session_id: int, expires_at: int, msg_id: int,
               randbytes: RandBytes) -> api.functions.auth.BindTempAuthKey:
    """The whole auth.bindTempAuthKey query (a fresh random nonce) for a call sent as ``msg_id``."""
    nonce: int = struct.unpack("<q", randbytes(8))[0]
    encrypted = bind_message(perm_key, nonce=nonce, temp_auth_key_id=temp_auth_key_id,
                             temp_session_id=temp_session_id, expires_at=expires_at, msg_id=msg_id,
                             randbytes=randbytes)
    return api.functions.auth.BindTempAuthKey(perm_auth_key_id=perm_key.id_int, nonce=nonce, expires_at=expires_at,
                                              encrypted_message=encrypted)


def open_bind_message(perm_key: AuthKey, query: api.functions.auth.BindTempAuthKey, *, temp_auth_key_id: int,
                      temp_session_id: int, msg_id: int) -> mt.types.BindAuthKeyInner:
    """Decrypt ``query.encrypted_message`` under ``perm_key`` and check it against the call; raises BindMessageInvalid.

    ``temp_auth_key_id``, ``temp_session_id`` and ``msg_id`` describe the message the query arrived in (the key
    it was encrypted with, its session, its msg_id), as the server saw them, never as the client claims them.

    Checked: the size and the permanent key's id (in clear), then msg_key against the decrypted plaintext
    (constant time), then seq_no 0, length 40 and the constructor, then every field of bind_auth_key_inner
    against the query (perm_auth_key_id, nonce, expires_at) and against the carrying message (temp_auth_key_id,
    temp_session_id, and the envelope's msg_id).
    """
    data = query.encrypted_message
    if len(data) != ENCRYPTED_SIZE:
        raise BindMessageInvalid(f"{len(data)} bytes, not {ENCRYPTED_SIZE}")
    if query.perm_auth_key_id != perm_key.id_int or not hmac.compare_digest(data[:8], perm_key.id):
        raise BindMessageInvalid("not encrypted with the permanent key the query names")
    claimed = data[8:24]
    aes_key, aes_iv = kdf.message_key_iv_v1(perm_key.key, claimed, from_client=True)
    plaintext = ige256_decrypt(data[24:], aes_key, aes_iv)
    # The length is fixed, so msg_key is checked over the bytes it must cover before any field is believed.
    if not hmac.compare_digest(claimed, kdf.msg_key_v1(plaintext[:PLAINTEXT_SIZE])):
        raise BindMessageInvalid("msg_key does not match the decrypted plaintext")
    _, inner_msg_id, seq_no, length = _HEADER.unpack_from(plaintext)
    if seq_no != 0 or length != INNER_SIZE:
        raise BindMessageInvalid(f"seq_no {seq_no} and length {length}, not 0 and {INNER_SIZE}")
    body = plaintext[_HEADER.size : PLAINTEXT_SIZE]
    if int.from_bytes(body[:4], "little") != mt.types.BindAuthKeyInner.CONSTRUCTOR_ID:
        raise BindMessageInvalid(f"body is 0x{int.from_bytes(body[:4], 'little'):08x}, not bind_auth_key_inner")
    try:
        inner = mt.types.BindAuthKeyInner.from_bytes(body)
    except TLDecodeError as exc:  # cannot happen with the size and constructor checked; say so if it does
        raise BindMessageInvalid(f"undecodable bind_auth_key_inner: {exc}") from None
    mismatches = [
        name for name, got, want in (
            ("msg_id", inner_msg_id, msg_id),
            ("temp_auth_key_id", inner.temp_auth_key_id, temp_auth_key_id),
            ("temp_session_id", inner.temp_session_id, temp_session_id),
            ("perm_auth_key_id", inner.perm_auth_key_id, query.perm_auth_key_id),
            ("nonce", inner.nonce, query.nonce),
            ("expires_at", inner.expires_at, query.expires_at),
        ) if got != want
    ]
    if mismatches:
        raise BindMessageInvalid(f"{', '.join(mismatches)} differ from the call's")
    return inner
