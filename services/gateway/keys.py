"""The gateway's long-lived secrets and the auth keys it serves.

- The RSA key clients encrypt the handshake to (``gateway_rsa.pem``) and the secret salts are derived from
  (``salt_secret``) live in the data directory, created on first start with owner-only permissions. Every
  replica of a gateway must share both: clients pin the RSA fingerprint, and salts must agree.
- ``KeyStore`` is where auth keys are kept. The handshake stores a key before answering dh_gen_ok, because
  clients reuse a new key on a fresh connection at once. ``MemoryKeyStore`` keeps them in this process only:
  until the auth service owns them (issue #3, next step) a gateway restart forgets every key, and clients
  simply create a new one (they see -404 for the old key and redo the handshake).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mtproto.crypto import rsa
from mtproto.handshake import CreatedKey
from mtproto.session import AuthKey

RSA_FILE = "gateway_rsa.pem"
SALT_FILE = "salt_secret"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_or_create_rsa_key(data_dir: Path) -> rsa.RsaKey:
    path = data_dir / RSA_FILE
    if not path.exists():
        _write_private(path, rsa.private_pem(rsa.generate_rsa_key()))
    return rsa.load_private_pem(path.read_bytes())


def load_or_create_salt_secret(data_dir: Path) -> bytes:
    path = data_dir / SALT_FILE
    if not path.exists():
        _write_private(path, os.urandom(32))
    return path.read_bytes()


@dataclass(frozen=True, slots=True)
class StoredKey:
    key: AuthKey
    handshake_salt: int
    created_at: float
    expires_in: int | None


class KeyStore(Protocol):
    async def get(self, key_id: bytes) -> StoredKey | None: ...

    async def put(self, created: CreatedKey) -> StoredKey: ...


class MemoryKeyStore:
    """Auth keys in a dict: the stand-in until the auth service stores them in Postgres."""

    def __init__(self) -> None:
        self._keys: dict[bytes, StoredKey] = {}

    async def get(self, key_id: bytes) -> StoredKey | None:
        return self._keys.get(key_id)

    async def put(self, created: CreatedKey) -> StoredKey:
        stored = StoredKey(AuthKey.from_bytes(created.auth_key), created.server_salt, time.time(), created.expires_in)
        self._keys[created.auth_key_id] = stored
        return stored

    def __len__(self) -> int:
        return len(self._keys)
