"""Hostile input to the server side of the session layer: only the protocol's own outcomes, never a crash.

Arbitrary bytes, truncations and bit flips of a valid payload may only make ``open_message`` raise
``RemoteProtocolError`` (the connection closes with -404). Whatever decrypts correctly, ``ServerSession.receive``
must turn into events and queued notifications: it must never raise, since one client's garbage must not take
down the gateway's loop.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtproto.errors import RemoteProtocolError, TransportErrorCode
from mtproto.session import AuthKey, Plain, SaltPolicy, ServerSession, open_message, seal
from mtproto.session.common import Inner, pack_container
from mtproto.tl import api, gzip_pack, mt
from tests.helpers.session import NOW, drbg

KEY = AuthKey.from_bytes(os.urandom(256))
SALTS = SaltPolicy(b"k" * 32)
SALT = SALTS.current(KEY.id, NOW)
BASE = int(NOW) << 32

VALID_BODIES = [
    mt.functions.Ping(ping_id=1).to_bytes(),
    mt.types.MsgsAck(msg_ids=[1, 2]).to_bytes(),
    mt.functions.GetFutureSalts(num=1000).to_bytes(),
    mt.types.MsgsStateReq(msg_ids=[BASE]).to_bytes(),
    mt.functions.DestroySession(session_id=3).to_bytes(),
    gzip_pack(api.functions.help.GetConfig().to_bytes()),
    pack_container([Inner(BASE + 4, 1, mt.functions.Ping(ping_id=2).to_bytes())]),
]

settings.register_profile("session", deadline=None, suppress_health_check=[HealthCheck.too_slow])


def words(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_payloads_only_fail_as_remote_errors(data: bytes) -> None:
    try:
        open_message(KEY, data, from_client=True)
    except RemoteProtocolError as exc:
        assert exc.transport_error == TransportErrorCode.NOT_FOUND
    else:
        raise AssertionError("random bytes decrypted")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID_BODIES), st.data())
def test_truncations_and_bit_flips_are_uniform_failures(body: bytes, data: st.DataObject) -> None:
    payload = seal(KEY, Plain(SALT, 5, BASE + 8, 1, body), drbg(b"flip"), from_client=True)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(payload) - 1))
        bad = payload[:cut]
    else:
        bit = data.draw(st.integers(0, len(payload) * 8 - 1))
        bad = bytearray(payload)
        bad[bit // 8] ^= 1 << (bit % 8)
        bad = bytes(bad)
    try:
        open_message(KEY, bad, from_client=True)
    except RemoteProtocolError as exc:
        assert exc.transport_error == TransportErrorCode.NOT_FOUND
    else:
        raise AssertionError("a damaged payload was accepted")


bodies = st.one_of(
    st.binary(max_size=300).map(words),
    st.sampled_from(VALID_BODIES),
    # a valid constructor id followed by junk: the decoders behind the service handlers must cope
    st.tuples(st.sampled_from(VALID_BODIES), st.binary(max_size=64)).map(lambda t: words(t[0][:4] + t[1])),
    # containers of junk
    st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1),
                       st.binary(max_size=40).map(words)), max_size=5)
    .map(lambda items: pack_container([Inner(i, s, b) for i, s, b in items])),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 40), st.integers(0, 64), st.sampled_from([SALT, 0, 12345]), bodies),
        min_size=1,
        max_size=8,
    )
)
def test_server_session_never_raises_on_decrypted_garbage(messages: list[tuple[int, int, int, bytes]]) -> None:
    session = ServerSession(KEY, 5, salts=SALTS, randbytes=drbg(b"garbage"))
    for offset, seq_no, salt, body in messages:
        session.receive(Plain(salt, 5, BASE + offset, seq_no, body), NOW)
        for payload in session.data_to_send(NOW, flush_acks=True):
            # whatever the server answers decrypts on the client side
            open_message(KEY, payload, from_client=False)
