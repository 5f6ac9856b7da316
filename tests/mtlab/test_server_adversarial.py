"""Hostile bytes into the whole server side (transport -> handshake -> session): only a reply or a clean close.

``PairServer.feed`` is the same pipeline the gateway runs per connection. Whatever a client sends, the
server either answers or closes (with the right transport error); no other exception may escape, since the
gateway's loop must go on serving everyone else.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mtlab.selfcheck import PairServer, _Close
from mtproto import handshake
from mtproto.crypto import rsa
from mtproto.session import SaltPolicy
from mtproto.tl import mt
from mtproto.transport import ClientTransport, TransportKind

KEY = rsa.load_private_pem((Path(__file__).parent.parent / "mtproto" / "data" / "test_rsa_key.pem").read_bytes())
CONFIG = handshake.ServerConfig(rsa_keys=(KEY,), dc_id=2)


def feed_all(chunks: list[bytes]) -> None:
    server = PairServer(CONFIG, SaltPolicy(b"a" * 32), os.urandom)
    for chunk in chunks:
        try:
            server.feed(chunk, time.time())
        except _Close:
            return


def valid_start(kind: TransportKind, obfuscated: bool, seed: int = 0) -> bytes:
    """The first bytes of an honest client: transport preamble + req_pq_multi (randomness from ``seed``)."""
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=random.Random(seed).randbytes)
    return client.send_frame(handshake.pack_plain(1 << 32, mt.functions.ReqPqMulti(nonce=bytes(16)).to_bytes()))


starts = st.sampled_from(
    [(k, False) for k in TransportKind] + [(k, True) for k in TransportKind if k is not TransportKind.FULL]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_arbitrary_bytes(chunks: list[bytes]) -> None:
    feed_all(chunks)


@settings(max_examples=200, deadline=None)
@given(starts, st.lists(st.binary(max_size=200), max_size=4))
def test_garbage_after_a_valid_start(start: tuple[TransportKind, bool], chunks: list[bytes]) -> None:
    feed_all([valid_start(*start), *chunks])


@settings(max_examples=200, deadline=None)
@given(starts, st.data())
def test_bit_flips_and_truncations_of_a_valid_start(start: tuple[TransportKind, bool], data: st.DataObject) -> None:
    stream = valid_start(*start, seed=data.draw(st.integers(0, 2**32)))
    if data.draw(st.booleans()):
        stream = stream[: data.draw(st.integers(0, len(stream)))]
    else:
        bit = data.draw(st.integers(0, len(stream) * 8 - 1))
        stream = stream[: bit // 8] + bytes([stream[bit // 8] ^ (1 << bit % 8)]) + stream[bit // 8 + 1 :]
    feed_all([stream])
