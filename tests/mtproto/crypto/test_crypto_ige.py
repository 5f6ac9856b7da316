"""AES-IGE: published vectors, and the fast path, the reference path and a textbook loop agreeing on anything."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import crypto_vectors as v
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from mtproto.crypto import ige
from mtproto.crypto.ige import (
    ige256_decrypt,
    ige256_decrypt_reference,
    ige256_encrypt,
    ige256_encrypt_reference,
)
from mtproto.crypto.kdf import tmp_aes_key_iv
from mtproto.errors import LocalProtocolError

IgeFn = Callable[[bytes, bytes, bytes], bytes]


def _xor16(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def textbook_ige(data: bytes, key: bytes, iv: bytes, *, encrypt: bool) -> bytes:
    """IGE exactly as its definition reads, one block at a time (any AES key size).

    y_i = E(x_i ^ y_{i-1}) ^ x_{i-1};  x_i = D(y_i ^ x_{i-1}) ^ y_{i-1};  iv = y_0 + x_0.
    """
    aes = Cipher(algorithms.AES(key), modes.ECB())
    block_fn = (aes.encryptor() if encrypt else aes.decryptor()).update
    prev_cipher, prev_plain = iv[:16], iv[16:]
    out = []
    for i in range(0, len(data), 16):
        block = data[i : i + 16]
        if encrypt:
            result = _xor16(block_fn(_xor16(block, prev_cipher)), prev_plain)
            prev_cipher, prev_plain = result, block
        else:
            result = _xor16(block_fn(_xor16(block, prev_plain)), prev_cipher)
            prev_cipher, prev_plain = block, result
        out.append(result)
    return b"".join(out)


# --- published vectors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", v.IGE_PAPER_VECTORS, ids=["paper-vector-0-encrypt", "paper-vector-1-decrypt"])
def test_paper_vectors_textbook_and_reference(vector: tuple[bytes, bytes, bytes, bytes, bool]) -> None:
    # AES-128 vectors: they pin the chaining and the iv-half order. The public functions insist on 32-byte
    # keys, so the key-size-agnostic cores behind the reference functions are checked here.
    key, iv, given_in, expected_out, is_encrypt = vector
    assert textbook_ige(given_in, key, iv, encrypt=is_encrypt) == expected_out
    forward = ige._encrypt_reference if is_encrypt else ige._decrypt_reference
    backward = ige._decrypt_reference if is_encrypt else ige._encrypt_reference
    assert forward(given_in, key, iv) == expected_out
    assert backward(expected_out, key, iv) == given_in


def test_paper_vector_fails_with_swapped_iv_halves() -> None:
    # The convention matters: with y_0 and x_0 swapped the published output must not come out.
    key, iv, given_in, expected_out, _ = v.IGE_PAPER_VECTORS[0]
    assert ige._encrypt_reference(given_in, key, iv[16:] + iv[:16]) != expected_out


@pytest.mark.parametrize("decrypt", [ige256_decrypt, ige256_decrypt_reference])
def test_telegram_sample_encrypted_answer_decrypts(decrypt: IgeFn) -> None:
    # core.telegram.org/mtproto/samples-auth_key, step 6: encrypted_answer under tmp_aes_key/iv.
    answer_with_hash = decrypt(v.ENCRYPTED_ANSWER, v.TMP_AES_KEY, v.TMP_AES_IV)
    assert answer_with_hash == v.ANSWER_WITH_HASH
    answer = answer_with_hash[20 : 20 + v.ANSWER_LENGTH]
    assert answer_with_hash[:20] == hashlib.sha1(answer).digest()
    assert answer.startswith(bytes.fromhex("BA0D89B5") + v.NONCE + v.SERVER_NONCE)  # server_DH_inner_data


@pytest.mark.parametrize("encrypt", [ige256_encrypt, ige256_encrypt_reference])
def test_telegram_sample_client_dh_inner_data_encrypts(encrypt: IgeFn) -> None:
    # samples-auth_key step 7.1: data_with_hash = SHA1(data) + data + padding, AES256_ige_encrypt'ed.
    key, iv = tmp_aes_key_iv(v.NEW_NONCE, v.SERVER_NONCE)
    data_with_hash = hashlib.sha1(v.CLIENT_DH_INNER_DATA).digest() + v.CLIENT_DH_INNER_DATA + v.CLIENT_DH_PADDING
    assert encrypt(data_with_hash, key, iv) == v.CLIENT_ENCRYPTED_DATA


# --- all paths agree ---------------------------------------------------------------------------------------

blocks = st.integers(min_value=0, max_value=40).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))
key32 = st.binary(min_size=32, max_size=32)


@given(data=blocks, key=key32, iv=key32)
def test_encrypt_paths_agree(data: bytes, key: bytes, iv: bytes) -> None:
    expected = textbook_ige(data, key, iv, encrypt=True)
    assert ige256_encrypt(data, key, iv) == expected
    assert ige256_encrypt_reference(data, key, iv) == expected


@given(data=blocks, key=key32, iv=key32)
def test_decrypt_paths_agree(data: bytes, key: bytes, iv: bytes) -> None:
    expected = textbook_ige(data, key, iv, encrypt=False)
    assert ige256_decrypt(data, key, iv) == expected
    assert ige256_decrypt_reference(data, key, iv) == expected


@given(data=blocks, key=key32, iv=key32)
def test_decrypt_inverts_encrypt(data: bytes, key: bytes, iv: bytes) -> None:
    assert ige256_decrypt(ige256_encrypt(data, key, iv), key, iv) == data
    assert ige256_decrypt_reference(ige256_encrypt_reference(data, key, iv), key, iv) == data


@settings(max_examples=5, deadline=None)
@given(key=key32, iv=key32, seed=st.binary(min_size=16, max_size=16))
def test_paths_agree_on_large_buffers(key: bytes, iv: bytes, seed: bytes) -> None:
    # Big enough that the whole-buffer integer XORs of the reference path work on megabit numbers.
    data = hashlib.shake_256(seed).digest(64 * 1024 + 16)
    encrypted = ige256_encrypt(data, key, iv)
    assert ige256_encrypt_reference(data, key, iv) == encrypted
    assert ige256_decrypt_reference(encrypted, key, iv) == data


def test_garble_propagates_forward() -> None:
    # IGE's "infinite garble": one flipped ciphertext bit garbles its block and everything after it.
    key, iv = bytes(range(32)), bytes(range(32, 64))
    data = bytes(16 * 8)
    broken = bytearray(ige256_encrypt(data, key, iv))
    broken[16 * 3] ^= 1
    out = ige256_decrypt(bytes(broken), key, iv)
    assert out[: 16 * 3] == data[: 16 * 3]
    assert all(out[i : i + 16] != data[i : i + 16] for i in range(16 * 3, len(data), 16))


# --- input checks ------------------------------------------------------------------------------------------

ALL = [ige256_encrypt, ige256_decrypt, ige256_encrypt_reference, ige256_decrypt_reference]


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize(
    ("data_len", "key_len", "iv_len"),
    [(15, 32, 32), (17, 32, 32), (1, 32, 32), (16, 16, 32), (16, 31, 32), (16, 32, 16), (16, 32, 33)],
)
def test_bad_lengths_are_local_errors(fn: IgeFn, data_len: int, key_len: int, iv_len: int) -> None:
    with pytest.raises(LocalProtocolError):
        fn(bytes(data_len), bytes(key_len), bytes(iv_len))


@pytest.mark.parametrize("fn", ALL)
def test_empty_data_is_empty(fn: IgeFn) -> None:
    assert fn(b"", bytes(32), bytes(32)) == b""
