"""The gateway's long-lived secrets and the auth keys it serves.

- The RSA key clients encrypt the handshake to (``gateway_rsa.pem``) and the secret salts are derived from
  (``salt_secret``) live in the data directory, created on first start with owner-only permissions. Every
  replica of a gateway must share both: clients pin the RSA fingerprint, and salts must agree.
- ``KeyStore`` is where auth keys are kept. The handshake stores a key before answering dh_gen_ok, because
  clients reuse a new key on a fresh connection at once.
- ``AuthServiceKeyStore``: the auth service owns the keys (Postgres); this gateway asks it over internal RPC and
  keeps an LRU cache of the records (the key, whom it is signed in as, and for a temporary key the permanent key
  it is bound to), so a request costs no RPC once its key is known. The cache is kept honest by the auth
  service's ``keys.watch`` stream: each key whose sign-in state changes (sign-in, log-out, revocation, binding,
  on any gateway; for a permanent key, its bound temporary keys too) is dropped at once, and while the stream is
  down nothing is cached at all (every lookup asks the service), because nobody would tell us about a change.
- ``MemoryKeyStore``: a gateway running alone (its own tests, with no auth service configured) keeps keys in
  memory; a restart forgets them and clients redo the handshake (they see -404 for the old key).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from mtproto.crypto import rsa
from mtproto.handshake import CreatedKey
from mtproto.session import AuthKey
from mtproto.tl.internal.functions import keys as keys_fn
from mtproto.tl.internal.types import keys
from mtproto.tl.runtime import Reader, TLDecodeError
from services.common.rpc import RpcClient, RpcError, context
from services.gateway import metrics

log = logging.getLogger("mtlab.gateway.keys")

RSA_FILE = "gateway_rsa.pem"
SALT_FILE = "salt_secret"


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (owner-only) with ``data`` unless another process got there first.

    Two processes may start on a fresh data dir at once (two gateway replicas, the gateway and `mtlab key`):
    each writes a private temporary file and links it into place; ``link`` fails if the name exists, so the
    first one wins and the others read its key instead of crashing or overwriting it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


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
    user_id: int | None = None  # the user the key is signed in as; None before sign-in
    revoked: bool = False  # another device ended this key's authorization: 401 SESSION_REVOKED, not UNREGISTERED
    perm_auth_key_id: int | None = None  # a temporary key bound to this permanent key (whose user_id it carries)

    @property
    def temporary(self) -> bool:
        return self.expires_in is not None


class KeyStoreUnavailable(Exception):
    """The store cannot say anything about a key right now (the auth service is down or restarting)."""


class KeyStore(Protocol):
    async def get(self, key_id: bytes) -> StoredKey | None:
        """The key's record, None if no such key exists; raises KeyStoreUnavailable."""

    async def put(self, created: CreatedKey) -> StoredKey:
        """Store a key the handshake just made; raises KeyStoreUnavailable."""

    def forget(self, key_id: bytes) -> None:
        """This gateway saw the key's sign-in state change (it forwarded the key's signIn, signUp or logOut)."""


class MemoryKeyStore:
    """Auth keys in a dict, for a gateway running without an auth service (nobody can sign in)."""

    def __init__(self) -> None:
        self._keys: dict[bytes, StoredKey] = {}

    async def get(self, key_id: bytes) -> StoredKey | None:
        return self._keys.get(key_id)

    async def put(self, created: CreatedKey) -> StoredKey:
        stored = StoredKey(AuthKey.from_bytes(created.auth_key), created.server_salt, time.time(), created.expires_in)
        self._keys[created.auth_key_id] = stored
        return stored

    def forget(self, key_id: bytes) -> None:
        pass  # the record never changes: no key here ever signs in

    def __len__(self) -> int:
        return len(self._keys)


def key_id_int(key_id: bytes) -> int:
    """An auth_key_id as TL and Postgres carry it: the 8 bytes read as a signed little-endian long."""
    return int.from_bytes(key_id, "little", signed=True)


def key_id_bytes(key_id: int) -> bytes:
    return key_id.to_bytes(8, "little", signed=True)


class AuthServiceKeyStore:
    """Key records from the auth service, cached in an LRU, invalidated by its ``keys.watch`` stream.

    Freshness rules (each closes a race a student can try to break):
    - nothing is cached unless the watch stream is live (``keys.resync`` received on the current subscription);
    - every invalidation bumps ``epoch``; a lookup caches its answer only if no invalidation happened while it
      was in flight, because the answer may predate the change that was just announced;
    - when the stream breaks, the cache is emptied: changes made while nobody listens are never announced.
    """

    def __init__(self, client: RpcClient, *, size: int = 100_000) -> None:
        #: Told of every key whose sign-in state changed elsewhere (the gateway drops its push subscriptions: a
        #: revoked device must stop receiving the user's updates even while its connection stays open).
        self.on_change: Callable[[bytes], None] | None = None
        self.client = client
        self.size = size
        self._cache: OrderedDict[bytes, StoredKey] = OrderedDict()
        self.epoch = 0
        self.live = False
        self.subscriptions = 0  # how many times keys.watch was (re)subscribed: a restart of the service shows

    def _remember(self, key_id: bytes, stored: StoredKey, epoch: int) -> None:
        if self.live and epoch == self.epoch:
            self._cache[key_id] = stored
            self._cache.move_to_end(key_id)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
            metrics.KEY_CACHE_SIZE.set(len(self._cache))

    def forget(self, key_id: bytes) -> None:
        self.epoch += 1
        if self._cache.pop(key_id, None) is not None:
            metrics.KEY_CACHE.labels("invalidated").inc()
            metrics.KEY_CACHE_SIZE.set(len(self._cache))

    def clear(self) -> None:
        self.epoch += 1
        self._cache.clear()
        metrics.KEY_CACHE_SIZE.set(0)

    async def _ask(self, query: keys_fn.Get | keys_fn.Store) -> keys.TypeKeyRecord:
        try:
            answer = await self.client.call(query.to_bytes(), context())
            return query.read_result(Reader(answer))
        except (RpcError, TLDecodeError) as exc:
            raise KeyStoreUnavailable(str(exc)) from exc

    @staticmethod
    def _stored(record: keys.KeyRecord) -> StoredKey:
        expires_in = record.expires - record.created if record.expires is not None else None
        return StoredKey(AuthKey.from_bytes(record.auth_key), record.handshake_salt, float(record.created),
                         expires_in, record.user_id, record.revoked, record.perm_auth_key_id)

    async def get(self, key_id: bytes) -> StoredKey | None:
        cached = self._cache.get(key_id)
        if cached is not None:
            self._cache.move_to_end(key_id)
            metrics.KEY_CACHE.labels("hit").inc()
            return cached
        metrics.KEY_CACHE.labels("miss").inc()
        epoch = self.epoch
        record = await self._ask(keys_fn.Get(auth_key_id=key_id_int(key_id)))
        if not isinstance(record, keys.KeyRecord):
            return None  # unknown keys are not cached: the key may be created on another gateway a moment later
        stored = self._stored(record)
        self._remember(key_id, stored, epoch)
        return stored

    async def put(self, created: CreatedKey) -> StoredKey:
        epoch = self.epoch
        record = await self._ask(keys_fn.Store(auth_key=created.auth_key, handshake_salt=created.server_salt,
                                               expires_in=created.expires_in))
        if not isinstance(record, keys.KeyRecord):
            raise KeyStoreUnavailable("the auth service did not store the key")
        stored = self._stored(record)
        self._remember(created.auth_key_id, stored, epoch)
        return stored

    async def watch(self, *, retry: float = 0.2) -> None:
        """Follow keys.watch until cancelled, subscribing again whenever the service comes back."""
        while True:
            await self.client.wait_connected()
            try:
                async for item in self.client.stream(keys_fn.Watch().to_bytes(), context()):
                    change = Reader(item).read_object()
                    if isinstance(change, keys.Resync):
                        self.clear()
                        self.live = True
                        self.subscriptions += 1
                        metrics.KEY_CACHE.labels("resync").inc()
                        log.info("keys.watch: subscribed to the auth service; cache cleared")
                    elif isinstance(change, keys.Changed):
                        for key_id in change.key_ids:
                            self.forget(key_id_bytes(key_id))
                            if self.on_change is not None:
                                self.on_change(key_id_bytes(key_id))
            except (RpcError, TLDecodeError) as exc:
                log.warning("keys.watch ended: %s", exc)
            finally:
                # Changes made while nobody listens are never announced: stop trusting (and keeping) records.
                self.live = False
                self.clear()
            await anyio.sleep(retry)  # the stream ended without the connection dropping: do not spin
