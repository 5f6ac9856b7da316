"""Server salts: rotation and grace without shared state (core.telegram.org/mtproto/description,
"Server Salt"; /mtproto/service_messages, "Request for several future salts").

A salt is valid for one period (30 minutes) and a grace period after it (another 30 minutes). Rather than
store salts per key, the server derives them:
salt(key, period) = the first 8 bytes of HMAC-SHA256(secret, auth_key_id || period). Every gateway that shares
the secret agrees on every salt, across restarts, with nothing in a database. The salt of the previous period
stays valid for a grace time, so messages in flight across a rotation are not refused, and the salt made by
the handshake (new_nonce XOR server_nonce) is accepted for the first period of a new key.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from mtproto.errors import LocalProtocolError

PERIOD = 1800
#: "messages with the old salt are still accepted for a further 1800 seconds" (core.telegram.org/mtproto/description)
GRACE = 1800


@dataclass(frozen=True, slots=True)
class SaltPolicy:
    secret: bytes
    period: int = PERIOD
    grace: int = GRACE

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise LocalProtocolError("the salt secret must be at least 16 bytes")

    def salt_for(self, auth_key_id: bytes, slot: int) -> int:
        mac = hmac.new(self.secret, auth_key_id + struct.pack("<q", slot), hashlib.sha256).digest()
        value: int = struct.unpack_from("<q", mac)[0]
        return value

    def current(self, auth_key_id: bytes, now: float) -> int:
        return self.salt_for(auth_key_id, int(now) // self.period)

    def is_valid(self, auth_key_id: bytes, salt: int, now: float) -> bool:
        slot = int(now) // self.period
        if salt == self.salt_for(auth_key_id, slot):
            return True
        return int(now) - slot * self.period < self.grace and salt == self.salt_for(auth_key_id, slot - 1)

    def future(self, auth_key_id: bytes, now: float, count: int) -> list[tuple[int, int, int]]:
        """(valid_since, valid_until, salt) for ``count`` periods from the current one (future_salts)."""
        slot = int(now) // self.period
        return [
            ((s) * self.period, (s + 1) * self.period + self.grace, self.salt_for(auth_key_id, s))
            for s in range(slot, slot + count)
        ]
