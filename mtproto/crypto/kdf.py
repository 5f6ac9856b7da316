"""Key derivation: every hash-derived key, IV, identifier and token of MTProto 2.0.

Spec sections, one per function group:

- core.telegram.org/mtproto/description, "Message Key (msg_key)" and "Defining AES Key and Initialization
  Vector": ``msg_key_large``, ``msg_key``, ``message_key_iv``.
- core.telegram.org/mtproto/description, "Key Identifier (auth_key_id)": ``auth_key_id``.
- core.telegram.org/mtproto/auth_key, step 6 (server_DH_params_ok): ``tmp_aes_key_iv``; step 9 (dh_gen_ok and
  friends): ``auth_key_aux_hash``, ``new_nonce_hash``, ``server_salt``.
- core.telegram.org/mtproto/mtproto-transports, "Quick ack": ``quick_ack_token``.
- core.telegram.org/mtproto/description_v1 (MTProto 1.0, deprecated): ``msg_key_v1``, ``message_key_iv_v1``.
  Nothing travels under 1.0 any more except one thing: the binding message of ``auth.bindTempAuthKey``
  (core.telegram.org/method/auth.bindTempAuthKey), which is encrypted "in the usual way, but with MTProto v1"
  under the permanent key (``mtproto/pfs.py``).

"x" below is the direction offset of the spec: 0 for client-to-server messages, 8 for server-to-client. Both
sides derive keys for both directions, so every function takes ``from_client`` (the sender of the message the
key is for) rather than "am I the server".

Hash outputs are byte strings, as on the wire. The spec's "64 lower-order bits of SHA1(s)" means the *last*
8 bytes of the 20-byte digest (auth_key: "if they are part of SHA1, the bytes are not rearranged"), and
"higher-order" means the first ones.
"""

from __future__ import annotations

from hashlib import sha1, sha256

from mtproto.errors import LocalProtocolError

__all__ = [
    "auth_key_aux_hash",
    "auth_key_id",
    "message_key_iv",
    "message_key_iv_v1",
    "msg_key",
    "msg_key_large",
    "msg_key_v1",
    "new_nonce_hash",
    "quick_ack_token",
    "server_salt",
    "tmp_aes_key_iv",
]

AUTH_KEY_SIZE = 256  # a 2048-bit DH result, big-endian, left-padded with zeros


def _x(from_client: bool) -> int:
    return 0 if from_client else 8


def _check_auth_key(auth_key: bytes) -> None:
    # A short key would not fail loudly: the slices below would just come out short and every message would
    # be rejected by the peer. Catch it where the mistake is.
    if len(auth_key) != AUTH_KEY_SIZE:
        raise LocalProtocolError(f"auth_key must be {AUTH_KEY_SIZE} bytes, got {len(auth_key)}")


def msg_key_large(auth_key: bytes, plaintext_with_padding: bytes, *, from_client: bool) -> bytes:
    """SHA256(auth_key[88+x : 120+x] + plaintext_with_padding): 32 bytes, the source of msg_key and quick-ack."""
    _check_auth_key(auth_key)
    x = _x(from_client)
    h = sha256(auth_key[88 + x : 120 + x])
    h.update(plaintext_with_padding)  # not ``key + plaintext``: that would copy a message of up to 1 MiB first
    return h.digest()


def msg_key(auth_key: bytes, plaintext_with_padding: bytes, *, from_client: bool) -> bytes:
    """The 16-byte msg_key: the middle 128 bits, ``msg_key_large[8:24]``."""
    return msg_key_large(auth_key, plaintext_with_padding, from_client=from_client)[8:24]


def message_key_iv(auth_key: bytes, msg_key: bytes, *, from_client: bool) -> tuple[bytes, bytes]:
    """The AES-256-IGE (key, iv) of one encrypted message, from auth_key and its msg_key.

    a = SHA256(msg_key + auth_key[x : x+36]), b = SHA256(auth_key[40+x : 76+x] + msg_key),
    key = a[0:8] + b[8:24] + a[24:32], iv = b[0:8] + a[8:24] + b[24:32].
    """
    _check_auth_key(auth_key)
    if len(msg_key) != 16:
        raise LocalProtocolError(f"msg_key must be 16 bytes, got {len(msg_key)}")
    x = _x(from_client)
    a = sha256(msg_key + auth_key[x : x + 36]).digest()
    b = sha256(auth_key[40 + x : 76 + x] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def msg_key_v1(plaintext: bytes) -> bytes:
    """MTProto 1.0 msg_key: the 128 lower-order bits of SHA1(plaintext), i.e. ``SHA1(plaintext)[4:20]``.

    Unlike 2.0's, it hashes the plaintext *without* its padding and without any part of the auth key (1.0 pads
    after computing it), which is one reason 2.0 replaced it. Used only for auth.bindTempAuthKey.
    """
    return sha1(plaintext).digest()[4:20]


def message_key_iv_v1(auth_key: bytes, msg_key: bytes, *, from_client: bool) -> tuple[bytes, bytes]:
    """MTProto 1.0's AES-256-IGE (key, iv) from auth_key and a ``msg_key_v1``.

    sha1_a = SHA1(msg_key + auth_key[x : x+32]),
    sha1_b = SHA1(auth_key[32+x : 48+x] + msg_key + auth_key[48+x : 64+x]),
    sha1_c = SHA1(auth_key[64+x : 96+x] + msg_key),
    sha1_d = SHA1(msg_key + auth_key[96+x : 128+x]);
    key = sha1_a[0:8] + sha1_b[8:20] + sha1_c[4:16];
    iv = sha1_a[8:20] + sha1_b[0:8] + sha1_c[16:20] + sha1_d[0:8].
    """
    _check_auth_key(auth_key)
    if len(msg_key) != 16:
        raise LocalProtocolError(f"msg_key must be 16 bytes, got {len(msg_key)}")
    x = _x(from_client)
    a = sha1(msg_key + auth_key[x : x + 32]).digest()
    b = sha1(auth_key[32 + x : 48 + x] + msg_key + auth_key[48 + x : 64 + x]).digest()
    c = sha1(auth_key[64 + x : 96 + x] + msg_key).digest()
    d = sha1(msg_key + auth_key[96 + x : 128 + x]).digest()
    return a[:8] + b[8:20] + c[4:16], a[8:20] + b[:8] + c[16:20] + d[:8]


def tmp_aes_key_iv(new_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    """The handshake's temporary AES-256-IGE (key, iv), auth_key step 6, shared by steps 6 and 7.

    tmp_aes_key = SHA1(new_nonce + server_nonce) + SHA1(server_nonce + new_nonce)[0:12]
    tmp_aes_iv  = SHA1(server_nonce + new_nonce)[12:20] + SHA1(new_nonce + new_nonce) + new_nonce[0:4]

    The nonces are the raw int256 / int128 byte strings exactly as they travel (little-endian ints on the wire
    are hashed as those same bytes, never converted).
    """
    if len(new_nonce) != 32 or len(server_nonce) != 16:
        raise LocalProtocolError(
            f"new_nonce must be 32 bytes and server_nonce 16, got {len(new_nonce)}/{len(server_nonce)}"
        )
    ns = sha1(new_nonce + server_nonce).digest()
    sn = sha1(server_nonce + new_nonce).digest()
    nn = sha1(new_nonce + new_nonce).digest()
    return ns + sn[:12], sn[12:20] + nn + new_nonce[:4]


def auth_key_id(auth_key: bytes) -> bytes:
    """The 8-byte auth_key_id: the 64 lower-order bits of SHA1(auth_key), i.e. the last 8 digest bytes.

    Returned as the bytes that lead every encrypted message. SHA1 is still right for MTProto 2.0: the spec keeps
    it so the id names the key independently of the protocol version.
    """
    _check_auth_key(auth_key)
    return sha1(auth_key).digest()[-8:]


def auth_key_aux_hash(auth_key: bytes) -> bytes:
    """The 64 *higher-order* bits of SHA1(auth_key) (first 8 bytes); also dh_gen_retry's next retry_id."""
    _check_auth_key(auth_key)
    return sha1(auth_key).digest()[:8]


def new_nonce_hash(new_nonce: bytes, n: int, auth_key: bytes) -> bytes:
    """new_nonce_hash{n} of dh_gen_ok (n=1), dh_gen_retry (2), dh_gen_fail (3): 16 bytes.

    The 128 lower-order bits (last 16 bytes) of SHA1(new_nonce + byte(n) + auth_key_aux_hash). The byte n makes
    the three answers' hashes differ, so nobody can turn a dh_gen_ok into a dh_gen_retry.
    """
    if n not in (1, 2, 3):
        raise LocalProtocolError(f"new_nonce_hash number must be 1, 2 or 3, got {n}")
    if len(new_nonce) != 32:
        raise LocalProtocolError(f"new_nonce must be 32 bytes, got {len(new_nonce)}")
    return sha1(new_nonce + bytes((n,)) + auth_key_aux_hash(auth_key)).digest()[-16:]


def server_salt(new_nonce: bytes, server_nonce: bytes) -> bytes:
    """The first server salt of a new key: substr(new_nonce, 0, 8) XOR substr(server_nonce, 0, 8), 8 bytes.

    Bytes, like the salt field it fills (a little-endian long on the wire: read it with
    ``int.from_bytes(salt, "little", signed=True)`` if a number is wanted).
    """
    if len(new_nonce) != 32 or len(server_nonce) != 16:
        raise LocalProtocolError(
            f"new_nonce must be 32 bytes and server_nonce 16, got {len(new_nonce)}/{len(server_nonce)}"
        )
    return bytes(a ^ b for a, b in zip(new_nonce[:8], server_nonce[:8], strict=True))


def quick_ack_token(msg_key_large: bytes) -> int:
    """The quick-ack token of a message, from its msg_key_large (computed for the sender's direction).

    mtproto-transports, "Quick ack": the first 32 bits of the same SHA256 as msg_key (instead of the middle 128
    bits), read as a little-endian integer, with the most significant bit set: ``msg_key_large[0:4] | 1 << 31``.
    How the 4 bytes then travel depends on the transport (abridged sends them byte-swapped, padded intermediate
    wraps them in a small frame); that is the transport's business, this is only the number.
    """
    if len(msg_key_large) != 32:
        raise LocalProtocolError(f"msg_key_large must be 32 bytes, got {len(msg_key_large)}")
    return int.from_bytes(msg_key_large[:4], "little") | 0x80000000
