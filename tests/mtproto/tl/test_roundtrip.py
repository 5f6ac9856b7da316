"""Round-trip property tests for every constructor and function of both schemas (core.telegram.org/mtproto/serialize).

The list of combinators comes from parsing ``mtproto/tl/schema/*.tl`` and the strategies from ``_strategies``, so a
line added to a schema is covered here without editing this file.
"""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtproto.tl.parser import Combinator
from mtproto.tl.runtime import GZIP_PACKED_ID, UINT, Reader, TLDecodeError, TLFunction, gzip_pack

from ._strategies import COMBINATORS, SHIPPED, cls_of, combinator_id

EVERY_COMBINATOR = pytest.mark.parametrize("c", COMBINATORS, ids=combinator_id)
SETTINGS = settings(max_examples=25, deadline=None)


@EVERY_COMBINATOR
def test_every_combinator_has_a_registered_class(c: Combinator) -> None:
    cls = cls_of(c)
    assert (c.name, c.id) == (cls.TL_NAME, cls.CONSTRUCTOR_ID)
    assert issubclass(cls, TLFunction) == c.is_function


@EVERY_COMBINATOR
@SETTINGS
@given(data=st.data())
def test_roundtrip(c: Combinator, data: st.DataObject) -> None:
    obj = data.draw(SHIPPED.of(c), label="object")
    wire = obj.to_bytes()
    assert wire[:4] == UINT.pack(c.id), "a boxed value starts with its constructor id"
    assert len(wire) % 4 == 0, "TL values are padded to whole 32-bit words"
    if c.id == GZIP_PACKED_ID:
        # gzip_packed is transparent: reading it yields the object it carries, never a GzipPacked.
        carried = Reader(wire).read_object()
        assert not isinstance(carried, type(obj))
        assert carried.to_bytes() == gzip.decompress(obj.packed_data)
        return
    back = type(obj).from_bytes(wire)
    assert back == obj
    assert back.to_bytes() == wire


@EVERY_COMBINATOR
@SETTINGS
@given(data=st.data())
def test_roundtrip_through_gzip_packed(c: Combinator, data: st.DataObject) -> None:
    obj = data.draw(SHIPPED.of(c), label="object")
    packed = gzip_pack(obj.to_bytes())
    if c.id == GZIP_PACKED_ID:
        with pytest.raises(TLDecodeError, match="inside gzip_packed"):
            Reader(packed).read_object()
        return
    r = Reader(packed)
    back = r.read_object()
    assert back == obj
    assert r.remaining() == 0
