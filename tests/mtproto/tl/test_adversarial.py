"""Hostile input: whatever bytes a peer sends, reading them returns a TL object or raises ``TLDecodeError``.

``TLDecodeError`` is a ``RemoteProtocolError``, the one exception the session layer turns into "close this
connection"; anything else escaping the reader (IndexError, struct.error, RecursionError, MemoryError ...) would
be a bug that takes down more than one connection.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtproto.errors import RemoteProtocolError
from mtproto.tl.parser import Combinator
from mtproto.tl.runtime import UINT, Reader, TLDecodeError, TLObject

from ._strategies import COMBINATORS, SHIPPED, cls_of, combinator_id

KNOWN_IDS = sorted({c.id for c in COMBINATORS})


def _read_or_decode_error(data: bytes) -> None:
    try:
        obj = Reader(data).read_object()
    except TLDecodeError as exc:
        assert isinstance(exc, RemoteProtocolError)
        return
    assert isinstance(obj, TLObject)
    # Whatever was accepted must be writable again: the reader built a well-typed object.
    obj.to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _read_or_decode_error(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(KNOWN_IDS), st.binary(max_size=256))
def test_known_constructor_then_random_bytes(cid: int, body: bytes) -> None:
    _read_or_decode_error(UINT.pack(cid) + body)


@pytest.mark.parametrize("c", COMBINATORS, ids=combinator_id)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_bit_flips_of_a_valid_serialization(c: Combinator, data: st.DataObject) -> None:
    wire = bytearray(data.draw(SHIPPED.of(c), label="object").to_bytes())
    flips = data.draw(st.lists(st.integers(0, len(wire) * 8 - 1), min_size=1, max_size=4), label="bits")
    for bit in flips:
        wire[bit // 8] ^= 1 << (bit % 8)
    _read_or_decode_error(bytes(wire))
    with contextlib.suppress(TLDecodeError):
        cls_of(c).from_bytes(bytes(wire))
