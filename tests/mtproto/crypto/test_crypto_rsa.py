"""The server's RSA key: PEM files, the fingerprint, the raw private operation, RSA_PAD and the legacy padding."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable

import crypto_vectors as v
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mtproto.crypto.ige import ige256_encrypt
from mtproto.crypto.rsa import (
    RsaKey,
    fingerprint,
    generate_rsa_key,
    load_private_pem,
    load_public_pem,
    private_pem,
    public_pem_pkcs1,
    rsa_legacy_encrypt,
    rsa_legacy_unwrap,
    rsa_pad_encrypt,
    rsa_pad_unwrap,
    rsa_private_raw,
)
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode


@pytest.fixture(scope="module")
def key() -> RsaKey:
    return generate_rsa_key()


def seeded(seed: int) -> Callable[[int], bytes]:
    """A reproducible randbytes for tests (never for real keys)."""
    return random.Random(seed).randbytes


# --- key storage ---------------------------------------------------------------------------------------------


def test_generated_key_is_2048_bit_with_e_65537(key: RsaKey) -> None:
    assert key.n.bit_length() == 2048
    assert key.e == 65537
    assert pow(pow(12345, key.e, key.n), key.d, key.n) == 12345


def test_repr_hides_the_private_parts(key: RsaKey) -> None:
    text = repr(key)
    assert str(key.n) in text
    for secret in (key.d, key.p, key.q, key.dp, key.dq, key.qinv):
        assert str(secret) not in text


def test_inconsistent_key_is_refused(key: RsaKey) -> None:
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(key, qinv=key.qinv + 1)
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(key, n=key.n + 2)


def test_pkcs8_pem_round_trip(key: RsaKey) -> None:
    pem = private_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_pem(pem) == key


def test_pkcs1_private_pem_loads(key: RsaKey) -> None:
    # "-----BEGIN RSA PRIVATE KEY-----", the form `openssl genrsa` used to write.
    other = crypto_rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    loaded = load_private_pem(pem)
    assert (loaded.n, loaded.d) == (other.private_numbers().public_numbers.n, other.private_numbers().d)


def test_public_pem_is_pkcs1_and_loads_back(key: RsaKey) -> None:
    pem = public_pem_pkcs1(key)
    assert pem.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    assert load_public_pem(pem) == (key.n, key.e)


def test_bad_pem_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        load_private_pem(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(LocalProtocolError):
        load_private_pem(ec_pem)
    with pytest.raises(LocalProtocolError):
        load_public_pem(b"garbage")
    encrypted_pem = crypto_rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(LocalProtocolError):
        load_private_pem(encrypted_pem)
    with pytest.raises(LocalProtocolError):
        generate_rsa_key(512)


# --- fingerprint -----------------------------------------------------------------------------------------------


def test_fingerprint_of_telegram_production_key() -> None:
    n, e = load_public_pem(v.TELEGRAM_PRODUCTION_KEY_PEM)
    fp = fingerprint(n, e)
    # As a signed long, and as the 8 bytes resPQ carries in the samples-auth_key example.
    assert fp == v.TELEGRAM_PRODUCTION_KEY_FINGERPRINT_U64 - (1 << 64)
    assert fp.to_bytes(8, "little", signed=True) == v.SERVER_PUBLIC_KEY_FINGERPRINTS[2]


def test_fingerprint_depends_on_both_numbers(key: RsaKey) -> None:
    assert fingerprint(key.n, key.e) != fingerprint(key.n, 3)
    assert fingerprint(key.n, key.e) != fingerprint(key.n + 2, key.e)


# --- raw RSA ---------------------------------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(value=st.integers(min_value=0))
def test_private_raw_matches_textbook_rsa(key: RsaKey, value: int) -> None:
    c = value % key.n
    expected = pow(c, key.d, key.n).to_bytes(256, "big")
    assert rsa_private_raw(key, c.to_bytes(256, "big")) == expected


def test_private_raw_rejects_values_not_below_n(key: RsaKey) -> None:
    for c in (key.n, key.n + 1, (1 << 2048) - 1):
        with pytest.raises(RemoteProtocolError) as info:
            rsa_private_raw(key, c.to_bytes(256, "big"))
        assert info.value.transport_error is TransportErrorCode.NOT_FOUND


@pytest.mark.parametrize("length", [0, 255, 257])
def test_private_raw_rejects_wrong_lengths(key: RsaKey, length: int) -> None:
    with pytest.raises(RemoteProtocolError):
        rsa_private_raw(key, bytes(length))


def test_mtproto_operations_need_a_2048_bit_modulus() -> None:
    small = generate_rsa_key(1024)
    with pytest.raises(LocalProtocolError):
        rsa_private_raw(small, bytes(256))
    with pytest.raises(LocalProtocolError):
        rsa_pad_encrypt(small.n, small.e, b"data", seeded(1))
    with pytest.raises(LocalProtocolError):
        rsa_legacy_encrypt(small.n, small.e, b"data", seeded(1))


# --- RSA_PAD ---------------------------------------------------------------------------------------------------


def textbook_rsa_pad_block(data_with_padding: bytes, temp_key: bytes) -> int:
    """auth_key 4.1 up to key_aes_encrypted, transcribed step by step (the number before exponentiation)."""
    data_pad_reversed = data_with_padding[::-1]
    data_with_hash = data_pad_reversed + hashlib.sha256(temp_key + data_with_padding).digest()
    aes_encrypted = ige256_encrypt(data_with_hash, temp_key, bytes(32))
    temp_key_xor = bytes(a ^ b for a, b in zip(temp_key, hashlib.sha256(aes_encrypted).digest(), strict=True))
    return int.from_bytes(temp_key_xor + aes_encrypted, "big")


@settings(max_examples=10, deadline=None)
@given(data=st.binary(max_size=144), seed=st.integers())
def test_rsa_pad_round_trip(key: RsaKey, data: bytes, seed: int) -> None:
    encrypted = rsa_pad_encrypt(key.n, key.e, data, seeded(seed))
    unwrapped = rsa_pad_unwrap(rsa_private_raw(key, encrypted))
    assert unwrapped is not None
    assert len(unwrapped) == 192
    assert unwrapped.startswith(data)
    # The padding is the next bytes of randbytes, as the spec's first step takes them.
    assert unwrapped[len(data) :] == seeded(seed)(192 - len(data))


def test_rsa_pad_retries_with_a_new_temp_key_while_not_below_n(key: RsaKey) -> None:
    data = b"p_q_inner_data_dc stand-in"
    padding = seeded(7)(192 - len(data))
    # Find a temp_key whose block is >= n (about one in four for a random 2048-bit n) and one that is below.
    candidates = (seeded(1000 + i)(32) for i in range(10_000))
    too_big = next(t for t in candidates if textbook_rsa_pad_block(data + padding, t) >= key.n)
    fits = next(t for t in candidates if textbook_rsa_pad_block(data + padding, t) < key.n)
    draws = iter([padding, too_big, fits])
    encrypted = rsa_pad_encrypt(key.n, key.e, data, lambda n: next(draws))
    assert next(draws, None) is None  # all three draws were used: padding once, then two temp_keys
    expected = pow(textbook_rsa_pad_block(data + padding, fits), key.e, key.n)
    assert encrypted == expected.to_bytes(256, "big")
    assert rsa_pad_unwrap(rsa_private_raw(key, encrypted)) == data + padding


def test_rsa_pad_rejects_every_flipped_bit(key: RsaKey) -> None:
    raw = rsa_private_raw(key, rsa_pad_encrypt(key.n, key.e, b"inner data", seeded(3)))
    assert rsa_pad_unwrap(raw) is not None
    for bit in range(len(raw) * 8):
        broken = bytearray(raw)
        broken[bit // 8] ^= 1 << (bit % 8)
        assert rsa_pad_unwrap(bytes(broken)) is None


def test_rsa_pad_rejects_a_flipped_ciphertext_bit(key: RsaKey) -> None:
    encrypted = bytearray(rsa_pad_encrypt(key.n, key.e, b"inner data", seeded(4)))
    encrypted[100] ^= 0x10
    raw = rsa_private_raw(key, bytes(encrypted))
    assert rsa_pad_unwrap(raw) is None


def test_rsa_pad_data_limit(key: RsaKey) -> None:
    rsa_pad_encrypt(key.n, key.e, bytes(144), seeded(5))
    with pytest.raises(LocalProtocolError):
        rsa_pad_encrypt(key.n, key.e, bytes(145), seeded(5))


def test_short_randbytes_is_a_local_error(key: RsaKey) -> None:
    with pytest.raises(LocalProtocolError):
        rsa_pad_encrypt(key.n, key.e, b"x", lambda n: bytes(n - 1))


# --- legacy padding --------------------------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(data=st.binary(max_size=235), seed=st.integers())
def test_legacy_round_trip(key: RsaKey, data: bytes, seed: int) -> None:
    raw = rsa_private_raw(key, rsa_legacy_encrypt(key.n, key.e, data, seeded(seed)))
    split = rsa_legacy_unwrap(raw)
    assert split is not None
    digest, rest = split
    assert digest == hashlib.sha1(data).digest()
    assert rest.startswith(data)
    assert len(rest) == 235


def test_legacy_block_is_not_taken_for_rsa_pad(key: RsaKey) -> None:
    raw = rsa_private_raw(key, rsa_legacy_encrypt(key.n, key.e, b"p_q_inner_data", seeded(6)))
    assert rsa_pad_unwrap(raw) is None


def test_legacy_unwrap_needs_a_leading_zero_byte() -> None:
    assert rsa_legacy_unwrap(b"\x01" + bytes(255)) is None


def test_legacy_data_limit(key: RsaKey) -> None:
    with pytest.raises(LocalProtocolError):
        rsa_legacy_encrypt(key.n, key.e, bytes(236), seeded(8))
