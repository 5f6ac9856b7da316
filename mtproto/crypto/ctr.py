"""AES-256-CTR as a stream cipher: the keystream of the obfuscated transports (obfuscated2).

core.telegram.org/mtproto/mtproto-transports#transport-obfuscation: each direction of an obfuscated connection
is one long AES-256-CTR stream, whose 128-bit counter starts at the given 16-byte IV (big-endian) and runs on
across frames. ``cryptography``'s CTR mode keeps that state between ``update`` calls, so one object per
direction is all a transport needs.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mtproto.errors import LocalProtocolError


class AesCtr:
    """One direction of an AES-256-CTR stream; ``update`` encrypts and decrypts alike."""

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes, iv: bytes) -> None:
        if len(key) != 32 or len(iv) != 16:
            raise LocalProtocolError(f"AES-256-CTR needs a 32-byte key and a 16-byte iv, got {len(key)}/{len(iv)}")
        self._ctx = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return ``data`` XORed with the next ``len(data)`` bytes of the keystream."""
        return self._ctx.update(data)
