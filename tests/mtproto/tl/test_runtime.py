"""The TL runtime (core.telegram.org/mtproto/serialize): encodings, limits, and how it fails on bad input.

Decoding reads untrusted bytes, so besides the happy paths these tests pin the failure contract: a
``TLDecodeError`` (a ``RemoteProtocolError``) for anything the peer got wrong, a ``LocalProtocolError`` for
anything our own caller got wrong, and never an allocation or a loop sized by an unchecked number.
"""

from __future__ import annotations

import dataclasses
import gzip
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtproto.errors import LocalProtocolError
from mtproto.tl import LAYER, api, mt
from mtproto.tl.parser import Combinator
from mtproto.tl.runtime import (
    BOOL_TRUE,
    GZIP_PACKED_ID,
    INT,
    LONG,
    MAX_DEPTH,
    MAX_UNPACKED,
    UINT,
    VECTOR_HEADER,
    RawObject,
    Reader,
    TLDecodeError,
    TLObject,
    UnknownConstructorError,
    class_for_id,
    gzip_pack,
    write_bytes,
    write_string,
)

from ._strategies import COMBINATORS, SHIPPED, combinator_id

PONG = mt.types.Pong(msg_id=0x5E0B700A00000001, ping_id=42)


def _id(obj_or_cls: object) -> bytes:
    return UINT.pack(obj_or_cls.CONSTRUCTOR_ID)  # type: ignore[attr-defined]


def _gzip_packed(stream: bytes) -> bytes:
    """A gzip_packed around an arbitrary (possibly broken) compressed stream."""
    out = bytearray(UINT.pack(GZIP_PACKED_ID))
    write_bytes(out, stream)
    return bytes(out)


def _config(**overrides: object) -> api.types.Config:
    required = {f.name: 0 for f in dataclasses.fields(api.types.Config) if f.default is dataclasses.MISSING}
    required.update(test_mode=False, dc_options=[], dc_txt_domain_name="", me_url_prefix="")
    return api.types.Config(**{**required, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def tracing() -> Iterator[None]:
    """Trace allocations during the test: ``tracemalloc.get_traced_memory()[1]`` is then its peak."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


# -- bytes and strings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "prefix", "size"),
    [
        (0, b"\x00", 4),
        (1, b"\x01", 4),
        (2, b"\x02", 4),
        (3, b"\x03", 4),
        (4, b"\x04", 8),
        (253, b"\xfd", 256),  # the longest one-byte prefix
        (254, b"\xfe\xfe\x00\x00", 260),  # the shortest 0xfe + 3-byte prefix
        (255, b"\xfe\xff\x00\x00", 260),
        (256, b"\xfe\x00\x01\x00", 260),
        (257, b"\xfe\x01\x01\x00", 264),
        (0x0ABCDE, b"\xfe\xde\xbc\x0a", 4 + 0x0ABCDE + 2),
        (2**24 - 1, b"\xfe\xff\xff\xff", 4 + 2**24),  # the longest a length prefix can say
    ],
)
def test_bytes_length_prefix_and_padding(n: int, prefix: bytes, size: int) -> None:
    data = bytes([0xA5]) * n
    out = bytearray()
    write_bytes(out, data)
    assert len(out) == size
    assert out[: len(prefix)] == prefix
    assert out[len(prefix) : len(prefix) + n] == data
    assert out[len(prefix) + n :] == bytes(size - len(prefix) - n), "padding is zero bytes"
    r = Reader(out)
    assert r.read_bytes() == data
    assert r.remaining() == 0


def test_bytes_of_16_mib_raise_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError, match="16 MiB"):
        write_bytes(bytearray(), bytes(2**24))
    with pytest.raises(LocalProtocolError):
        mt.types.MsgsStateInfo(req_msg_id=1, info=bytes(2**24)).to_bytes()


def test_string_length_counts_utf8_bytes_not_characters() -> None:
    short, long = bytearray(), bytearray()
    write_string(short, "é" * 126 + "a")  # 253 bytes
    write_string(long, "é" * 127)  # 254 bytes
    assert short[0] == 253 and len(short) == 256
    assert long[:4] == b"\xfe\xfe\x00\x00" and len(long) == 260
    assert Reader(long).read_string() == "é" * 127


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1100))
def test_bytes_encoding_property(data: bytes) -> None:
    out = bytearray()
    write_bytes(out, data)
    head = 1 if len(data) < 254 else 4
    assert len(out) % 4 == 0 and len(out) - head - len(data) < 4
    assert out[0] == (len(data) if len(data) < 254 else 0xFE)
    r = Reader(bytes(out) + b"tail")
    assert r.read_bytes() == data
    assert r.remaining() == 4


def test_length_prefix_0xff_is_rejected() -> None:
    with pytest.raises(TLDecodeError, match="0xff"):
        Reader(b"\xff\x00\x00\x00\x00\x00\x00\x00").read_bytes()


@pytest.mark.parametrize("raw", [b"\xc3\x28", b"\xff", b"\xed\xa0\x80", b"abc\x80"], ids=repr)
def test_invalid_utf8_in_a_string_is_a_decode_error(raw: bytes) -> None:
    out = bytearray(_id(mt.types.RpcError) + INT.pack(400))
    write_bytes(out, raw)
    with pytest.raises(TLDecodeError, match="UTF-8"):
        Reader(out).read_object()


# -- truncation ----------------------------------------------------------------------------------------------


def _cut_points(length: int) -> list[int]:
    if length <= 2048:
        return list(range(length))
    return sorted({*range(512), *range(length - 512, length), *range(0, length, 13)})


@pytest.mark.parametrize("c", COMBINATORS, ids=combinator_id)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_every_truncation_is_a_decode_error(c: Combinator, data: st.DataObject) -> None:
    wire = data.draw(SHIPPED.of(c), label="object").to_bytes()
    for cut in _cut_points(len(wire)):
        with pytest.raises(TLDecodeError):
            Reader(wire[:cut]).read_object()


def test_trailing_bytes_after_an_object_are_a_decode_error() -> None:
    with pytest.raises(TLDecodeError, match="4 unexpected trailing bytes"):
        mt.types.Pong.from_bytes(PONG.to_bytes() + b"\0\0\0\0")


def test_from_bytes_of_another_class_is_a_decode_error() -> None:
    with pytest.raises(TLDecodeError, match="expected MsgsAck, got Pong"):
        mt.types.MsgsAck.from_bytes(PONG.to_bytes())


# -- constructor ids and typed fields -------------------------------------------------------------------------


@pytest.mark.parametrize("cid", [0x0000ABCD, 0xFFFFFFFF, 0x12345678])
def test_unknown_constructor_id_is_named_in_the_error(cid: int) -> None:
    assert class_for_id(cid) is None
    with pytest.raises(UnknownConstructorError, match=f"0x{cid:08x}") as info:
        Reader(UINT.pack(cid) + bytes(16)).read_object()
    assert info.value.constructor_id == cid
    # ... also when the unknown object sits where any object may (rpc_result's result).
    with pytest.raises(UnknownConstructorError, match=f"0x{cid:08x}"):
        Reader(_id(mt.types.RpcResult) + LONG.pack(1) + UINT.pack(cid) + bytes(16)).read_object()


def test_wrong_constructor_in_a_typed_field_names_the_expected_type() -> None:
    wire = _config(dc_options=[api.types.JsonNull()]).to_bytes()  # writing does not check TL types
    with pytest.raises(TLDecodeError, match="expected DcOption"):
        api.types.Config.from_bytes(wire)


def test_non_function_where_a_query_is_expected() -> None:
    wire = _id(api.functions.InvokeWithLayer) + INT.pack(LAYER) + PONG.to_bytes()
    with pytest.raises(TLDecodeError, match="expected a function"):
        Reader(wire).read_object()


def test_bool_and_vector_ids_are_checked() -> None:
    with pytest.raises(TLDecodeError, match="expected Bool"):
        Reader(_id(api.types.JsonBool) + UINT.pack(0x12345678)).read_object()
    with pytest.raises(TLDecodeError, match="expected Vector"):
        Reader(_id(mt.types.MsgsAck) + BOOL_TRUE + INT.pack(0)).read_object()


# -- counts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(_id(mt.types.MsgsAck) + VECTOR_HEADER + INT.pack(2**31 - 1), id="Vector<long>"),
        pytest.param(_id(api.types.JsonArray) + VECTOR_HEADER + INT.pack(2**31 - 1), id="Vector<JSONValue>"),
        pytest.param(_id(mt.types.MsgContainer) + INT.pack(2**31 - 1) + bytes(4), id="vector<%Message>"),
        pytest.param(
            _id(mt.types.FutureSalts) + LONG.pack(1) + INT.pack(0) + INT.pack(2**31 - 1), id="vector<future_salt>"
        ),
        pytest.param(_id(mt.types.MsgsAck) + VECTOR_HEADER + INT.pack(-1), id="negative"),
        pytest.param(
            _id(mt.types.MsgsAck) + VECTOR_HEADER + INT.pack(2) + LONG.pack(1) + bytes(4), id="2 longs in 12 bytes"
        ),
    ],
)
def test_vector_count_beyond_the_buffer_fails_before_allocating(wire: bytes, tracing: None) -> None:
    with pytest.raises(TLDecodeError, match="vector count"):
        Reader(wire).read_object()
    peak = tracemalloc.get_traced_memory()[1]
    assert peak < 256 * 1024, f"{peak} bytes allocated for a {len(wire)}-byte input"


# -- gzip_packed ---------------------------------------------------------------------------------------------


def test_gzip_packed_is_unwrapped_and_accepts_zlib_too() -> None:
    assert Reader(gzip_pack(PONG.to_bytes())).read_object() == PONG
    assert Reader(_gzip_packed(zlib.compress(PONG.to_bytes()))).read_object() == PONG


def test_nested_gzip_packed_is_rejected() -> None:
    with pytest.raises(TLDecodeError, match="gzip_packed inside gzip_packed"):
        Reader(gzip_pack(gzip_pack(PONG.to_bytes()))).read_object()


def test_nested_gzip_packed_is_rejected_by_read_result() -> None:
    """read_result unwraps one gzip_packed itself; the function's reader must not unwrap a second."""
    with pytest.raises(TLDecodeError):
        Reader(gzip_pack(gzip_pack(PONG.to_bytes()))).read_result(mt.functions.Ping(ping_id=42).read_result)


def test_gzip_packed_that_does_not_inflate() -> None:
    with pytest.raises(TLDecodeError, match="does not inflate"):
        Reader(_gzip_packed(b"this is not a gzip stream")).read_object()


def test_gzip_packed_with_trailing_bytes_inside() -> None:
    with pytest.raises(TLDecodeError, match="trailing"):
        Reader(gzip_pack(PONG.to_bytes() + bytes(4))).read_object()


def test_incomplete_gzip_stream_is_rejected() -> None:
    """A stream cut short (no final block, no CRC32 trailer) is refused even when its prefix parses."""
    deflater = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
    unfinished = deflater.compress(PONG.to_bytes()) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert gzip.decompress(unfinished + deflater.flush()) == PONG.to_bytes()  # the whole stream is fine
    with pytest.raises(TLDecodeError):
        Reader(_gzip_packed(unfinished)).read_object()


def test_bytes_after_the_gzip_stream_are_rejected() -> None:
    """packed_data must be exactly one gzip stream: trailing bytes would be smuggled past every check."""
    whole = zlib.compress(PONG.to_bytes(), wbits=zlib.MAX_WBITS | 16)
    assert Reader(_gzip_packed(whole)).read_object() == PONG
    with pytest.raises(TLDecodeError, match="after the end"):
        Reader(_gzip_packed(whole + b"junk")).read_object()


def test_max_unpacked_boundary() -> None:
    wire = mt.types.MsgsAck(msg_ids=list(range(1000))).to_bytes()
    assert Reader(gzip_pack(wire), max_unpacked=len(wire)).read_object().to_bytes() == wire
    with pytest.raises(TLDecodeError, match=f"beyond {len(wire) - 1} bytes"):
        Reader(gzip_pack(wire), max_unpacked=len(wire) - 1).read_object()


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """A gzip_packed of 64 MiB of zeros (about 64 KiB on the wire), compressed a MiB at a time."""
    deflater = zlib.compressobj(9, wbits=zlib.MAX_WBITS | 16)
    mib = bytes(2**20)
    stream = b"".join(deflater.compress(mib) for _ in range(64)) + deflater.flush()
    return _gzip_packed(stream)


def test_gzip_bomb_fails_without_being_inflated(gzip_bomb: bytes, tracing: None) -> None:
    assert len(gzip_bomb) < 2**17
    with pytest.raises(TLDecodeError, match=f"beyond {MAX_UNPACKED} bytes"):
        Reader(gzip_bomb).read_object()
    with pytest.raises(TLDecodeError, match=f"beyond {MAX_UNPACKED} bytes"):
        Reader(gzip_bomb).read_result(mt.functions.Ping(ping_id=1).read_result)
    peak = tracemalloc.get_traced_memory()[1]
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB while refusing a 64 MiB bomb"


def _container_of_gzipped(body: bytes, count: int) -> bytes:
    packed = gzip_pack(body)
    messages = [
        mt.types.Message(msg_id=4 * i, seqno=1, bytes=len(packed), body=RawObject(packed)) for i in range(count)
    ]
    return mt.types.MsgContainer(messages=messages).to_bytes()


_FITS_ALONE = mt.types.MsgsAck(msg_ids=[0] * 500).to_bytes()  # 4012 bytes, under the 4096 used below


def test_gzip_inside_a_gzipped_container_is_refused() -> None:
    """Each level of gzip could multiply what the one below inflates to: 580 bytes once made 40 x 4 MiB."""
    wire = gzip_pack(_container_of_gzipped(_FITS_ALONE, 16))
    assert len(wire) < 1024
    with pytest.raises(TLDecodeError):
        Reader(wire, max_unpacked=4096).read_object()


def test_gzip_packed_siblings_share_one_inflation_budget() -> None:
    """A container of gzip_packed bodies, each small enough alone, must not inflate past max_unpacked in all."""
    one = _container_of_gzipped(_FITS_ALONE, 1)
    assert len(Reader(one, max_unpacked=4096).read_object().messages) == 1  # type: ignore[attr-defined]
    many = _container_of_gzipped(_FITS_ALONE, 16)
    assert len(many) < 2048  # 16 x 4012 = 64 KiB inflated from under 2 KiB
    with pytest.raises(TLDecodeError, match="beyond"):
        Reader(many, max_unpacked=4096).read_object()
    # ... and the default budget is the same bound: MAX_UNPACKED for everything one message carries.
    over = mt.types.MsgsAck(msg_ids=[0] * (MAX_UNPACKED // 8 // 3)).to_bytes()
    with pytest.raises(TLDecodeError, match="beyond"):
        Reader(_container_of_gzipped(over, 4)).read_object()


# -- nesting depth -------------------------------------------------------------------------------------------

_ARRAY_OF_ONE = _id(api.types.JsonArray) + VECTOR_HEADER + INT.pack(1)


def _nested_arrays(depth: int) -> bytes:
    """``depth`` objects: jsonArray in jsonArray ... around one jsonNull."""
    return _ARRAY_OF_ONE * (depth - 1) + api.types.JsonNull().to_bytes()


def test_nesting_up_to_max_depth_is_read() -> None:
    obj = Reader(_nested_arrays(MAX_DEPTH)).read_object()
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(obj, api.types.JsonArray)
        (obj,) = obj.value
    assert obj == api.types.JsonNull()


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000, 200_000])
def test_nesting_beyond_max_depth_is_a_decode_error(depth: int) -> None:
    with pytest.raises(TLDecodeError, match="nested deeper"):
        Reader(_nested_arrays(depth)).read_object()


def test_nesting_depth_counts_through_gzip_packed() -> None:
    half = MAX_DEPTH // 2
    at_limit = _ARRAY_OF_ONE * half + gzip_pack(_nested_arrays(MAX_DEPTH - half))
    Reader(at_limit).read_object()
    over = _ARRAY_OF_ONE * (half + 1) + gzip_pack(_nested_arrays(MAX_DEPTH - half))
    with pytest.raises(TLDecodeError, match="nested deeper"):
        Reader(over).read_object()


# -- function results ----------------------------------------------------------------------------------------


def test_read_result_unwraps_gzip_packed() -> None:
    config = _config(this_dc=2, dc_options=[api.types.DcOption(id=2, ip_address="127.0.0.1", port=443)])
    get_config = api.functions.help.GetConfig()
    wrapped = api.functions.InvokeWithLayer(
        layer=LAYER,
        query=api.functions.InitConnection(
            api_id=1,
            device_model="d",
            system_version="s",
            app_version="a",
            system_lang_code="en",
            lang_pack="",
            lang_code="en",
            query=get_config,
        ),
    )
    for result in (config.to_bytes(), gzip_pack(config.to_bytes())):
        for function in (get_config, wrapped):
            r = Reader(result)
            assert r.read_result(function.read_result) == config
            assert r.remaining() == 0
            assert function.read_result(Reader(result)) == config


def test_read_result_checks_the_type_and_the_end_of_the_gzip() -> None:
    ping = mt.functions.Ping(ping_id=1)
    with pytest.raises(TLDecodeError, match="expected Pong"):
        Reader(gzip_pack(mt.types.MsgsAck(msg_ids=[]).to_bytes())).read_result(ping.read_result)
    with pytest.raises(TLDecodeError, match="trailing"):
        Reader(gzip_pack(PONG.to_bytes() + bytes(4))).read_result(ping.read_result)


def test_raw_object_is_written_verbatim() -> None:
    container = mt.types.MsgContainer(
        messages=[mt.types.Message(msg_id=4, seqno=1, bytes=20, body=RawObject(PONG.to_bytes()))]
    )
    (message,) = mt.types.MsgContainer.from_bytes(container.to_bytes()).messages
    assert message.body == PONG


# -- what our own side can get wrong -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: mt.functions.ReqPq(nonce=bytes(15)), id="int128 of 15 bytes"),
        pytest.param(lambda: mt.functions.ReqPq(nonce=bytes(17)), id="int128 of 17 bytes"),
        pytest.param(lambda: mt.functions.ReqPq(nonce=12345), id="int128 as an int"),
        pytest.param(
            lambda: mt.types.PQInnerData(
                pq=b"", p=b"", q=b"", nonce=bytes(16), server_nonce=bytes(16), new_nonce=bytes(31)
            ),
            id="int256 of 31 bytes",
        ),
        pytest.param(lambda: mt.types.HttpWait(max_delay=2**31, wait_after=0, max_wait=0), id="int 2**31"),
        pytest.param(lambda: mt.types.HttpWait(max_delay=0, wait_after=-(2**31) - 1, max_wait=0), id="int -2**31-1"),
        pytest.param(lambda: mt.types.Pong(msg_id=2**63, ping_id=0), id="long 2**63"),
        pytest.param(lambda: mt.types.Pong(msg_id=None, ping_id=0), id="long None"),
        pytest.param(lambda: api.types.JsonNumber(value="1.5"), id="double as str"),
        pytest.param(lambda: mt.types.RpcError(error_code=400, error_message="\ud800"), id="lone surrogate"),
        pytest.param(lambda: mt.types.RpcError(error_code=400, error_message=b"BYTES"), id="string as bytes"),
        pytest.param(lambda: mt.types.MsgsStateInfo(req_msg_id=1, info="text"), id="bytes as str"),
        pytest.param(lambda: mt.types.MsgsAck(msg_ids=None), id="vector None"),
        pytest.param(lambda: mt.types.MsgsAck(msg_ids=[1, 2**64]), id="vector item out of range"),
        pytest.param(lambda: api.types.JsonArray(value=[1]), id="int where an object goes"),
    ],
)
def test_unserializable_values_raise_local_protocol_error(make: Callable[[], TLObject]) -> None:
    with pytest.raises(LocalProtocolError):
        make().to_bytes()


@settings(max_examples=50, deadline=None)
@given(
    st.one_of(st.integers(max_value=-(2**31) - 1), st.integers(min_value=2**31)),
    st.one_of(st.integers(max_value=-(2**63) - 1), st.integers(min_value=2**63)),
)
def test_out_of_range_integers_raise_local_protocol_error(int32: int, int64: int) -> None:
    with pytest.raises(LocalProtocolError):
        mt.types.HttpWait(max_delay=0, wait_after=int32, max_wait=0).to_bytes()
    with pytest.raises(LocalProtocolError):
        mt.types.Pong(msg_id=int64, ping_id=0).to_bytes()


def test_integer_range_edges_serialize() -> None:
    for value in (-(2**31), 2**31 - 1):
        wait = mt.types.HttpWait(max_delay=value, wait_after=value, max_wait=value)
        assert mt.types.HttpWait.from_bytes(wait.to_bytes()) == wait
    for value in (-(2**63), 2**63 - 1):
        pong = mt.types.Pong(msg_id=value, ping_id=value)
        assert mt.types.Pong.from_bytes(pong.to_bytes()) == pong


@pytest.mark.parametrize(
    "partial",
    [{"lang_pack_version": 7}, {"suggested_lang_code": "de", "base_lang_pack_version": 3}],
    ids=["one of three", "two of three"],
)
def test_partly_set_shared_flag_raises_local_protocol_error(partial: dict[str, object]) -> None:
    """config's lang-pack fields share flags.2: the bit says all three follow, so one alone cannot be written."""
    with pytest.raises(LocalProtocolError):
        _config(**partial).to_bytes()
