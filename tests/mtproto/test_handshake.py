"""Creating an auth key (mtproto.handshake): a recorded replay, every server-side refusal, every variant."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mtproto import handshake
from mtproto.crypto import dh, kdf, rsa
from mtproto.crypto.ige import ige256_encrypt
from mtproto.errors import RemoteProtocolError, TransportErrorCode
from mtproto.replay import seeded_randbytes
from mtproto.tl import mt
from mtproto.tl.runtime import Reader, TLObject

KEY = rsa.load_private_pem((Path(__file__).parent / "data" / "test_rsa_key.pem").read_bytes())
FP = rsa.fingerprint(KEY.n, KEY.e)
SERVER_KEYS = {FP: (KEY.n, KEY.e)}
CONFIG = handshake.ServerConfig(rsa_keys=(KEY,), dc_id=2)
NOW = 1_700_000_000


drbg = seeded_randbytes


def wire(obj: TLObject) -> TLObject:
    """What the peer reads: serialize and parse, as the bytes would travel."""
    return Reader(obj.to_bytes()).read_object()


def run(
    *, legacy: bool = False, expires_in: int | None = None, seed: bytes = b"replay"
) -> tuple[list[bytes], handshake.CreatedKey, handshake.CreatedKey]:
    """A whole handshake between the pure steps, returning every message's bytes and both sides' results."""
    client_rand, server_rand = drbg(seed + b"-client"), drbg(seed + b"-server")
    transcript: list[bytes] = []

    def log(obj: TLObject) -> TLObject:
        transcript.append(obj.to_bytes())
        return wire(obj)

    req, c1 = handshake.client_start(client_rand)
    res_pq, s1 = handshake.server_start(log(req), CONFIG, server_rand)
    req_dh, c2 = handshake.client_req_dh(
        c1, log(res_pq), SERVER_KEYS, client_rand, dc_id=2, legacy=legacy, expires_in=expires_in
    )
    dh_ok, s2 = handshake.server_dh_params(s1, log(req_dh), CONFIG, server_rand, NOW)
    set_dh, c3 = handshake.client_set_dh(c2, log(dh_ok), client_rand, NOW - 5)
    gen_ok, server_key = handshake.server_finish(s2, log(set_dh), CONFIG)
    client_key = handshake.client_finish(c3, log(gen_ok), client_rand)
    assert isinstance(client_key, handshake.CreatedKey)
    return transcript, server_key, client_key


def test_replay_with_fixed_randomness_and_clock_gives_the_recorded_bytes_and_key() -> None:
    transcript, server_key, client_key = run()
    # The first message is exactly req_pq_multi#be7e8ef1 + the 16-byte nonce drawn from the client's randomness.
    assert transcript[0] == bytes.fromhex("f18e7ebe") + drbg(b"replay-client")(16)
    assert [Reader(m).read_object().TL_NAME for m in transcript] == [
        "req_pq_multi", "resPQ", "req_DH_params", "server_DH_params_ok", "set_client_DH_params", "dh_gen_ok",
    ]
    assert server_key == replace(client_key, time_offset=0)
    assert client_key.time_offset == 5
    # Recorded once from this very replay: any change to how a step uses its inputs shows up here.
    assert hashlib.sha256(b"".join(transcript)).hexdigest() == RECORDED_TRANSCRIPT_SHA256
    assert hashlib.sha256(server_key.auth_key).hexdigest() == RECORDED_KEY_SHA256
    assert server_key.auth_key_id.hex() == RECORDED_KEY_ID
    # ...and it is deterministic.
    assert run()[0] == transcript


RECORDED_TRANSCRIPT_SHA256 = "8f60e5d42ea206651f7f21fa4acf1428d9c6f33c594fee101d3596d21e87c383"
RECORDED_KEY_SHA256 = "c969752a72cc29e08a0565001f73448e7cd921761f425acae161af3c8ecfc0b1"
RECORDED_KEY_ID = "4ae99f0c72adae5b"


def test_key_derivations_agree_with_the_created_key() -> None:
    _, key, _ = run(seed=b"derive")
    assert len(key.auth_key) == 256
    assert key.auth_key_id == hashlib.sha1(key.auth_key).digest()[-8:]
    assert key.dc_id == 2 and key.expires_in is None


@pytest.mark.parametrize(("legacy", "expires_in"), [(True, None), (False, 3600), (True, 3600)])
def test_legacy_rsa_and_temporary_keys(legacy: bool, expires_in: int | None) -> None:
    _, server_key, client_key = run(legacy=legacy, expires_in=expires_in, seed=b"variant")
    assert server_key.auth_key == client_key.auth_key
    assert server_key.expires_in == expires_in


def test_inner_data_types_as_sent() -> None:
    """RSA_PAD carries p_q_inner_data_dc; legacy carries plain p_q_inner_data (as Telethon sends)."""
    for legacy, expected in [(False, mt.types.PQInnerDataDc), (True, mt.types.PQInnerData)]:
        req, c1 = handshake.client_start(drbg(b"a"))
        res_pq, _ = handshake.server_start(req, CONFIG, drbg(b"b"))
        req_dh, _ = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"c"), dc_id=2, legacy=legacy)
        raw = rsa.rsa_private_raw(KEY, req_dh.encrypted_data)
        if legacy:
            inner = Reader(raw[21:]).read_object()
        else:
            data = rsa.rsa_pad_unwrap(raw)
            assert data is not None
            inner = Reader(data).read_object()
        assert type(inner) is expected


# -- every refusal looks the same ----------------------------------------------------------------------------


def steps() -> tuple[handshake.ClientStep1, handshake.ServerStep1, TLObject]:
    req, c1 = handshake.client_start(drbg(b"s1"))
    res_pq, s1 = handshake.server_start(req, CONFIG, drbg(b"s2"))
    return c1, s1, res_pq


def bad_req_dh(mutate: Callable[[mt.functions.ReqDHParams], mt.functions.ReqDHParams]) -> None:
    c1, s1, res_pq = steps()
    req_dh, _ = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"s3"), dc_id=2)
    handshake.server_dh_params(s1, wire(mutate(req_dh)), CONFIG, drbg(b"s4"), NOW)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


REQ_DH_MUTATIONS: dict[str, Callable[[mt.functions.ReqDHParams], mt.functions.ReqDHParams]] = {
    "nonce": lambda q: replace(q, nonce=flip(q.nonce, 0)),
    "server_nonce": lambda q: replace(q, server_nonce=flip(q.server_nonce, 3)),
    "p": lambda q: replace(q, p=q.q),
    "q": lambda q: replace(q, q=b"\x01"),
    "fingerprint": lambda q: replace(q, public_key_fingerprint=q.public_key_fingerprint ^ 1),
    "encrypted_data bit": lambda q: replace(q, encrypted_data=flip(q.encrypted_data, 100)),
    "encrypted_data length": lambda q: replace(q, encrypted_data=q.encrypted_data[:255]),
    "encrypted_data >= n": lambda q: replace(q, encrypted_data=b"\xff" * 256),
}


@pytest.mark.parametrize("what", sorted(REQ_DH_MUTATIONS))
def test_every_req_dh_params_refusal_is_the_same_404(what: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        bad_req_dh(REQ_DH_MUTATIONS[what])
    assert type(info.value) is handshake.HandshakeFailed
    assert info.value.transport_error == TransportErrorCode.NOT_FOUND


def test_inner_data_must_match_the_outer_nonces() -> None:
    c1, s1, res_pq = steps()
    other = handshake.ClientStep1(nonce=b"\x07" * 16)
    req_dh, _ = handshake.client_req_dh(other, replace(res_pq, nonce=other.nonce), SERVER_KEYS, drbg(b"x"), dc_id=2)
    with pytest.raises(handshake.HandshakeFailed):
        handshake.server_dh_params(s1, replace(req_dh, nonce=c1.nonce), CONFIG, drbg(b"y"), NOW)


def finish_with(g_b: int | None = None, retry_id: int = 0, sha_ok: bool = True, padding: int = 0) -> None:
    c1, s1, res_pq = steps()
    req_dh, c2 = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"f1"), dc_id=2)
    _, s2 = handshake.server_dh_params(s1, req_dh, CONFIG, drbg(b"f2"), NOW)
    value = g_b if g_b is not None else dh.dh_public(CONFIG.g, 12345 << 2000, CONFIG.dh_prime)
    data = mt.types.ClientDHInnerData(
        nonce=c2.nonce, server_nonce=c2.server_nonce, retry_id=retry_id,
        g_b=value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"),
    ).to_bytes()
    digest = hashlib.sha1(data).digest() if sha_ok else bytes(20)
    block = digest + data
    block += bytes(-len(block) % 16 + padding)
    key, iv = kdf.tmp_aes_key_iv(c2.new_nonce, c2.server_nonce)
    query = mt.functions.SetClientDHParams(
        nonce=c2.nonce, server_nonce=c2.server_nonce, encrypted_data=ige256_encrypt(block, key, iv)
    )
    handshake.server_finish(s2, query, CONFIG)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"g_b": 1},
        {"g_b": CONFIG.dh_prime - 1},
        {"g_b": 2**1000},  # below 2^(2048-64)
        {"g_b": CONFIG.dh_prime - 2**1000},  # within 2^(2048-64) of p
        {"retry_id": 7},
        {"sha_ok": False},
        {"padding": 16},  # 16 or more padding bytes is not what the spec allows
    ],
    ids=["g_b=1", "g_b=p-1", "g_b small", "g_b near p", "retry_id", "sha1", "padding"],
)
def test_every_set_client_dh_params_refusal_is_the_same_404(kwargs: dict[str, int | bool]) -> None:
    with pytest.raises(handshake.HandshakeFailed) as info:
        finish_with(**kwargs)  # type: ignore[arg-type]
    assert info.value.transport_error == TransportErrorCode.NOT_FOUND


def test_a_valid_set_client_dh_params_passes_the_same_harness() -> None:
    finish_with()  # the refusals above are refusals of one change each


def test_messages_out_of_order_are_refused() -> None:
    server = handshake.ServerHandshake(CONFIG, drbg(b"o"))
    set_dh = mt.functions.SetClientDHParams(nonce=bytes(16), server_nonce=bytes(16), encrypted_data=bytes(16))
    with pytest.raises(handshake.HandshakeFailed):
        server.receive(set_dh.to_bytes(), NOW)
    with pytest.raises(handshake.HandshakeFailed):
        server.receive(b"\x01\x02\x03", NOW)


def test_retry_path() -> None:
    req, c1 = handshake.client_start(drbg(b"r1"))
    res_pq, s1 = handshake.server_start(req, CONFIG, drbg(b"r2"))
    req_dh, c2 = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"r3"), dc_id=2)
    dh_ok, s2 = handshake.server_dh_params(s1, req_dh, CONFIG, drbg(b"r4"), NOW)
    set_dh, c3 = handshake.client_set_dh(c2, dh_ok, drbg(b"r5"), NOW)
    _, refused = handshake.server_finish(s2, set_dh, CONFIG)
    retry, s2b = handshake.server_retry(s2, refused)  # as if the key id were taken
    again = handshake.client_finish(c3, wire(retry), drbg(b"r6"))
    assert isinstance(again, tuple)
    set_dh2, c3b = again
    assert set_dh2.encrypted_data != set_dh.encrypted_data
    gen_ok, created = handshake.server_finish(s2b, wire(set_dh2), CONFIG)
    client_key = handshake.client_finish(c3b, wire(gen_ok), drbg(b"r7"))
    assert isinstance(client_key, handshake.CreatedKey)
    assert client_key.auth_key == created.auth_key != refused.auth_key


def test_client_refuses_tampered_server_answers() -> None:
    req, c1 = handshake.client_start(drbg(b"t1"))
    res_pq, s1 = handshake.server_start(req, CONFIG, drbg(b"t2"))
    with pytest.raises(RemoteProtocolError):
        handshake.client_req_dh(c1, replace(res_pq, nonce=bytes(16)), SERVER_KEYS, drbg(b"t3"), dc_id=2)
    with pytest.raises(RemoteProtocolError):
        handshake.client_req_dh(c1, replace(res_pq, server_public_key_fingerprints=[1]), SERVER_KEYS, drbg(b"t"),
                                dc_id=2)
    req_dh, c2 = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"t3"), dc_id=2)
    dh_ok, s2 = handshake.server_dh_params(s1, req_dh, CONFIG, drbg(b"t4"), NOW)
    with pytest.raises(RemoteProtocolError):
        handshake.client_set_dh(c2, replace(dh_ok, encrypted_answer=flip(dh_ok.encrypted_answer, 40)), drbg(b"t"), NOW)
    set_dh, c3 = handshake.client_set_dh(c2, dh_ok, drbg(b"t5"), NOW)
    gen_ok, _ = handshake.server_finish(s2, set_dh, CONFIG)
    with pytest.raises(RemoteProtocolError):
        handshake.client_finish(c3, replace(gen_ok, new_nonce_hash1=bytes(16)), drbg(b"t6"))


def test_plain_message_framing() -> None:
    body = mt.functions.ReqPqMulti(nonce=bytes(16)).to_bytes()
    packed = handshake.pack_plain(1 << 32, body)
    assert handshake.unpack_plain(packed) == (1 << 32, body)
    assert handshake.unpack_plain(packed + bytes(12), padded=True) == (1 << 32, body)
    for bad in (packed[:-1], packed + bytes(4), b"\x01" + packed[1:], packed[:10]):
        with pytest.raises(handshake.HandshakeFailed):
            handshake.unpack_plain(bad)


def test_a_key_for_another_dc_is_refused_with_444() -> None:
    c1, s1, res_pq = steps()
    req_dh, _ = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"dc"), dc_id=4)
    with pytest.raises(handshake.HandshakeFailed) as info:
        handshake.server_dh_params(s1, req_dh, CONFIG, drbg(b"dc2"), NOW)
    assert info.value.transport_error == TransportErrorCode.INVALID_DC
    # the test-server form of our own DC (+10000) is ours
    c1, s1, res_pq = steps()
    req_dh, _ = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"dc"), dc_id=10002)
    handshake.server_dh_params(s1, req_dh, CONFIG, drbg(b"dc2"), NOW)


def test_temporary_key_lifetime_is_bounded() -> None:
    for expires_in in (0, -5, handshake.MAX_TEMP_KEY_LIFETIME + 1):
        c1, s1, res_pq = steps()
        req_dh, _ = handshake.client_req_dh(c1, res_pq, SERVER_KEYS, drbg(b"t"), dc_id=2, expires_in=expires_in)
        with pytest.raises(handshake.HandshakeFailed):
            handshake.server_dh_params(s1, req_dh, CONFIG, drbg(b"t2"), NOW)
