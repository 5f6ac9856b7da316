"""The end-to-end side of secret chats (mtlab.client.secret), without a server: the key, the MTProto 2.0 sealing
of a decryptedMessageLayer in both directions, every check on opening, the seq_no rules, and files: their key
fingerprint, AES-256-IGE a chunk at a time in both directions, and the checks on a received file."""

from __future__ import annotations

import io
import os
from hashlib import md5, sha1, sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlab.client.secret import (
    FILE_CHUNK,
    PADDING_MAX,
    PADDING_MIN,
    FileDecryptor,
    SecretChat,
    SecretChatError,
    encrypt_file,
    file_key_fingerprint,
    file_problem,
    key_fingerprint,
    mix_secret,
    open_sealed,
    padding_length,
    seal,
)
from mtproto.crypto.ige import ige256_decrypt, ige256_encrypt
from mtproto.crypto.kdf import message_key_iv
from mtproto.tl import api, secret

T = secret.types
# A real key is a random 2048-bit number; one whose key[88:120] equals key[96:128] (all zeros, say) would make the
# two directions' msg_keys alike, which no DH result does but hypothesis would try first.
keys = st.binary(min_size=256, max_size=256).filter(lambda k: k[88:120] != k[96:128])


def layer(text: str, in_seq: int = 0, out_seq: int = 1, random_bytes: bytes = bytes(15)) -> T.DecryptedMessageLayer:
    return T.DecryptedMessageLayer(random_bytes=random_bytes, layer=73, in_seq_no=in_seq, out_seq_no=out_seq,
                                   message=T.DecryptedMessage(random_id=42, ttl=0, message=text))


def test_fingerprint_is_the_low_64_bits_of_sha1_little_endian() -> None:
    key = bytes(range(256))
    assert key_fingerprint(key) == int.from_bytes(sha1(key).digest()[12:20], "little", signed=True)


def test_the_secret_mixes_both_sides_randomness() -> None:
    own, server = os.urandom(256), os.urandom(256)
    assert mix_secret(own, server) != mix_secret(own, bytes(256))
    assert mix_secret(own, bytes(256)) == int.from_bytes(own, "big")


@settings(max_examples=60, deadline=None)
@given(key=keys, text=st.text(max_size=300), originator=st.booleans())
def test_a_sealed_message_opens_to_itself_and_only_in_its_direction(key: bytes, text: str, originator: bool) -> None:
    data = seal(key, layer(text), originator=originator, randbytes=os.urandom)
    assert data[:8] == key_fingerprint(key).to_bytes(8, "little", signed=True)
    assert open_sealed(key, data, originator=originator) == layer(text)
    with pytest.raises(SecretChatError):  # x = 0 and x = 8 give other keys: a reflected message does not open
        open_sealed(key, data, originator=not originator)


@settings(max_examples=60, deadline=None)
@given(key=keys, text=st.text(max_size=100), where=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(key: bytes, text: str, where: int, bit: int) -> None:
    data = bytearray(seal(key, layer(text), originator=True, randbytes=os.urandom))
    data[where % len(data)] ^= 1 << bit
    with pytest.raises(SecretChatError):
        open_sealed(key, bytes(data), originator=True)


def test_msg_key_is_the_middle_of_sha256_over_key_88_plus_x_and_the_padded_plaintext() -> None:
    key = os.urandom(256)
    for originator, x in ((True, 0), (False, 8)):
        data = seal(key, layer("spec"), originator=originator, randbytes=os.urandom)
        msg_key = data[8:24]
        aes_key, aes_iv = message_key_iv(key, msg_key, from_client=originator)
        plaintext = ige256_decrypt(data[24:], aes_key, aes_iv)
        assert msg_key == sha256(key[88 + x:120 + x] + plaintext).digest()[8:24]
        length = int.from_bytes(plaintext[:4], "little")
        assert plaintext[4:4 + length] == layer("spec").to_bytes()
        assert PADDING_MIN <= len(plaintext) - 4 - length <= PADDING_MAX and len(plaintext) % 16 == 0


@given(body=st.integers(0, 10_000), seed=st.binary(min_size=1, max_size=1))
def test_padding_is_12_to_1024_bytes_to_whole_blocks(body: int, seed: bytes) -> None:
    pad = padding_length(body, lambda n: seed * n)
    assert PADDING_MIN <= pad <= PADDING_MAX and (4 + body + pad) % 16 == 0


def test_wrong_key_bad_length_and_few_random_bytes_are_refused() -> None:
    key = os.urandom(256)
    data = seal(key, layer("x"), originator=True, randbytes=os.urandom)
    with pytest.raises(SecretChatError):
        open_sealed(os.urandom(256), data, originator=True)
    with pytest.raises(SecretChatError):
        open_sealed(key, data[:-16], originator=True)
    short = seal(key, layer("x", random_bytes=bytes(14)), originator=True, randbytes=os.urandom)
    with pytest.raises(SecretChatError, match="random bytes"):
        open_sealed(key, short, originator=True)


def test_sequence_numbers_follow_the_parity_rule() -> None:
    creator = SecretChat(id=1, access_hash=0, peer_id=2, originator=True, state="active")
    other = SecretChat(id=1, access_hash=0, peer_id=1, originator=False, state="active")
    assert creator.next_seq() == (0, 1) and other.next_seq() == (1, 0)  # seq_no page's table
    first = layer("a", *creator.next_seq())
    assert other.check_seq(first) is True
    other.in_raw += 1
    assert other.check_seq(first) is False  # a repeat
    with pytest.raises(SecretChatError, match="parity"):  # the creator's own message reflected back to it
        creator.check_seq(first)
    with pytest.raises(SecretChatError, match="gap"):
        other.check_seq(layer("c", 0, 5))
    with pytest.raises(SecretChatError, match="never sent"):
        other.check_seq(layer("d", 4, 3))


# -- files -----------------------------------------------------------------------------------------------------


def test_a_files_fingerprint_is_md5_of_key_and_iv_folded_to_an_int() -> None:
    """end-to-end, "Sending encrypted files": digest = md5(key + iv), fingerprint = digest[0:4] XOR digest[4:8]."""
    key, iv = bytes(range(32)), bytes(range(32, 64))
    digest = md5(key + iv).digest()
    expected = int.from_bytes(digest[0:4], "little", signed=True) ^ int.from_bytes(digest[4:8], "little", signed=True)
    assert file_key_fingerprint(key, iv) == expected
    assert -2**31 <= expected < 2**31  # an int on the wire
    assert file_key_fingerprint(key, iv[:-1] + b"\x00") != expected


class Trickle(io.RawIOBase):
    """A source that hands over at most ``step`` bytes a read, as a pipe may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.at = data, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(self.step, len(buffer), len(self.data) - self.at)
        buffer[:n] = self.data[self.at:self.at + n]
        self.at += n
        return n


@pytest.mark.parametrize("size", [1, 15, 16, 17, FILE_CHUNK - 1, FILE_CHUNK, FILE_CHUNK + 1, 2 * FILE_CHUNK + 100])
def test_a_file_encrypted_chunk_by_chunk_is_one_ige_stream_and_decrypts_in_any_pieces(size: int) -> None:
    data, key, iv = os.urandom(size), os.urandom(32), os.urandom(32)
    out = io.BytesIO()
    padding = os.urandom(16)
    assert encrypt_file(Trickle(data, 100_000), out, key, iv, lambda n: padding[:n]) == size  # type: ignore[arg-type]
    ciphertext = out.getvalue()
    padded = data + padding[:-size % 16]
    assert len(ciphertext) == len(padded) and len(ciphertext) % 16 == 0
    assert ciphertext == ige256_encrypt(padded, key, iv)  # the chunks chain exactly as one call would
    assert data[:64] not in ciphertext

    for piece in (1, 7, 16, 4096, 1024 * 1024):  # files.download hands over 1 MiB; any cut must do
        plain = io.BytesIO()
        sink = FileDecryptor(plain, key, iv, size)
        for i in range(0, len(ciphertext), piece):
            sink.write(ciphertext[i:i + piece])
        sink.finish(len(ciphertext))
        assert plain.getvalue() == data  # the padding cut off


def test_a_file_cut_short_or_decrypted_with_another_key_is_noticed() -> None:
    data, key, iv = os.urandom(1000), os.urandom(32), os.urandom(32)
    out = io.BytesIO()
    encrypt_file(io.BytesIO(data), out, key, iv, os.urandom)
    ciphertext = out.getvalue()
    sink = FileDecryptor(io.BytesIO(), key, iv, len(data))
    sink.write(ciphertext[:-16])
    with pytest.raises(SecretChatError, match="cut short"):
        sink.finish(len(ciphertext))
    wrong = io.BytesIO()
    FileDecryptor(wrong, os.urandom(32), iv, len(data)).write(ciphertext)
    assert wrong.getvalue() != data


def test_a_received_file_must_match_its_messages_key_and_size() -> None:
    key, iv = os.urandom(32), os.urandom(32)

    def media(size: int = 100, k: bytes = key) -> secret.types.DecryptedMessageMediaDocument:
        return secret.types.DecryptedMessageMediaDocument(thumb=b"", thumb_w=0, thumb_h=0, mime_type="text/plain",
                                                          size=size, key=k, iv=iv, attributes=[], caption="")

    def file(fingerprint: int = file_key_fingerprint(key, iv), size: int = 112) -> api.types.EncryptedFile:
        return api.types.EncryptedFile(id=1, access_hash=2, size=size, dc_id=2, key_fingerprint=fingerprint)

    assert file_problem(file(), media()) is None
    assert "fingerprint" in (file_problem(file(fingerprint=file_key_fingerprint(key, iv) ^ 1), media()) or "")
    assert "without a file" in (file_problem(api.types.EncryptedFileEmpty(), media()) or "")
    assert "32 bytes" in (file_problem(file(), media(k=key[:16])) or "")
    assert file_problem(file(size=100), media()) is not None  # not whole blocks
    assert file_problem(file(size=96), media()) is not None  # smaller than the plaintext


def test_file_media_round_trip_with_an_api_attribute_inside() -> None:
    """decryptedMessageMediaDocument (layer 45) carries api.tl's DocumentAttribute: read back by constructor id."""
    media = secret.types.DecryptedMessageMediaDocument(
        thumb=b"", thumb_w=0, thumb_h=0, mime_type="image/png", size=5, key=bytes(32), iv=bytes(32),
        attributes=[api.types.DocumentAttributeFilename(file_name="a.png")], caption="")
    m = secret.types.DecryptedMessage(random_id=1, ttl=0, message="caption", media=media)
    again = secret.types.DecryptedMessage.from_bytes(m.to_bytes())
    assert again == m and again.media is not None
    assert m.media is not None and m.media.CONSTRUCTOR_ID == 0x7AFE8AE2
    assert secret.types.DecryptedMessageMediaPhoto.CONSTRUCTOR_ID == 0xF1FA8D78
