"""Key derivation: Telegram's worked example where it has figures, the spec's formulas elsewhere."""

from __future__ import annotations

import hashlib

import crypto_vectors as v
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtproto.crypto.kdf import (
    auth_key_aux_hash,
    auth_key_id,
    message_key_iv,
    message_key_iv_v1,
    msg_key,
    msg_key_large,
    msg_key_v1,
    new_nonce_hash,
    quick_ack_token,
    server_salt,
    tmp_aes_key_iv,
)
from mtproto.errors import LocalProtocolError

auth_keys = st.binary(min_size=256, max_size=256)
plaintexts = st.integers(min_value=1, max_value=20).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))


def test_tmp_aes_key_iv_matches_telegram_sample() -> None:
    # core.telegram.org/mtproto/samples-auth_key, step 6 inputs.
    assert tmp_aes_key_iv(v.NEW_NONCE, v.SERVER_NONCE) == (v.TMP_AES_KEY, v.TMP_AES_IV)


def test_tmp_aes_key_iv_is_not_symmetric_in_the_nonces() -> None:
    # Swapping the two nonces' roles must change the key: guards against an argument-order slip.
    swapped = tmp_aes_key_iv(v.NEW_NONCE[16:] + v.NEW_NONCE[:16], v.SERVER_NONCE)
    assert swapped != (v.TMP_AES_KEY, v.TMP_AES_IV)


def test_new_nonce_hash1_matches_telegram_sample() -> None:
    # samples-auth_key step 9: dh_gen_ok.new_nonce_hash1 for the example's auth_key.
    assert new_nonce_hash(v.NEW_NONCE, 1, v.AUTH_KEY) == v.NEW_NONCE_HASH1


def test_new_nonce_hashes_differ_per_answer() -> None:
    hashes = {new_nonce_hash(v.NEW_NONCE, n, v.AUTH_KEY) for n in (1, 2, 3)}
    assert len(hashes) == 3


@pytest.mark.parametrize("n", [0, 4, 255])
def test_new_nonce_hash_number_must_be_1_2_3(n: int) -> None:
    with pytest.raises(LocalProtocolError):
        new_nonce_hash(v.NEW_NONCE, n, v.AUTH_KEY)


def test_auth_key_id_and_aux_hash_are_the_two_ends_of_sha1() -> None:
    digest = hashlib.sha1(v.AUTH_KEY).digest()
    assert auth_key_id(v.AUTH_KEY) == digest[12:20]  # 64 lower-order bits: the *last* 8 bytes
    assert auth_key_aux_hash(v.AUTH_KEY) == digest[0:8]  # 64 higher-order bits


def test_server_salt_of_telegram_sample() -> None:
    # substr(new_nonce, 0, 8) XOR substr(server_nonce, 0, 8), worked by hand from the example's nonces:
    # A8BBC849512DAC6C ^ E11DBC3BC97D91A2 = 49A6747298503DCE
    assert server_salt(v.NEW_NONCE, v.SERVER_NONCE) == bytes.fromhex("49A6747298503DCE")


@given(auth_key=auth_keys, plaintext=plaintexts, from_client=st.booleans())
def test_msg_key_is_the_middle_of_msg_key_large(auth_key: bytes, plaintext: bytes, from_client: bool) -> None:
    x = 0 if from_client else 8
    large = hashlib.sha256(auth_key[88 + x : 120 + x] + plaintext).digest()
    assert msg_key_large(auth_key, plaintext, from_client=from_client) == large
    assert msg_key(auth_key, plaintext, from_client=from_client) == large[8:24]


@given(auth_key=auth_keys, key=st.binary(min_size=16, max_size=16), from_client=st.booleans())
def test_message_key_iv_follows_the_spec(auth_key: bytes, key: bytes, from_client: bool) -> None:
    # Transcribed from core.telegram.org/mtproto/description, "Defining AES Key and Initialization Vector".
    x = 0 if from_client else 8
    sha256_a = hashlib.sha256(key + auth_key[x : x + 36]).digest()
    sha256_b = hashlib.sha256(auth_key[40 + x : 40 + x + 36] + key).digest()
    aes_key = sha256_a[0:8] + sha256_b[8 : 8 + 16] + sha256_a[24 : 24 + 8]
    aes_iv = sha256_b[0:8] + sha256_a[8 : 8 + 16] + sha256_b[24 : 24 + 8]
    assert message_key_iv(auth_key, key, from_client=from_client) == (aes_key, aes_iv)


@given(key=st.binary(min_size=16, max_size=16))
def test_directions_get_different_keys(key: bytes) -> None:
    # A real auth_key (a constant one, all zeros say, would make both directions' slices equal).
    assert message_key_iv(v.AUTH_KEY, key, from_client=True) != message_key_iv(v.AUTH_KEY, key, from_client=False)


@given(auth_key=auth_keys, plaintext=plaintexts)
def test_quick_ack_token(auth_key: bytes, plaintext: bytes) -> None:
    # mtproto-transports "Quick ack": msg_key_long[0:4] as a little-endian int, most significant bit set.
    large = msg_key_large(auth_key, plaintext, from_client=True)
    token = quick_ack_token(large)
    assert token >> 31 == 1
    assert token.to_bytes(4, "little")[:3] == large[:3]
    assert token.to_bytes(4, "little")[3] == large[3] | 0x80


@pytest.mark.parametrize("length", [0, 255, 257])
def test_auth_key_must_be_256_bytes(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        auth_key_id(bytes(length))
    with pytest.raises(LocalProtocolError):
        msg_key_large(bytes(length), bytes(16), from_client=True)
    with pytest.raises(LocalProtocolError):
        message_key_iv(bytes(length), bytes(16), from_client=True)


def test_other_length_checks() -> None:
    with pytest.raises(LocalProtocolError):
        message_key_iv(v.AUTH_KEY, bytes(15), from_client=True)
    with pytest.raises(LocalProtocolError):
        tmp_aes_key_iv(v.NEW_NONCE[:16], v.SERVER_NONCE)
    with pytest.raises(LocalProtocolError):
        server_salt(v.NEW_NONCE, v.SERVER_NONCE + b"\0")
    with pytest.raises(LocalProtocolError):
        quick_ack_token(bytes(16))


# -- MTProto 1.0, kept for auth.bindTempAuthKey's binding message only -----------------------------------------


def substr(s: bytes, start: int, length: int) -> bytes:
    """The spec's own notation: ``substr(s, start, length)``."""
    return s[start : start + length]


@given(auth_key=auth_keys, key=st.binary(min_size=16, max_size=16), from_client=st.booleans())
def test_message_key_iv_v1_follows_the_spec(auth_key: bytes, key: bytes, from_client: bool) -> None:
    # Transcribed from core.telegram.org/mtproto/description_v1, "Defining AES Key and Initialization Vector",
    # in its substr() notation (the same formulas tdlib's KDF and MadelineProto's oldAesCalculate implement).
    x = 0 if from_client else 8

    def sha1(s: bytes) -> bytes:
        return hashlib.sha1(s).digest()

    sha1_a = sha1(key + substr(auth_key, x, 32))
    sha1_b = sha1(substr(auth_key, 32 + x, 16) + key + substr(auth_key, 48 + x, 16))
    sha1_c = sha1(substr(auth_key, 64 + x, 32) + key)
    sha1_d = sha1(key + substr(auth_key, 96 + x, 32))
    aes_key = substr(sha1_a, 0, 8) + substr(sha1_b, 8, 12) + substr(sha1_c, 4, 12)
    aes_iv = substr(sha1_a, 8, 12) + substr(sha1_b, 0, 8) + substr(sha1_c, 16, 4) + substr(sha1_d, 0, 8)
    assert message_key_iv_v1(auth_key, key, from_client=from_client) == (aes_key, aes_iv)
    assert len(aes_key) == len(aes_iv) == 32


@given(plaintext=st.binary(max_size=200))
def test_msg_key_v1_is_the_low_128_bits_of_sha1(plaintext: bytes) -> None:
    # "the lower 128 bits of the SHA1 hash of the message", i.e. the last 16 of the digest's 20 bytes
    assert msg_key_v1(plaintext) == hashlib.sha1(plaintext).digest()[-16:]


def test_message_key_iv_v1_differs_by_direction_and_from_2_0() -> None:
    key = bytes(range(16))
    client = message_key_iv_v1(v.AUTH_KEY, key, from_client=True)
    assert client != message_key_iv_v1(v.AUTH_KEY, key, from_client=False)
    assert client != message_key_iv(v.AUTH_KEY, key, from_client=True)


def test_message_key_iv_v1_checks_its_inputs() -> None:
    with pytest.raises(LocalProtocolError):
        message_key_iv_v1(bytes(255), bytes(16), from_client=True)
    with pytest.raises(LocalProtocolError):
        message_key_iv_v1(v.AUTH_KEY, bytes(15), from_client=True)
