"""Deterministic "random" bytes, for replaying a protocol exchange byte for byte.

mtproto never draws randomness itself: every step takes ``randbytes``. Passing ``seeded_randbytes(seed)``
instead of ``os.urandom`` makes a handshake or a session replay exactly, which is how the tests pin recorded
transcripts and how a student can diff two runs. Never use it for real keys: the output is SHA-256 in counter
mode over a known seed, so anyone with the seed has every "secret".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def seeded_randbytes(seed: bytes) -> Callable[[int], bytes]:
    counter = 0

    def randbytes(n: int) -> bytes:
        nonlocal counter
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
            counter += 1
        return bytes(out[:n])

    return randbytes
