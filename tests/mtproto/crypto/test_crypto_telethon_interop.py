"""Interoperability with Telethon (the pinned dev dependency), the client library students will point at us.

Telethon's own crypto is an independent implementation of the same spec: where both compute a value, they must
agree byte for byte, and what one encrypts the other must open.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import struct
import time
from typing import Any

import crypto_vectors as v
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtproto.crypto.kdf import auth_key_aux_hash, auth_key_id, message_key_iv, new_nonce_hash
from mtproto.crypto.message import decrypt_message, encrypt_message
from mtproto.crypto.rsa import (
    RsaKey,
    fingerprint,
    generate_rsa_key,
    public_pem_pkcs1,
    rsa_legacy_unwrap,
    rsa_private_raw,
)

telethon_authkey = pytest.importorskip("telethon.crypto.authkey")
telethon_rsa = pytest.importorskip("telethon.crypto.rsa")
telethon_state = pytest.importorskip("telethon.network.mtprotostate")
telethon_types = pytest.importorskip("telethon.tl.types")


@pytest.fixture(scope="module")
def key() -> RsaKey:
    return generate_rsa_key()


def test_fingerprint_and_pem_agree_with_telethon(key: RsaKey) -> None:
    # Telethon parses our PKCS#1 public PEM with the `rsa` package and computes the fingerprint its own way.
    telethon_rsa.add_key(public_pem_pkcs1(key).decode(), old=False)
    fp = fingerprint(key.n, key.e)
    assert fp in telethon_rsa._server_keys
    # And Telegram's production key gets the same fingerprint in both implementations.
    telethon_rsa.add_key(v.TELEGRAM_PRODUCTION_KEY_PEM.decode(), old=False)
    assert v.TELEGRAM_PRODUCTION_KEY_FINGERPRINT_U64 - (1 << 64) in telethon_rsa._server_keys


def test_telethon_legacy_rsa_opens_on_our_side(key: RsaKey) -> None:
    telethon_rsa.add_key(public_pem_pkcs1(key).decode(), old=False)
    data = os.urandom(100)
    encrypted = telethon_rsa.encrypt(fingerprint(key.n, key.e), data)
    split = rsa_legacy_unwrap(rsa_private_raw(key, encrypted))
    assert split is not None
    digest, rest = split
    assert digest == hashlib.sha1(data).digest() and rest.startswith(data)


@given(key=st.binary(min_size=16, max_size=16), from_client=st.booleans())
def test_message_key_iv_agrees(key: bytes, from_client: bool) -> None:
    assert message_key_iv(v.AUTH_KEY, key, from_client=from_client) == telethon_state.MTProtoState._calc_key(
        v.AUTH_KEY, key, from_client
    )


def test_key_ids_and_new_nonce_hash_agree() -> None:
    theirs = telethon_authkey.AuthKey(v.AUTH_KEY)
    assert int.from_bytes(auth_key_id(v.AUTH_KEY), "little") == theirs.key_id
    assert int.from_bytes(auth_key_aux_hash(v.AUTH_KEY), "little") == theirs.aux_hash
    new_nonce_int = int.from_bytes(v.NEW_NONCE, "little", signed=True)
    for n in (1, 2, 3):
        ours = int.from_bytes(new_nonce_hash(v.NEW_NONCE, n, v.AUTH_KEY), "little", signed=True)
        assert ours == theirs.calc_new_nonce_hash(new_nonce_int, n)


def _telethon_state() -> Any:
    loggers = {telethon_state.__name__: logging.getLogger("telethon-interop")}
    return telethon_state.MTProtoState(telethon_authkey.AuthKey(v.AUTH_KEY), loggers)


def test_telethon_client_message_opens_on_the_server() -> None:
    state = _telethon_state()
    inner = os.urandom(8) + os.urandom(8) + os.urandom(37)  # msg_id, seq_no, length, body: opaque to crypto
    sealed = state.encrypt_message_data(inner)
    plaintext = decrypt_message(v.AUTH_KEY, sealed, from_client=True)
    assert plaintext[:8] == struct.pack("<q", state.salt)
    assert plaintext[8:16] == struct.pack("<q", state.id)
    assert plaintext[16 : 16 + len(inner)] == inner
    assert 12 <= len(plaintext) - 16 - len(inner) <= 1024


def test_server_message_opens_in_telethon() -> None:
    state = _telethon_state()
    pong = telethon_types.Pong(msg_id=4, ping_id=random.getrandbits(63))
    body = bytes(pong)
    msg_id = (int(time.time()) << 32) | 1  # a server response id: odd, about now
    header = struct.pack("<qqqii", 0, state.id, msg_id, 1, len(body))
    padding = os.urandom(-(len(header) + len(body) + 12) % 16 + 12)
    sealed = encrypt_message(v.AUTH_KEY, header + body + padding, from_client=False)
    message = state.decrypt_message_data(sealed)
    assert message is not None
    assert message.msg_id == msg_id
    assert message.obj == pong
