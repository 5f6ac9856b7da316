"""AES-256 in IGE mode (Infinite Garble Extension), the cipher of every MTProto 2.0 encrypted message.

Spec: core.telegram.org/mtproto/description, "Defining AES Key and Initialization Vector" (messages), and
core.telegram.org/mtproto/auth_key, steps 4.1, 6 and 7 (RSA_PAD and the handshake's encrypted answers).

IGE chains every block to both neighbours. With plaintext blocks x_i, ciphertext blocks y_i and the block
cipher E (D its inverse)::

    y_i = E(x_i ^ y_{i-1}) ^ x_{i-1}          x_i = D(y_i ^ x_{i-1}) ^ y_{i-1}

The 32-byte IV supplies the two blocks before the first one, in MTProto's (and OpenSSL's) order:
``iv[0:16]`` plays the previous ciphertext block y_0 and ``iv[16:32]`` the previous plaintext block x_0.

Two implementations live here:

- ``ige256_encrypt`` / ``ige256_decrypt``: the fast path, a thin wrapper over ``cryptg`` (IGE in C). Every
  message of every connection goes through it, so it does nothing but check lengths and call C.
- ``ige256_encrypt_reference`` / ``ige256_decrypt_reference``: the same mode on top of ``cryptography``'s AES,
  readable in Python. They are what a student can step through, and an independent check on the fast path.

Neither pads: MTProto chooses its own padding (12..1024 random bytes for messages, 0..15 in the handshake), so
the data must already be a whole number of 16-byte blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import cryptg
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mtproto.errors import LocalProtocolError

__all__ = [
    "ige256_decrypt",
    "ige256_decrypt_reference",
    "ige256_encrypt",
    "ige256_encrypt_reference",
]

BLOCK = 16

# cryptg ships no type information; binding its functions to typed names once keeps the fast path free of
# casts, and a module global is one dictionary lookup where ``cryptg.encrypt_ige`` would be two.
_cryptg_encrypt: Callable[[bytes, bytes, bytes], bytes] = cryptg.encrypt_ige
_cryptg_decrypt: Callable[[bytes, bytes, bytes], bytes] = cryptg.decrypt_ige


def _bad_lengths(data: bytes, key: bytes, iv: bytes) -> LocalProtocolError:
    return LocalProtocolError(
        "AES-256-IGE needs data in whole 16-byte blocks, a 32-byte key and a 32-byte iv; "
        f"got {len(data)}/{len(key)}/{len(iv)} bytes"
    )


def ige256_encrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    """Encrypt ``data`` (a multiple of 16 bytes) with AES-256-IGE; ``iv`` is y_0 + x_0 (see module doc).

    The length checks are not decoration: cryptg silently pads a partial last block, which would turn a
    caller's padding bug into a message the peer rejects for no visible reason.
    """
    if len(data) % BLOCK or len(key) != 32 or len(iv) != 32:
        raise _bad_lengths(data, key, iv)
    return _cryptg_encrypt(data, key, iv)


def ige256_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    """Decrypt ``data`` (a multiple of 16 bytes) with AES-256-IGE; the inverse of :func:`ige256_encrypt`."""
    if len(data) % BLOCK or len(key) != 32 or len(iv) != 32:
        raise _bad_lengths(data, key, iv)
    return _cryptg_decrypt(data, key, iv)


# --- reference implementation ----------------------------------------------------------------------------


def _xor(a: bytes, b: bytes) -> bytes:
    """XOR two equal-length byte strings at C speed: Python's big integers do the whole buffer in one go."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _check_reference(data: bytes, key: bytes, iv: bytes) -> None:
    if len(data) % BLOCK or len(key) != 32 or len(iv) != 32:
        raise _bad_lengths(data, key, iv)


def ige256_encrypt_reference(data: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-256-IGE encryption written as one CBC encryption plus whole-buffer XORs.

    A loop calling AES once per block spends most of its time in the interpreter (about 11 MB/s here). IGE
    encryption has an exact algebraic shortcut to C speed. Put ``z_i = y_i ^ x_{i-1}``; then::

        z_1 = E(x_1 ^ y_0)
        z_i = E(x_i ^ y_{i-1}) = E((x_i ^ x_{i-2}) ^ z_{i-1})      for i >= 2, since y_{i-1} = z_{i-1} ^ x_{i-2}

    which is exactly CBC encryption, IV y_0, of the blocks ``u_1 = x_1`` and ``u_i = x_i ^ x_{i-2}`` (with
    x_0 = iv[16:32]). So: build u with one XOR of the plaintext against itself shifted by two blocks, run one
    CBC pass, and recover ``y_i = z_i ^ x_{i-1}`` with a second XOR against the plaintext shifted by one block.
    The AES work stays sequential (CBC is), but it all happens inside OpenSSL.
    """
    _check_reference(data, key, iv)
    return _encrypt_reference(data, key, iv)


def _encrypt_reference(data: bytes, key: bytes, iv: bytes) -> bytes:
    # Key-size agnostic core, so the tests can also run it on the published AES-128 IGE vectors.
    n = len(data)
    if n == 0:
        return b""
    y0, x0 = iv[:BLOCK], iv[BLOCK:]
    # x_{i-2} for i = 1..n/16: nothing (zero) for the first block, x_0 for the second, then the plaintext.
    two_back = (bytes(BLOCK) + x0 + data[: -2 * BLOCK])[:n]
    u = _xor(data, two_back)
    z = Cipher(algorithms.AES(key), modes.CBC(y0)).encryptor().update(u)
    one_back = x0 + data[:-BLOCK]  # x_{i-1} for i = 1..n/16
    return _xor(z, one_back)


def ige256_decrypt_reference(data: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-256-IGE decryption: one AES call per block, with the loop pared down to the bone.

    Decryption has no CBC shortcut: its feedback passes through D, and no standard mode chains the inverse
    cipher. The same substitution still halves the work in the loop. Put ``w_i = x_i ^ y_{i-1}``; then::

        w_1 = D(y_1 ^ x_0)
        w_i = D(y_i ^ x_{i-1}) = D((y_i ^ y_{i-2}) ^ w_{i-1})      for i >= 2, since x_{i-1} = w_{i-1} ^ y_{i-2}

    ``v_i = y_i ^ y_{i-2}`` depends only on the ciphertext, so it is one whole-buffer XOR up front, and the
    loop keeps a single XOR: ``w = D(v_i ^ w)``. A final whole-buffer XOR gives ``x_i = w_i ^ y_{i-1}``.
    The loop body is one int XOR, one ``to_bytes``, one AES call and one ``from_bytes`` per 16 bytes; that
    interpreter overhead, not AES, is what bounds this path (about 30 MB/s here).
    """
    _check_reference(data, key, iv)
    return _decrypt_reference(data, key, iv)


def _decrypt_reference(data: bytes, key: bytes, iv: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    y0, x0 = iv[:BLOCK], iv[BLOCK:]
    # The block that v_i = y_i ^ (this) needs: x_0 for the first block, y_0 for the second, then y_{i-2}.
    v = _xor(data, (x0 + y0 + data[: -2 * BLOCK])[:n])
    from_bytes = int.from_bytes
    to_bytes = int.to_bytes
    vs = [from_bytes(v[i : i + BLOCK]) for i in range(0, n, BLOCK)]  # byteorder defaults to "big" (3.11+)
    # ECB here is not a mode of operation but the bare AES block function, one block per call; IGE around it
    # supplies the chaining that makes ECB unsafe on its own.
    aes_decrypt = Cipher(algorithms.AES(key), modes.ECB()).decryptor().update  # noqa: S305
    blocks: list[bytes] = []
    keep = blocks.append
    w = 0  # w_0 = 0 makes the first round D(v_1 ^ 0) = D(y_1 ^ x_0), as required
    for vi in vs:
        out = aes_decrypt(to_bytes(vi ^ w, BLOCK))
        keep(out)
        w = from_bytes(out)
    return _xor(b"".join(blocks), y0 + data[:-BLOCK])
