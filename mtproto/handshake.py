"""Creating an authorization key, both sides, as pure steps (core.telegram.org/mtproto/auth_key).

Each step is a function from (the previous step's small frozen state, the peer's message, explicit time and
randomness) to (the message to send, the next state). Nothing here reads a clock, draws randomness or touches a
socket, so a test can replay a whole handshake from fixed bytes and assert every byte and the final key.

    client                                             server
    client_start()            -- req_pq_multi -->      server_start()          -> ServerStep1
    client_req_dh()           <-- resPQ ---------
                              -- req_DH_params -->     server_dh_params()      -> ServerStep2
    client_set_dh()           <-- server_DH_params_ok
                              -- set_client_DH_params> server_finish()         -> CreatedKey
    client_finish() -> CreatedKey <-- dh_gen_ok -----

The server accepts p_q_inner_data_dc, p_q_inner_data_temp_dc (RSA_PAD) and the legacy p_q_inner_data /
p_q_inner_data_temp (SHA1 + data + random, raw RSA) that some client libraries still send. Every failure on
the server side raises ``HandshakeFailed``, the same class and the same transport error (-404) whatever the
cause; the reason is for the log only.

Unencrypted messages (the framing of every handshake message) are ``auth_key_id = 0 | msg_id | length |
body``: ``pack_plain`` / ``unpack_plain``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mtproto.crypto import dh, kdf, pq, rsa
from mtproto.crypto.ige import ige256_decrypt, ige256_encrypt
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode
from mtproto.tl import mt
from mtproto.tl.runtime import Reader, TLDecodeError, TLObject

RandBytes = Callable[[int], bytes]

_PLAIN_HEADER = struct.Struct("<qqi")  # auth_key_id (0), msg_id, length
MAX_PLAIN_BODY = 1024  # the largest handshake message (req_DH_params) is ~ 340 bytes
MAX_TEMP_KEY_LIFETIME = 30 * 24 * 3600  # expires_in of a temporary (PFS) key: clients ask for about a day


class HandshakeFailed(RemoteProtocolError):
    """The peer's handshake message failed a check. The server answers -404 and closes, whatever the cause
    (the one exception: a key asked for another DC gets -444)."""

    def __init__(self, reason: str, code: TransportErrorCode = TransportErrorCode.NOT_FOUND) -> None:
        super().__init__(f"handshake failed: {reason}", code)


# -- unencrypted messages -----------------------------------------------------------------------------------


def pack_plain(msg_id: int, body: bytes) -> bytes:
    return _PLAIN_HEADER.pack(0, msg_id, len(body)) + body


def unpack_plain(payload: bytes, *, padded: bool = False) -> tuple[int, bytes]:
    """(msg_id, body) of an unencrypted message; raises HandshakeFailed when it is not one.

    ``padded``: over the padded intermediate transport up to 15 random bytes may follow the message.
    """
    if len(payload) < _PLAIN_HEADER.size:
        raise HandshakeFailed(f"unencrypted message of {len(payload)} bytes is shorter than its header")
    key_id, msg_id, length = _PLAIN_HEADER.unpack_from(payload)
    if key_id != 0:
        raise HandshakeFailed("auth_key_id of an unencrypted message is not 0")
    extra = len(payload) - _PLAIN_HEADER.size - length
    if not (0 <= extra < (16 if padded else 1)) or length > MAX_PLAIN_BODY:
        raise HandshakeFailed(f"unencrypted message length {length} does not match its {len(payload)} bytes")
    return msg_id, payload[_PLAIN_HEADER.size : _PLAIN_HEADER.size + length]


def read_plain_object(body: bytes) -> TLObject:
    try:
        return Reader(body).read_object()
    except TLDecodeError as exc:
        raise HandshakeFailed(str(exc)) from None


# -- the result ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A finished handshake: the key, its id, the first salt, and how it may be used."""

    auth_key: bytes  # 256 bytes
    auth_key_id: bytes  # 8 bytes, as it prefixes every encrypted message
    server_salt: int  # new_nonce[0:8] XOR server_nonce[0:8], as a signed long
    dc_id: int
    expires_in: int | None  # set for temporary (PFS) keys
    time_offset: int = 0  # client side: server_time - local time at step 3


def _created(auth_key: bytes, new_nonce: bytes, server_nonce: bytes, dc_id: int, expires_in: int | None,
             time_offset: int = 0) -> CreatedKey:
    salt = struct.unpack("<q", kdf.server_salt(new_nonce, server_nonce))[0]
    return CreatedKey(auth_key, kdf.auth_key_id(auth_key), salt, dc_id, expires_in, time_offset)


# -- server side --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What the server's handshake needs: its RSA keys (several may be offered), DH group and DC id."""

    rsa_keys: tuple[rsa.RsaKey, ...]
    dc_id: int
    dh_prime: int = dh.DEFAULT_DH_PRIME
    g: int = dh.DEFAULT_G
    accept_legacy_rsa: bool = True

    def __post_init__(self) -> None:
        if not self.rsa_keys:
            raise LocalProtocolError("the handshake needs at least one RSA key")
        dh.validate_dh_config(self.g, self.dh_prime)

    def key_for(self, fp: int) -> rsa.RsaKey | None:
        for key in self.rsa_keys:
            if rsa.fingerprint(key.n, key.e) == fp:
                return key
        return None


@dataclass(frozen=True, slots=True)
class ServerStep1:
    nonce: bytes
    server_nonce: bytes
    pq: int
    p: int
    q: int


@dataclass(frozen=True, slots=True)
class ServerStep2:
    nonce: bytes
    server_nonce: bytes
    new_nonce: bytes
    a: int
    dc_id: int
    expires_in: int | None
    retry_id: int = 0  # the aux hash of the key last refused with dh_gen_retry


class _HasNonces(Protocol):
    @property
    def nonce(self) -> bytes: ...
    @property
    def server_nonce(self) -> bytes: ...


def _same_nonces(a: _HasNonces, b: _HasNonces) -> bool:
    """Both nonces equal, compared in constant time (they are the handshake's only authentication)."""
    return hmac.compare_digest(a.nonce, b.nonce) & hmac.compare_digest(a.server_nonce, b.server_nonce)


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def server_start(query: TLObject, config: ServerConfig, randbytes: RandBytes) -> tuple[mt.types.ResPQ, ServerStep1]:
    """Answer req_pq_multi (or the older req_pq) with resPQ."""
    if not isinstance(query, (mt.functions.ReqPqMulti, mt.functions.ReqPq)):
        raise HandshakeFailed(f"expected req_pq_multi, got {query.TL_NAME}")
    server_nonce = randbytes(16)
    pq_value, p, q = pq.generate_pq(randbytes)
    fingerprints = [rsa.fingerprint(k.n, k.e) for k in config.rsa_keys]
    answer = mt.types.ResPQ(
        nonce=query.nonce,
        server_nonce=server_nonce,
        pq=_int_bytes(pq_value),
        server_public_key_fingerprints=fingerprints,
    )
    return answer, ServerStep1(query.nonce, server_nonce, pq_value, p, q)


_INNER_TYPES = (
    mt.types.PQInnerDataDc,
    mt.types.PQInnerDataTempDc,
    mt.types.PQInnerData,
    mt.types.PQInnerDataTemp,
)
InnerData = mt.types.PQInnerDataDc | mt.types.PQInnerDataTempDc | mt.types.PQInnerData | mt.types.PQInnerDataTemp


def _decrypt_inner_data(key: rsa.RsaKey, encrypted: bytes, accept_legacy: bool) -> InnerData:
    """Try RSA_PAD first, then the legacy SHA1 form; both come from the same one RSA private operation."""
    if len(encrypted) != 256:
        raise HandshakeFailed(f"encrypted_data is {len(encrypted)} bytes, not 256")
    try:
        raw = rsa.rsa_private_raw(key, encrypted)
    except RemoteProtocolError as exc:
        raise HandshakeFailed(str(exc)) from None
    data_with_padding = rsa.rsa_pad_unwrap(raw)
    if data_with_padding is not None:
        inner = _read_inner(data_with_padding)
        if isinstance(inner, (mt.types.PQInnerDataDc, mt.types.PQInnerDataTempDc)):
            return inner
        raise HandshakeFailed(f"RSA_PAD carries {inner.TL_NAME}, expected p_q_inner_data_dc or _temp_dc")
    if not accept_legacy:
        raise HandshakeFailed("RSA_PAD hash mismatch and legacy padding is disabled")
    # Legacy: the 255-byte block SHA1(data) + data + random padding, as a number below n (leading zero byte).
    if raw[0] != 0:
        raise HandshakeFailed("neither RSA_PAD nor a legacy block")
    digest, rest = raw[1:21], raw[21:]
    r = Reader(rest)
    try:
        inner = r.read_object()
    except TLDecodeError as exc:
        raise HandshakeFailed(f"legacy inner data does not parse: {exc}") from None
    if not hmac.compare_digest(hashlib.sha1(rest[: r.pos]).digest(), digest):
        raise HandshakeFailed("legacy inner data SHA1 mismatch")
    if not isinstance(inner, _INNER_TYPES):
        raise HandshakeFailed(f"legacy block carries {inner.TL_NAME}")
    return inner


def _read_inner(data: bytes) -> TLObject:
    try:
        return Reader(data).read_object()  # trailing random padding is expected and ignored
    except TLDecodeError as exc:
        raise HandshakeFailed(f"inner data does not parse: {exc}") from None


def server_dh_params(
    state: ServerStep1, query: TLObject, config: ServerConfig, randbytes: RandBytes, now: int
) -> tuple[mt.types.ServerDHParamsOk, ServerStep2]:
    """Check req_DH_params, decrypt the client's inner data and answer with g, dh_prime and g_a."""
    if not isinstance(query, mt.functions.ReqDHParams):
        raise HandshakeFailed(f"expected req_DH_params, got {query.TL_NAME}")
    if not _same_nonces(query, state):
        raise HandshakeFailed("req_DH_params nonces do not match resPQ")
    if query.p != _int_bytes(state.p) or query.q != _int_bytes(state.q):
        raise HandshakeFailed("req_DH_params p, q are not the factors of pq")
    key = config.key_for(query.public_key_fingerprint)
    if key is None:
        raise HandshakeFailed(f"unknown RSA fingerprint {query.public_key_fingerprint:#x}")
    inner = _decrypt_inner_data(key, query.encrypted_data, config.accept_legacy_rsa)
    if not _same_nonces(inner, state):
        raise HandshakeFailed("inner data nonces do not match")
    if inner.pq != _int_bytes(state.pq) or inner.p != query.p or inner.q != query.q:
        raise HandshakeFailed("inner data pq, p, q do not match")
    dc_id = inner.dc if isinstance(inner, (mt.types.PQInnerDataDc, mt.types.PQInnerDataTempDc)) else config.dc_id
    # A client names the DC it means: +-id, and +10000 on test servers. Another DC's key is refused (-444).
    if abs(dc_id) not in (config.dc_id, config.dc_id + 10000):
        raise HandshakeFailed(f"inner data names dc {dc_id}, this is dc {config.dc_id}", TransportErrorCode.INVALID_DC)
    expires_in = inner.expires_in if isinstance(inner, (mt.types.PQInnerDataTemp, mt.types.PQInnerDataTempDc)) else None
    if expires_in is not None and not 0 < expires_in <= MAX_TEMP_KEY_LIFETIME:
        raise HandshakeFailed(f"temporary key lifetime {expires_in}s outside 1..{MAX_TEMP_KEY_LIFETIME}")

    a = dh.dh_secret(randbytes)
    g_a = dh.dh_public(config.g, a, config.dh_prime)
    answer = mt.types.ServerDHInnerData(
        nonce=state.nonce,
        server_nonce=state.server_nonce,
        g=config.g,
        dh_prime=_int_bytes(config.dh_prime),
        g_a=_int_bytes(g_a),
        server_time=now,
    ).to_bytes()
    encrypted = _encrypt_with_sha1(answer, inner.new_nonce, state.server_nonce, randbytes)
    reply = mt.types.ServerDHParamsOk(nonce=state.nonce, server_nonce=state.server_nonce, encrypted_answer=encrypted)
    return reply, ServerStep2(state.nonce, state.server_nonce, inner.new_nonce, a, dc_id, expires_in)


def _encrypt_with_sha1(data: bytes, new_nonce: bytes, server_nonce: bytes, randbytes: RandBytes) -> bytes:
    """``IGE(SHA1(data) + data + 0..15 random bytes)`` under the tmp key: both DH messages use this form."""
    with_hash = hashlib.sha1(data).digest() + data
    with_hash += randbytes(-len(with_hash) % 16)
    key, iv = kdf.tmp_aes_key_iv(new_nonce, server_nonce)
    return ige256_encrypt(with_hash, key, iv)


def _decrypt_with_sha1(encrypted: bytes, new_nonce: bytes, server_nonce: bytes, what: str) -> TLObject:
    """Decrypt an ``SHA1(data) + data + padding`` block under the tmp key and return the parsed data."""
    if not encrypted or len(encrypted) % 16:
        raise HandshakeFailed(f"{what} is {len(encrypted)} bytes, not a positive multiple of 16")
    key, iv = kdf.tmp_aes_key_iv(new_nonce, server_nonce)
    plain = ige256_decrypt(encrypted, key, iv)
    r = Reader(plain, 20)
    try:
        obj = r.read_object()
    except TLDecodeError as exc:
        raise HandshakeFailed(f"{what} does not parse: {exc}") from None
    if len(plain) - r.pos >= 16:
        raise HandshakeFailed(f"{what} has {len(plain) - r.pos} bytes of padding, at most 15 allowed")
    if not hmac.compare_digest(hashlib.sha1(plain[20 : r.pos]).digest(), plain[:20]):
        raise HandshakeFailed(f"{what} SHA1 mismatch")
    return obj


def server_finish(
    state: ServerStep2, query: TLObject, config: ServerConfig
) -> tuple[mt.types.DhGenOk, CreatedKey]:
    """Check set_client_DH_params, compute the key, answer dh_gen_ok.

    The key must be stored before the answer is sent: clients often create the key on one connection and use it
    on the next one straight away.
    """
    if not isinstance(query, mt.functions.SetClientDHParams):
        raise HandshakeFailed(f"expected set_client_DH_params, got {query.TL_NAME}")
    if not _same_nonces(query, state):
        raise HandshakeFailed("set_client_DH_params nonces do not match")
    inner = _decrypt_with_sha1(query.encrypted_data, state.new_nonce, state.server_nonce, "client_DH_inner_data")
    if not isinstance(inner, mt.types.ClientDHInnerData):
        raise HandshakeFailed(f"expected client_DH_inner_data, got {inner.TL_NAME}")
    if not _same_nonces(inner, state):
        raise HandshakeFailed("client_DH_inner_data nonces do not match")
    if inner.retry_id != state.retry_id:
        raise HandshakeFailed(f"retry_id {inner.retry_id} does not match {state.retry_id}")
    g_b = int.from_bytes(inner.g_b, "big")
    try:
        dh.check_dh_value(g_b, config.dh_prime)
    except RemoteProtocolError as exc:
        raise HandshakeFailed(f"g_b: {exc}") from None
    auth_key = dh.dh_shared(g_b, state.a, config.dh_prime)
    created = _created(auth_key, state.new_nonce, state.server_nonce, state.dc_id, state.expires_in)
    answer = mt.types.DhGenOk(
        nonce=state.nonce,
        server_nonce=state.server_nonce,
        new_nonce_hash1=kdf.new_nonce_hash(state.new_nonce, 1, auth_key),
    )
    return answer, created


def server_retry(state: ServerStep2, refused: CreatedKey) -> tuple[mt.types.DhGenRetry, ServerStep2]:
    """Refuse a key whose auth_key_id is already taken (a 2^-64 event) and ask the client for a new g_b."""
    aux = kdf.auth_key_aux_hash(refused.auth_key)
    answer = mt.types.DhGenRetry(
        nonce=state.nonce,
        server_nonce=state.server_nonce,
        new_nonce_hash2=kdf.new_nonce_hash(state.new_nonce, 2, refused.auth_key),
    )
    retry_id = struct.unpack("<q", aux)[0]
    return answer, ServerStep2(
        state.nonce, state.server_nonce, state.new_nonce, state.a, state.dc_id, state.expires_in, retry_id
    )


class ServerHandshake:
    """Drives the server steps for one connection: unencrypted message bodies in, answer bodies out.

    Its only state is which step comes next; ``created`` is set once dh_gen_ok has been produced.
    """

    def __init__(self, config: ServerConfig, randbytes: RandBytes) -> None:
        self._config = config
        self._randbytes = randbytes
        self._state: ServerStep1 | ServerStep2 | None = None
        self.created: CreatedKey | None = None

    def receive(self, body: bytes, now: int) -> bytes:
        """Handle one handshake message body and return the answer body (serialized TL)."""
        query = read_plain_object(body)
        if isinstance(query, (mt.functions.ReqPqMulti, mt.functions.ReqPq)):
            # A client may restart the handshake on the same connection; any earlier state is dropped.
            answer_pq, self._state = server_start(query, self._config, self._randbytes)
            return answer_pq.to_bytes()
        if isinstance(self._state, ServerStep1):
            answer_dh, self._state = server_dh_params(self._state, query, self._config, self._randbytes, now)
            return answer_dh.to_bytes()
        if isinstance(self._state, ServerStep2):
            answer_ok, self.created = server_finish(self._state, query, self._config)
            self._state = None
            return answer_ok.to_bytes()
        raise HandshakeFailed(f"unexpected {query.TL_NAME} before req_pq_multi")


# -- client side --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientStep1:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class ClientStep2:
    nonce: bytes
    server_nonce: bytes
    new_nonce: bytes
    dc_id: int
    expires_in: int | None


@dataclass(frozen=True, slots=True)
class ClientStep3:
    step2: ClientStep2
    auth_key: bytes
    time_offset: int
    g: int
    dh_prime: int
    g_a: int
    retry_id: int = 0


class ClientHandshakeError(RemoteProtocolError):
    """The server's handshake answer failed a check (the client must not use anything from it)."""


def client_start(randbytes: RandBytes) -> tuple[mt.functions.ReqPqMulti, ClientStep1]:
    nonce = randbytes(16)
    return mt.functions.ReqPqMulti(nonce=nonce), ClientStep1(nonce)


def client_req_dh(
    state: ClientStep1,
    answer: TLObject,
    server_keys: dict[int, tuple[int, int]],
    randbytes: RandBytes,
    *,
    dc_id: int,
    legacy: bool = False,
    expires_in: int | None = None,
) -> tuple[mt.functions.ReqDHParams, ClientStep2]:
    """Factor pq, pick a known server key, and send p_q_inner_data encrypted with RSA_PAD (or legacy RSA).

    ``server_keys`` maps fingerprints to (n, e). ``legacy=True`` sends the old form (``p_q_inner_data`` with
    SHA1 padding), as Telethon does; ``expires_in`` asks for a temporary key.
    """
    if not isinstance(answer, mt.types.ResPQ):
        raise ClientHandshakeError(f"expected resPQ, got {answer.TL_NAME}")
    if not hmac.compare_digest(answer.nonce, state.nonce):
        raise ClientHandshakeError("resPQ nonce mismatch")
    fp = next((f for f in answer.server_public_key_fingerprints if f in server_keys), None)
    if fp is None:
        raise ClientHandshakeError("the server offers no RSA key we know")
    n, e = server_keys[fp]
    pq_value = int.from_bytes(answer.pq, "big")
    p, q = pq.factorize_pq(pq_value)
    new_nonce = randbytes(32)
    common = {"pq": answer.pq, "p": _int_bytes(p), "q": _int_bytes(q), "nonce": state.nonce,
              "server_nonce": answer.server_nonce, "new_nonce": new_nonce}
    inner: TLObject
    if legacy:
        if expires_in is None:
            inner = mt.types.PQInnerData(**common)
        else:
            inner = mt.types.PQInnerDataTemp(**common, expires_in=expires_in)
        encrypted = rsa.rsa_legacy_encrypt(n, e, inner.to_bytes(), randbytes)
    else:
        if expires_in is None:
            inner = mt.types.PQInnerDataDc(**common, dc=dc_id)
        else:
            inner = mt.types.PQInnerDataTempDc(**common, dc=dc_id, expires_in=expires_in)
        encrypted = rsa.rsa_pad_encrypt(n, e, inner.to_bytes(), randbytes)
    query = mt.functions.ReqDHParams(
        nonce=state.nonce,
        server_nonce=answer.server_nonce,
        p=_int_bytes(p),
        q=_int_bytes(q),
        public_key_fingerprint=fp,
        encrypted_data=encrypted,
    )
    return query, ClientStep2(state.nonce, answer.server_nonce, new_nonce, dc_id, expires_in)


def client_set_dh(
    state: ClientStep2, answer: TLObject, randbytes: RandBytes, now: int
) -> tuple[mt.functions.SetClientDHParams, ClientStep3]:
    """Check the server's DH parameters (every check of the security guidelines) and send g_b."""
    if not isinstance(answer, mt.types.ServerDHParamsOk):
        raise ClientHandshakeError(f"expected server_DH_params_ok, got {answer.TL_NAME}")
    if not _same_nonces(answer, state):
        raise ClientHandshakeError("server_DH_params_ok nonces do not match")
    try:
        inner = _decrypt_with_sha1(answer.encrypted_answer, state.new_nonce, state.server_nonce, "server_DH_inner_data")
    except HandshakeFailed as exc:
        raise ClientHandshakeError(str(exc)) from None
    if not isinstance(inner, mt.types.ServerDHInnerData):
        raise ClientHandshakeError(f"expected server_DH_inner_data, got {inner.TL_NAME}")
    if not _same_nonces(inner, state):
        raise ClientHandshakeError("server_DH_inner_data nonces do not match")
    dh_prime = int.from_bytes(inner.dh_prime, "big")
    g_a = int.from_bytes(inner.g_a, "big")
    dh.check_dh_params(inner.g, dh_prime)
    dh.check_dh_value(g_a, dh_prime)
    return _client_send_g_b(state, inner.g, dh_prime, g_a, inner.server_time - now, randbytes, retry_id=0)


def _client_send_g_b(
    state: ClientStep2, g: int, dh_prime: int, g_a: int, time_offset: int, randbytes: RandBytes, retry_id: int
) -> tuple[mt.functions.SetClientDHParams, ClientStep3]:
    b = dh.dh_secret(randbytes)
    g_b = dh.dh_public(g, b, dh_prime)
    dh.check_dh_value(g_b, dh_prime)
    auth_key = dh.dh_shared(g_a, b, dh_prime)
    data = mt.types.ClientDHInnerData(
        nonce=state.nonce, server_nonce=state.server_nonce, retry_id=retry_id, g_b=_int_bytes(g_b)
    ).to_bytes()
    encrypted = _encrypt_with_sha1(data, state.new_nonce, state.server_nonce, randbytes)
    query = mt.functions.SetClientDHParams(nonce=state.nonce, server_nonce=state.server_nonce, encrypted_data=encrypted)
    return query, ClientStep3(state, auth_key, time_offset, g, dh_prime, g_a, retry_id)


def client_finish(
    state: ClientStep3, answer: TLObject, randbytes: RandBytes
) -> CreatedKey | tuple[mt.functions.SetClientDHParams, ClientStep3]:
    """dh_gen_ok gives the key; dh_gen_retry asks for a new g_b (returned as the next query and state)."""
    s2 = state.step2
    if not isinstance(answer, (mt.types.DhGenOk, mt.types.DhGenRetry, mt.types.DhGenFail)):
        raise ClientHandshakeError(f"expected dh_gen_*, got {answer.TL_NAME}")
    if not _same_nonces(answer, s2):
        raise ClientHandshakeError("dh_gen nonces do not match")
    if isinstance(answer, mt.types.DhGenOk):
        if not hmac.compare_digest(answer.new_nonce_hash1, kdf.new_nonce_hash(s2.new_nonce, 1, state.auth_key)):
            raise ClientHandshakeError("dh_gen_ok new_nonce_hash1 mismatch")
        return _created(state.auth_key, s2.new_nonce, s2.server_nonce, s2.dc_id, s2.expires_in, state.time_offset)
    if isinstance(answer, mt.types.DhGenRetry):
        if not hmac.compare_digest(answer.new_nonce_hash2, kdf.new_nonce_hash(s2.new_nonce, 2, state.auth_key)):
            raise ClientHandshakeError("dh_gen_retry new_nonce_hash2 mismatch")
        retry_id = struct.unpack("<q", kdf.auth_key_aux_hash(state.auth_key))[0]
        return _client_send_g_b(s2, state.g, state.dh_prime, state.g_a, state.time_offset, randbytes, retry_id)
    if not hmac.compare_digest(answer.new_nonce_hash3, kdf.new_nonce_hash(s2.new_nonce, 3, state.auth_key)):
        raise ClientHandshakeError("dh_gen_fail new_nonce_hash3 mismatch")
    raise ClientHandshakeError("the server answered dh_gen_fail")
