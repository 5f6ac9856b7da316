"""Transport obfuscation ("obfuscated2"): the 64-byte init and the two AES-256-CTR streams it keys.

core.telegram.org/mtproto/mtproto-transports#transport-obfuscation. The client starts the connection with 64
random bytes instead of a framing marker, so that nothing on the wire is constant:

- ``init[8:40]`` / ``init[40:56]`` are the key / IV of the client->server stream; reversing ``init[8:56]``
  gives the server->client key (its first 32 bytes) and IV (the next 16). Both travel in the clear.
- The client writes the protocol tag (the framing's marker, repeated to 4 bytes for abridged) at
  ``init[56:60]`` and the DC id, int16 little-endian, at ``init[60:62]``, encrypts the whole init with its
  stream, and sends ``init[0:56]`` in the clear followed by the encrypted ``[56:64]``. The server decrypts the
  same 64 bytes with the same stream and reads the tag and DC id back.
- Each direction is then one CTR stream that runs on across frames (``mtproto.crypto.ctr.AesCtr``).

The init must not look like any plain connection start, or the server would misread it: its first byte is not
0xef (abridged), its first four bytes are none of "HEAD", "POST", "GET ", "OPTI" (HTTP), 16 03 01 02 (a TLS
record, which the spec's generator also avoids), 0xdddddddd or 0xeeeeeeee; bytes 4..8 are not all zero (the
full framing's first seq). A client draws again until its init passes.

The spec writes the DC id "only" for MTProxy connections; tdlib and Telegram Desktop always write it, Telethon
leaves random bytes there. A server that means to check it (``expected_dc``) must know its clients write it.
The MTProxy secret (SHA256 of key + secret) is not implemented: this is a server, not a proxy.
"""

from __future__ import annotations

import struct
from typing import Final

from mtproto.crypto.ctr import AesCtr
from mtproto.errors import LocalProtocolError
from mtproto.transport.framing import Randbytes, draw

INIT_SIZE: Final = 64

HTTP_STARTS: Final = frozenset({b"HEAD", b"POST", b"GET ", b"OPTI"})
"""First four bytes of the HTTP requests the spec names: MTProto over HTTP, which is not served here."""

TLS_START: Final = b"\x16\x03\x01\x02"
"""A TLS handshake record header: what an MTProxy fake-TLS client sends first; not served here either."""

_FORBIDDEN_STARTS: Final = HTTP_STARTS | {TLS_START, b"\xdd\xdd\xdd\xdd", b"\xee\xee\xee\xee"}
_ZERO_SEQ: Final = b"\x00\x00\x00\x00"
_I16: Final = struct.Struct("<h")

_MAX_DRAWS: Final = 64
"""An honest random source fails the check with probability about 1/256 a draw; 64 failures in a row mean a
broken ``randbytes`` (a constant stub, say), which must not hang the caller."""


def is_valid_init(init: bytes | bytearray) -> bool:
    """True if ``init`` cannot be mistaken for the start of a plain connection (see the module docstring)."""
    return init[0] != 0xEF and bytes(init[0:4]) not in _FORBIDDEN_STARTS and init[4:8] != _ZERO_SEQ


def derive_ciphers(init: bytes | bytearray) -> tuple[AesCtr, AesCtr]:
    """The (client->server, server->client) streams keyed by an init; only ``init[8:56]`` matters."""
    forward = bytes(init[8:56])
    backward = forward[::-1]
    return AesCtr(forward[:32], forward[32:48]), AesCtr(backward[:32], backward[32:48])


def client_init(tag: bytes, dc_id: int, randbytes: Randbytes) -> tuple[bytes, AesCtr, AesCtr]:
    """Make a client's init: (the 64 bytes to send first, the encryptor, the decryptor).

    The encryptor has already consumed the init's 64 bytes of keystream, as the spec requires: the first
    frame is encrypted from keystream offset 64 on.
    """
    if len(tag) != 4:
        raise LocalProtocolError(f"a protocol tag is 4 bytes, got {len(tag)}")
    if not -0x8000 <= dc_id <= 0x7FFF:
        raise LocalProtocolError(f"the DC id is an int16, got {dc_id}")
    for _ in range(_MAX_DRAWS):
        init = bytearray(draw(randbytes, INIT_SIZE))
        init[56:60] = tag
        init[60:62] = _I16.pack(dc_id)
        if is_valid_init(init):
            break
    else:
        raise LocalProtocolError(f"randbytes produced no valid obfuscation init in {_MAX_DRAWS} draws")
    encryptor, decryptor = derive_ciphers(init)
    encrypted = encryptor.update(init)
    return bytes(init[:56]) + encrypted[56:], encryptor, decryptor


def server_init(wire: bytes) -> tuple[bytes, int, AesCtr, AesCtr]:
    """Read a client's init: (protocol tag, DC id, the decryptor, the encryptor).

    The caller checks the tag and the DC id; whatever they are, the decryptor has consumed the init's 64 bytes
    of keystream and is ready for the first frame.
    """
    if len(wire) != INIT_SIZE:
        raise LocalProtocolError(f"an obfuscation init is {INIT_SIZE} bytes, got {len(wire)}")
    decryptor, encryptor = derive_ciphers(wire)
    plain = decryptor.update(wire)
    return plain[56:60], _I16.unpack_from(plain, 60)[0], decryptor, encryptor
