"""The binding message of auth.bindTempAuthKey (mtproto/pfs.py): built as the spec describes, opened only when every
field agrees with the call that carries it (core.telegram.org/method/auth.bindTempAuthKey)."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtproto import pfs
from mtproto.crypto import kdf
from mtproto.crypto.ige import ige256_decrypt_reference, ige256_encrypt_reference
from mtproto.errors import RemoteProtocolError
from mtproto.replay import seeded_randbytes
from mtproto.session import AuthKey
from mtproto.tl import api, mt

PERM = AuthKey.from_bytes(hashlib.sha512(b"perm").digest() * 4)
OTHER = AuthKey.from_bytes(hashlib.sha512(b"other").digest() * 4)
TEMP_ID, SESSION_ID = -0x1234_5678_9ABC_DEF0, 0x0BAD_CAFE
MSG_ID, EXPIRES_AT = (1_700_000_000 << 32) | 0x1C, 1_700_086_400


def query(seed: bytes = b"bind", **changes: int) -> api.functions.auth.BindTempAuthKey:
    """A binding for TEMP_ID in SESSION_ID sent as MSG_ID; ``changes`` alter what the binding message says."""
    facts = {"temp_auth_key_id": TEMP_ID, "temp_session_id": SESSION_ID, "expires_at": EXPIRES_AT, "msg_id": MSG_ID}
    return pfs.bind_query(PERM, randbytes=seeded_randbytes(seed), **{**facts, **changes})


def opened(q: api.functions.auth.BindTempAuthKey, key: AuthKey = PERM, **call: int) -> mt.types.BindAuthKeyInner:
    facts = {"temp_auth_key_id": TEMP_ID, "temp_session_id": SESSION_ID, "msg_id": MSG_ID, **call}
    return pfs.open_bind_message(key, q, **facts)


def reason(q: api.functions.auth.BindTempAuthKey, key: AuthKey = PERM, **call: int) -> str:
    with pytest.raises(pfs.BindMessageInvalid) as caught:
        opened(q, key, **call)
    return caught.value.reason


def test_bind_message_is_the_spec_text_step_by_step() -> None:
    # "prepend random:int128 ..., then append the same msg_id that will be used for the request, a seqno equal to
    # zero, and the correct msg_len (40 bytes in this case); after that, one computes the msg_key:int128 as SHA1
    # of the resulting string, appends padding necessary for a 16-byte alignment, encrypts the resulting string
    # using the key derived from perm_auth_key and msg_key, and prepends perm_auth_key_id and msg_key".
    draw = seeded_randbytes(b"spec")
    random16, nonce = draw(16), 0x1122334455667788
    inner = struct.pack("<Iqqqqi", 0x75A3F765, nonce, TEMP_ID, PERM.id_int, SESSION_ID, EXPIRES_AT)
    string = random16 + struct.pack("<qii", MSG_ID, 0, 40) + inner
    msg_key = hashlib.sha1(string).digest()[4:20]
    padding = draw(-len(string) % 16)
    aes_key, aes_iv = kdf.message_key_iv_v1(PERM.key, msg_key, from_client=True)
    expected = PERM.id + msg_key + ige256_encrypt_reference(string + padding, aes_key, aes_iv)

    made = pfs.bind_message(PERM, nonce=nonce, temp_auth_key_id=TEMP_ID, temp_session_id=SESSION_ID,
                            expires_at=EXPIRES_AT, msg_id=MSG_ID, randbytes=seeded_randbytes(b"spec"))
    assert made == expected
    assert len(made) == pfs.ENCRYPTED_SIZE == 104 and len(padding) == 8


def test_a_binding_opens_with_the_call_it_was_made_for() -> None:
    q = query()
    assert (q.perm_auth_key_id, q.expires_at) == (PERM.id_int, EXPIRES_AT)
    inner = opened(q)
    assert inner == mt.types.BindAuthKeyInner(nonce=q.nonce, temp_auth_key_id=TEMP_ID, perm_auth_key_id=PERM.id_int,
                                              temp_session_id=SESSION_ID, expires_at=EXPIRES_AT)
    assert query(b"another").nonce != q.nonce  # a fresh nonce and random prefix per binding


@pytest.mark.parametrize(
    ("call", "named"),
    [({"msg_id": MSG_ID + 4}, "msg_id"),  # the message was sent under another id: a replay into another message
     ({"temp_session_id": SESSION_ID + 1}, "temp_session_id"),  # ...or into another session
     ({"temp_auth_key_id": TEMP_ID + 1}, "temp_auth_key_id")],  # ...or over another temporary key
)
def test_a_binding_made_for_another_message_is_refused(call: dict[str, int], named: str) -> None:
    assert reason(query(), **call) == f"{named} differ from the call's"


@pytest.mark.parametrize("field", ["nonce", "expires_at"])
def test_the_query_must_say_what_the_binding_message_says(field: str) -> None:
    q = query()
    assert reason(replace(q, **{field: getattr(q, field) + 1})) == f"{field} differ from the call's"


def test_only_the_permanent_key_named_opens_it() -> None:
    q = query()
    assert reason(q, OTHER) == "not encrypted with the permanent key the query names"
    # naming another key in the query while the message is under PERM: refused before any decryption
    assert reason(replace(q, perm_auth_key_id=OTHER.id_int), PERM) == ("not encrypted with the permanent key the "
                                                                       "query names")
    # a message that claims PERM's id but was encrypted with another key fails msg_key
    forged = pfs.bind_message(OTHER, nonce=q.nonce, temp_auth_key_id=TEMP_ID, temp_session_id=SESSION_ID,
                              expires_at=EXPIRES_AT, msg_id=MSG_ID, randbytes=seeded_randbytes(b"x"))
    forged_reason = reason(replace(q, encrypted_message=PERM.id + forged[8:]))
    assert forged_reason == "msg_key does not match the decrypted plaintext"


def _sealed_v1(plaintext: bytes) -> bytes:
    """Any plaintext sealed as a binding message is (for the checks after msg_key)."""
    msg_key = kdf.msg_key_v1(plaintext)
    aes_key, aes_iv = kdf.message_key_iv_v1(PERM.key, msg_key, from_client=True)
    return PERM.id + msg_key + ige256_encrypt_reference(plaintext + bytes(-len(plaintext) % 16), aes_key, aes_iv)


def test_the_envelope_fields_are_checked_after_msg_key() -> None:
    q = query()
    aes_key, aes_iv = kdf.message_key_iv_v1(PERM.key, q.encrypted_message[8:24], from_client=True)
    plaintext = ige256_decrypt_reference(q.encrypted_message[24:], aes_key, aes_iv)[: pfs.PLAINTEXT_SIZE]
    seq_one = plaintext[:24] + struct.pack("<i", 1) + plaintext[28:]
    assert reason(replace(q, encrypted_message=_sealed_v1(seq_one))) == "seq_no 1 and length 40, not 0 and 40"
    ping = mt.functions.Ping(ping_id=1).to_bytes()
    other_body = plaintext[:32] + ping + bytes(40 - len(ping))
    assert reason(replace(q, encrypted_message=_sealed_v1(other_body))).endswith("not bind_auth_key_inner")
    assert reason(replace(q, encrypted_message=q.encrypted_message[:-16])) == "88 bytes, not 104"
    assert reason(replace(q, encrypted_message=b"")) == "0 bytes, not 104"


@given(data=st.data())
def test_any_bit_flipped_anywhere_is_refused(data: st.DataObject) -> None:
    q = query()
    bit = data.draw(st.integers(min_value=0, max_value=len(q.encrypted_message) * 8 - 1))
    flipped = bytearray(q.encrypted_message)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(pfs.BindMessageInvalid):
        opened(replace(q, encrypted_message=bytes(flipped)))


def test_the_error_keeps_the_connection() -> None:
    # A bad binding is an answer (400 ENCRYPTED_MESSAGE_INVALID) to one call, not a reason to close the connection.
    error = pfs.BindMessageInvalid("test")
    assert isinstance(error, RemoteProtocolError) and error.transport_error is None
