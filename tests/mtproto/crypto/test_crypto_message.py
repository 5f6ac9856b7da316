"""The encrypted-message envelope: round trips, layout, and one uniform failure for every kind of tampering."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import crypto_vectors as v
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtproto.crypto.ige import ige256_decrypt
from mtproto.crypto.kdf import auth_key_id, message_key_iv, msg_key
from mtproto.crypto.message import decrypt_message, encrypt_message
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

auth_keys = st.binary(min_size=256, max_size=256)
plaintexts = st.integers(min_value=1, max_value=64).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))

KEY = v.AUTH_KEY
OTHER_KEY = hashlib.shake_256(b"another auth key").digest(256)
PLAINTEXT = hashlib.shake_256(b"salt, session, msg_id, seq_no, length, body, padding").digest(64)


def assert_uniform_rejection(key: bytes, data: bytes, *, from_client: bool) -> None:
    """Every failure must look the same from outside: this exact class, transport error -404."""
    with pytest.raises(RemoteProtocolError) as info:
        decrypt_message(key, data, from_client=from_client)
    assert type(info.value) is RemoteProtocolError
    assert info.value.transport_error is TransportErrorCode.NOT_FOUND


@given(auth_key=auth_keys, plaintext=plaintexts, from_client=st.booleans())
def test_round_trip_both_directions(auth_key: bytes, plaintext: bytes, from_client: bool) -> None:
    sealed = encrypt_message(auth_key, plaintext, from_client=from_client)
    assert decrypt_message(auth_key, sealed, from_client=from_client) == plaintext


@given(auth_key=auth_keys, plaintext=plaintexts, from_client=st.booleans())
def test_layout_follows_the_spec(auth_key: bytes, plaintext: bytes, from_client: bool) -> None:
    # auth_key_id (8) | msg_key (16) | AES-256-IGE(plaintext) under the key and iv derived from msg_key.
    sealed = encrypt_message(auth_key, plaintext, from_client=from_client)
    assert len(sealed) == 24 + len(plaintext)
    assert sealed[:8] == auth_key_id(auth_key)
    assert sealed[8:24] == msg_key(auth_key, plaintext, from_client=from_client)
    aes_key, aes_iv = message_key_iv(auth_key, sealed[8:24], from_client=from_client)
    assert ige256_decrypt(sealed[24:], aes_key, aes_iv) == plaintext


@pytest.mark.parametrize("from_client", [True, False])
def test_every_single_bit_flip_is_rejected_the_same_way(from_client: bool) -> None:
    sealed = encrypt_message(KEY, PLAINTEXT, from_client=from_client)
    for bit in range(len(sealed) * 8):
        broken = bytearray(sealed)
        broken[bit // 8] ^= 1 << (bit % 8)
        assert_uniform_rejection(KEY, bytes(broken), from_client=from_client)


@pytest.mark.parametrize("from_client", [True, False])
def test_wrong_direction_is_rejected(from_client: bool) -> None:
    sealed = encrypt_message(KEY, PLAINTEXT, from_client=from_client)
    assert_uniform_rejection(KEY, sealed, from_client=not from_client)


def test_wrong_key_is_rejected() -> None:
    sealed = encrypt_message(KEY, PLAINTEXT, from_client=True)
    assert_uniform_rejection(OTHER_KEY, sealed, from_client=True)
    # Even with the other key's id pasted in front, so that the msg_key check is the one that fails.
    forged = auth_key_id(OTHER_KEY) + sealed[8:]
    assert_uniform_rejection(OTHER_KEY, forged, from_client=True)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s[:24], id="header-only"),
        pytest.param(lambda s: s[:39], id="short"),
        pytest.param(lambda s: s[:-1], id="not-whole-blocks"),
        pytest.param(lambda s: s[:-16], id="one-block-less"),
        pytest.param(lambda s: s + bytes(16), id="one-block-more"),
        pytest.param(lambda s: s[:24] + s[40:], id="first-block-removed"),
    ],
)
def test_malformed_lengths_are_rejected_the_same_way(cut: Callable[[bytes], bytes]) -> None:
    sealed = encrypt_message(KEY, PLAINTEXT, from_client=True)
    assert_uniform_rejection(KEY, cut(sealed), from_client=True)


@pytest.mark.parametrize("length", [0, 15, 17, 40])
def test_encrypt_needs_whole_blocks(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        encrypt_message(KEY, bytes(length), from_client=True)
