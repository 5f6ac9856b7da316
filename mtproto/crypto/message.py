"""The MTProto 2.0 encrypted-message envelope: ``auth_key_id (8) | msg_key (16) | AES-256-IGE(plaintext)``.

Spec: core.telegram.org/mtproto/description ("Protocol description", "Defining AES Key and Initialization
Vector") for the layout and keys; core.telegram.org/mtproto/security_guidelines ("Checking SHA256 hash value
of msg_key") for what the receiver must verify.

This layer owns only the cryptography. The plaintext it takes and returns is the whole decrypted body
``salt | session_id | msg_id | seq_no | length | body | padding``: choosing the 12..1024 padding bytes and
checking the inner fields (length, padding size, session_id, msg_id) belong to the session layer, which must run
those checks only after :func:`decrypt_message` has accepted the msg_key, and fail them the same way.
"""

from __future__ import annotations

import hmac

from mtproto.crypto.ige import ige256_decrypt, ige256_encrypt
from mtproto.crypto.kdf import auth_key_id, message_key_iv, msg_key
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

__all__ = ["decrypt_message", "encrypt_message"]

HEADER_SIZE = 24  # auth_key_id (8) + msg_key (16)


def encrypt_message(auth_key: bytes, plaintext_with_padding: bytes, *, from_client: bool) -> bytes:
    """Seal one message: ``auth_key_id + msg_key + AES-256-IGE(plaintext_with_padding)``.

    ``from_client`` is the sender's side (True on a client, False on the server). The plaintext must already
    carry its padding and be a non-empty multiple of 16 bytes.
    """
    if not plaintext_with_padding or len(plaintext_with_padding) % 16:
        raise LocalProtocolError(
            f"plaintext_with_padding must be a non-empty multiple of 16 bytes, got {len(plaintext_with_padding)}"
        )
    key_of_message = msg_key(auth_key, plaintext_with_padding, from_client=from_client)
    aes_key, aes_iv = message_key_iv(auth_key, key_of_message, from_client=from_client)
    return auth_key_id(auth_key) + key_of_message + ige256_encrypt(plaintext_with_padding, aes_key, aes_iv)


def _reject(reason: str) -> RemoteProtocolError:
    # One class, one code for every cause (security_guidelines: the response to any error before the msg_key
    # check must be the same as to a failed msg_key check). The reason is for the server's own logs only.
    return RemoteProtocolError(f"cannot decrypt message: {reason}", TransportErrorCode.NOT_FOUND)


def decrypt_message(auth_key: bytes, data: bytes, *, from_client: bool) -> bytes:
    """Open one message and return its plaintext_with_padding, or raise the one uniform error.

    ``from_client`` is the sender's side of the message being opened (a server opening a client's message
    passes True). Raises ``RemoteProtocolError`` with ``transport_error == TransportErrorCode.NOT_FOUND``
    (-404) for every failure: too short, not whole blocks, a different auth_key_id, or a msg_key that does not
    match the decrypted plaintext.

    Timing: the checks before decryption look only at bytes that travel in clear (the length and the
    auth_key_id), so failing them early tells the sender nothing it did not already know. The one check that
    depends on secret data, msg_key against the decrypted plaintext, is a constant-time comparison.
    """
    if len(data) < HEADER_SIZE + 16 or (len(data) - HEADER_SIZE) % 16:
        raise _reject(f"{len(data)} bytes is not a 24-byte header plus whole 16-byte blocks")
    if not hmac.compare_digest(data[:8], auth_key_id(auth_key)):
        raise _reject("auth_key_id does not match this key")
    claimed = data[8:HEADER_SIZE]
    aes_key, aes_iv = message_key_iv(auth_key, claimed, from_client=from_client)
    plaintext = ige256_decrypt(data[HEADER_SIZE:], aes_key, aes_iv)
    if not hmac.compare_digest(claimed, msg_key(auth_key, plaintext, from_client=from_client)):
        raise _reject("msg_key does not match the decrypted plaintext")
    return plaintext
