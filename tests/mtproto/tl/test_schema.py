"""The schemas themselves: generated code in sync, constructor ids right, layer pinned, wire-compatible with Telethon.

Spec: core.telegram.org/mtproto/TL (the language), /mtproto/TL-abstract-types (the CRC32 id rule),
/schema (the public API of the pinned layer), /schema/mtproto and /mtproto/service_messages (the service schema).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telethon.extensions import BinaryReader
from telethon.tl import alltlobjects, core
from telethon.tl import functions as tg_functions
from telethon.tl import types as tg_types

from mtproto.tl import LAYER, api, mt
from mtproto.tl.generator import HERE, TARGETS, stale_files
from mtproto.tl.parser import (
    Combinator,
    SchemaError,
    TLType,
    crc_id,
    normalized_line,
    parse_line,
    parse_schema,
    parse_type,
)

from ._strategies import SCHEMAS, SHIPPED, combinator_id

API = SCHEMAS["api.tl"]
MT = SCHEMAS["mtproto.tl"]
PROJECT_ROOT = HERE.parent.parent


# -- generated code ------------------------------------------------------------------------------------------


def test_generated_code_matches_the_schemas() -> None:
    stale = [str(path.relative_to(PROJECT_ROOT)) for path in stale_files()]
    assert not stale, (
        "the committed generated code differs from what mtproto/tl/schema/*.tl generates: "
        f"run `python -m mtproto.tl.generator` and commit the result. Out of date: {', '.join(stale)}"
    )


def test_drift_check_notices_an_edited_or_missing_file(tmp_path: Path) -> None:
    """The drift test above is only worth something if ``stale_files`` really compares the files."""
    for target in TARGETS:  # every generated package, so a new schema needs no edit here
        package = target.package.rsplit(".", 1)[1]
        shutil.copytree(HERE / package, tmp_path / "mtproto" / "tl" / package)
    assert stale_files(tmp_path) == []
    edited = tmp_path / "mtproto" / "tl" / "mt" / "types" / "__init__.py"
    edited.write_text(edited.read_text(encoding="utf-8").replace("0x347773c5", "0x347773c6"), encoding="utf-8")
    missing = tmp_path / "mtproto" / "tl" / "api" / "functions" / "help.py"
    missing.unlink()
    assert sorted(stale_files(tmp_path)) == sorted([edited, missing])


# -- constructor ids: TL's CRC32 rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "normalized", "cid"),
    [
        # The examples the rule is defined by: generics lose their braces, Vector<T> becomes "Vector T".
        ("vector#1cb5c415 {t:Type} # [ t ] = Vector t;", "vector t:Type # [ t ] = Vector t", 0x1CB5C415),
        (
            "invokeWithLayer#da9b0d0d {X:Type} layer:int query:!X = X;",
            "invokeWithLayer X:Type layer:int query:!X = X",
            0xDA9B0D0D,
        ),
        # bytes is spelled string; flags.N?true bits are left out, other flags.N?T fields stay.
        (
            "dcOption#18b7a10d flags:# ipv6:flags.0?true media_only:flags.1?true tcpo_only:flags.2?true "
            "cdn:flags.3?true static:flags.4?true this_port_only:flags.5?true id:int ip_address:string port:int "
            "secret:flags.10?bytes = DcOption;",
            "dcOption flags:# id:int ip_address:string port:int secret:flags.10?string = DcOption",
            0x18B7A10D,
        ),
        (
            "resPQ#05162463 nonce:int128 server_nonce:int128 pq:bytes server_public_key_fingerprints:Vector<long> "
            "= ResPQ;",
            "resPQ nonce:int128 server_nonce:int128 pq:string server_public_key_fingerprints:Vector long = ResPQ",
            0x05162463,
        ),
    ],
)
def test_crc_id_rule(line: str, normalized: str, cid: int) -> None:
    assert normalized_line(line) == normalized
    assert crc_id(line) == cid


@pytest.mark.parametrize(
    ("line", "cid"),
    [
        (
            "msg_detailed_info#276d3ec6 msg_id:long answer_msg_id:long bytes:int status:int = MsgDetailedInfo;",
            0x276D3EC6,
        ),
        ("rpc_answer_dropped#a43ad8b7 msg_id:long seq_no:int bytes:int = RpcDropAnswer;", 0xA43AD8B7),
        ("message msg_id:long seqno:int bytes:int body:Object = Message;", 0x5BB8E511),
    ],
)
def test_crc_id_keeps_a_parameter_named_bytes(line: str, cid: int) -> None:
    """Only the *type* bytes is spelled string: the official ids of these lines are CRCs of `bytes:int`."""
    assert normalized_line(line) == re.sub(r"#[0-9a-f]+", "", line).rstrip(";")
    assert crc_id(line) == cid


@pytest.mark.parametrize("c", [c for c in API.combinators if c.explicit_id], ids=combinator_id)
def test_api_ids_follow_the_crc_rule(c: Combinator) -> None:
    assert crc_id(c.line) == c.id, f"{c.name}: explicit id 0x{c.id:08x}, CRC32 of its line 0x{crc_id(c.line):08x}"


#: Official service ids that are not the CRC32 of the line as this schema writes it. Keep this list exact:
#: the test below fails when a combinator is missing from it and when one on it starts to follow the rule.
SERVICE_IDS_OFF_THE_RULE = {
    # The id is the CRC32 of `msg_container messages:vector message = MessageContainer`, which names the bare
    # constructor `message`; this schema writes `vector<%Message>` (the bare type), whose CRC32 differs.
    "msg_container",
}


@pytest.mark.parametrize("c", [c for c in MT.combinators if c.explicit_id], ids=combinator_id)
def test_mtproto_ids_follow_the_crc_rule_except_the_listed_ones(c: Combinator) -> None:
    computed = crc_id(c.line)
    if c.name in SERVICE_IDS_OFF_THE_RULE:
        assert computed != c.id, f"{c.name} follows the CRC rule now: remove it from SERVICE_IDS_OFF_THE_RULE"
    else:
        assert computed == c.id, (
            f"{c.name}: explicit id 0x{c.id:08x}, CRC32 of its line 0x{computed:08x} "
            f"(a typo in the line, or an official id to add to SERVICE_IDS_OFF_THE_RULE with a comment)"
        )


def test_off_the_rule_list_names_real_combinators() -> None:
    explicit = {c.name for c in MT.combinators if c.explicit_id}
    assert explicit >= SERVICE_IDS_OFF_THE_RULE


# -- the layer pin: api.tl against Telethon's tables -----------------------------------------------------------

#: api.tl constructors that Telethon keeps out of ``alltlobjects.tlobjects``: Bool and True are the runtime's
#: own (here and in Telethon), and error/null are in Telethon's CORE_TYPES, which its generator skips.
NOT_IN_TELETHON_TABLES = {"boolFalse", "boolTrue", "true", "error", "null"}


def _telethon_class_matches(c: Combinator, cls: type) -> bool:
    """Telethon names a class by the CamelCase of the TL short name (functions get ``Request``) and puts it in
    ``telethon.tl.{types,functions}.<namespace>``; compare without case and underscores."""
    kind = "functions" if c.is_function else "types"
    module = f"telethon.tl.{kind}" + (f".{c.namespace}" if c.namespace else "")
    expected = c.short_name.replace("_", "").lower() + ("request" if c.is_function else "")
    if cls.__module__ == "telethon.tl.patched":  # Telethon's own subclasses of message, messageService...
        cls = next(base for base in cls.__mro__ if base.__module__.startswith("telethon.tl.types"))
    return cls.__module__ == module and cls.__name__.lower() == expected


def test_layer_is_pinned_to_telethon() -> None:
    assert alltlobjects.LAYER == LAYER
    assert API.layer == LAYER, "the `// LAYER N` line of api.tl and mtproto/tl/layer.py disagree"


@pytest.mark.parametrize("c", [c for c in API.combinators if c.name not in NOT_IN_TELETHON_TABLES], ids=combinator_id)
def test_api_combinator_is_telethons(c: Combinator) -> None:
    cls = alltlobjects.tlobjects.get(c.id)
    assert cls is not None, f"{c.name}#{c.id:08x} is not a layer-{LAYER} constructor id"
    assert _telethon_class_matches(c, cls), f"{c.name}#{c.id:08x} is {cls.__module__}.{cls.__name__} in Telethon"


def test_exceptions_to_the_telethon_check_are_still_needed() -> None:
    for name in NOT_IN_TELETHON_TABLES:
        assert API.by_name(name).id not in alltlobjects.tlobjects, f"Telethon has {name} now: check it too"


#: Telethon implements these service constructors by hand, in telethon.tl.core (msg_container as MessageContainer).
TELETHON_CORE_NAMES = {"msg_container": "MessageContainer", "rpc_result": "RpcResult", "gzip_packed": "GzipPacked"}
#: ... and these not at all: `message` is only ever bare (no id on the wire), msg_copy is unused.
NOT_IN_TELETHON_MT = {"message", "msg_copy"}


@pytest.mark.parametrize("c", [c for c in MT.combinators if c.name not in NOT_IN_TELETHON_MT], ids=combinator_id)
def test_mtproto_combinator_is_telethons(c: Combinator) -> None:
    if c.name in TELETHON_CORE_NAMES:
        cls = core.core_objects.get(c.id)
        assert cls is not None and cls.__name__ == TELETHON_CORE_NAMES[c.name]
        return
    cls = alltlobjects.tlobjects.get(c.id)
    assert cls is not None, f"{c.name}#{c.id:08x} is unknown to Telethon"
    assert _telethon_class_matches(c, cls), f"{c.name}#{c.id:08x} is {cls.__module__}.{cls.__name__} in Telethon"


# -- wire compatibility with Telethon ------------------------------------------------------------------------


def _int128(b: bytes) -> int:
    """Telethon keeps int128/int256 nonces as ints."""
    return int.from_bytes(b, "little", signed=True)


def _assert_same_wire(ours: object, theirs: object) -> None:
    wire = ours.to_bytes()  # type: ignore[attr-defined]
    assert wire == bytes(theirs)  # type: ignore[call-overload]
    assert type(ours).from_bytes(bytes(theirs)) == ours  # type: ignore[attr-defined]


def test_init_connection_matches_telethon() -> None:
    ours = api.functions.InvokeWithLayer(
        layer=LAYER,
        query=api.functions.InitConnection(
            api_id=94575,
            device_model="mtlab test rig",
            system_version="Linux 6.8",
            app_version="0.1.0",
            system_lang_code="en-US",
            lang_pack="",
            lang_code="en",
            proxy=api.types.InputClientProxy(address="proxy.example", port=443),
            params=api.types.JsonObject(
                value=[
                    api.types.JsonObjectValue(key="tz_offset", value=api.types.JsonNumber(value=3600.0)),
                    api.types.JsonObjectValue(
                        key="flags",
                        value=api.types.JsonArray(
                            value=[
                                api.types.JsonBool(value=True),
                                api.types.JsonNull(),
                                api.types.JsonString(value="grüße ✓"),
                            ]
                        ),
                    ),
                ]
            ),
            query=api.functions.help.GetConfig(),
        ),
    )
    theirs = tg_functions.InvokeWithLayerRequest(
        layer=LAYER,
        query=tg_functions.InitConnectionRequest(
            api_id=94575,
            device_model="mtlab test rig",
            system_version="Linux 6.8",
            app_version="0.1.0",
            system_lang_code="en-US",
            lang_pack="",
            lang_code="en",
            proxy=tg_types.InputClientProxy(address="proxy.example", port=443),
            params=tg_types.JsonObject(
                value=[
                    tg_types.JsonObjectValue(key="tz_offset", value=tg_types.JsonNumber(value=3600.0)),
                    tg_types.JsonObjectValue(
                        key="flags",
                        value=tg_types.JsonArray(
                            value=[tg_types.JsonBool(value=True), tg_types.JsonNull(), tg_types.JsonString("grüße ✓")]
                        ),
                    ),
                ]
            ),
            query=tg_functions.help.GetConfigRequest(),
        ),
    )
    _assert_same_wire(ours, theirs)


_SECRET = bytes(range(256)) + b"\x07"  # 257 bytes: the long length prefix


def test_dc_option_with_secret_matches_telethon() -> None:
    ours = api.types.DcOption(id=2, ip_address="2001:db8::2", port=443, ipv6=True, static=True, secret=_SECRET)
    theirs = tg_types.DcOption(id=2, ip_address="2001:db8::2", port=443, ipv6=True, static=True, secret=_SECRET)
    _assert_same_wire(ours, theirs)


def test_config_matches_telethon() -> None:
    common = dict(
        date=1_700_000_000,
        expires=1_700_003_600,
        test_mode=False,
        this_dc=2,
        dc_txt_domain_name="_dc.example",
        chat_size_max=200,
        megagroup_size_max=200_000,
        forwarded_count_max=100,
        online_update_period_ms=210_000,
        offline_blur_timeout_ms=5_000,
        offline_idle_timeout_ms=30_000,
        online_cloud_timeout_ms=300_000,
        notify_cloud_delay_ms=30_000,
        notify_default_delay_ms=1_500,
        push_chat_period_ms=60_000,
        push_chat_limit=2,
        edit_time_limit=172_800,
        revoke_time_limit=2_147_483_647,
        revoke_pm_time_limit=2_147_483_647,
        rating_e_decay=2_419_200,
        stickers_recent_limit=200,
        channels_read_media_period=604_800,
        call_receive_timeout_ms=20_000,
        call_ring_timeout_ms=90_000,
        call_connect_timeout_ms=30_000,
        call_packet_timeout_ms=10_000,
        me_url_prefix="https://t.me/",
        caption_length_max=1024,
        message_length_max=4096,
        webfile_dc_id=4,
        # optional fields, including all three on the shared flags.2 and a `true` bit
        default_p2p_contacts=True,
        blocked_mode=True,
        tmp_sessions=4,
        autoupdate_url_prefix="https://updates.example/",
        static_maps_provider="mtlab",
        suggested_lang_code="de",
        lang_pack_version=11,
        base_lang_pack_version=7,
        autologin_token="tok",
    )
    ours = api.types.Config(
        **common,
        dc_options=[
            api.types.DcOption(id=1, ip_address="10.0.0.1", port=443),
            api.types.DcOption(id=2, ip_address="2001:db8::2", port=443, ipv6=True, media_only=True, secret=_SECRET),
        ],
        reactions_default=api.types.ReactionEmoji(emoticon="👍"),
    )
    theirs = tg_types.Config(
        **common,
        dc_options=[
            tg_types.DcOption(id=1, ip_address="10.0.0.1", port=443),
            tg_types.DcOption(id=2, ip_address="2001:db8::2", port=443, ipv6=True, media_only=True, secret=_SECRET),
        ],
        reactions_default=tg_types.ReactionEmoji(emoticon="👍"),
    )
    _assert_same_wire(ours, theirs)


def test_res_pq_matches_telethon() -> None:
    nonce, server_nonce = bytes(range(16)), bytes(range(0xF0, 0x100))  # the second is negative as an int128
    fingerprints = [-0x3E0549D9A6A5D0DA, 0x0BC35F3509F7B7A5]
    ours = mt.types.ResPQ(
        nonce=nonce,
        server_nonce=server_nonce,
        pq=b"\x17\xed\x48\x94\x1a\x08\xf9\x81",
        server_public_key_fingerprints=fingerprints,
    )
    theirs = tg_types.ResPQ(
        nonce=_int128(nonce),
        server_nonce=_int128(server_nonce),
        pq=b"\x17\xed\x48\x94\x1a\x08\xf9\x81",
        server_public_key_fingerprints=fingerprints,
    )
    _assert_same_wire(ours, theirs)


def test_msgs_ack_matches_telethon() -> None:
    ids = [0x5E0B700A00000000, 0x5E0B700A00000004, -1]
    _assert_same_wire(mt.types.MsgsAck(msg_ids=ids), tg_types.MsgsAck(msg_ids=ids))


_IN_TELETHON = [c for c in [*API.combinators, *MT.combinators] if c.id in alltlobjects.tlobjects]
#: Telethon's copy of mtproto.tl spells these `info:string` (as the spec does) and decodes them as UTF-8 with
#: errors="replace", so only UTF-8 payloads survive its read-and-rewrite.
_TELETHON_TEXT_FIELDS = {"msgs_state_info": "info", "msgs_all_info": "info"}


@pytest.mark.parametrize("c", _IN_TELETHON, ids=combinator_id)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_telethon_reads_and_rewrites_our_bytes_exactly(c: Combinator, data: st.DataObject) -> None:
    obj = data.draw(SHIPPED.of(c), label="object")
    if c.name in _TELETHON_TEXT_FIELDS:
        field = _TELETHON_TEXT_FIELDS[c.name]
        obj = dataclasses.replace(obj, **{field: getattr(obj, field).decode("utf-8", "replace").encode()})
    wire = obj.to_bytes()
    with _telethon_generated_classes():
        reader = BinaryReader(wire)
        theirs = reader.tgread_object()
    assert reader.tell_position() == len(wire)
    assert bytes(theirs) == wire


@contextlib.contextmanager
def _telethon_generated_classes() -> Iterator[None]:
    """Telethon reads message, messageService and messageEmpty into its own subclasses (telethon.tl.patched), which
    rewrite peers for its client (a PeerChat's id comes back changed): the wire format is the generated classes'."""
    patched = {cid: cls for cid, cls in alltlobjects.tlobjects.items() if cls.__module__ == "telethon.tl.patched"}
    for cid, cls in patched.items():
        alltlobjects.tlobjects[cid] = next(b for b in cls.__mro__ if b.__module__.startswith("telethon.tl.types"))
    try:
        yield
    finally:
        alltlobjects.tlobjects.update(patched)


# -- the parser ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "tlTestBad#1 x:int = TlTestBad",  # no ';'
        "tlTestBad#1 x:int TlTestBad;",  # no '='
        "tlTestBad#1 xint = TlTestBad;",  # a parameter without a type
        "tlTestBad#1 x: = TlTestBad;",
        "tlTestBad#1 {X:Foo} = TlTestBad;",  # only {X:Type} generics exist
        "tlTestBad#123456789 = TlTestBad;",  # more than 8 hex digits
        "= TlTestBad;",
    ],
)
def test_malformed_line_raises_schema_error_naming_the_line(bad: str) -> None:
    text = "tlTestOk#1 = TlTestOk;\n// a comment\n" + bad + "\ntlTestOk2#2 = TlTestOk;\n"
    with pytest.raises(SchemaError, match=r"^line 3: "):
        parse_schema(text)


@pytest.mark.parametrize(
    "bad",
    [
        "tlTestBad#1 x:Vector<> = TlTestBad;",  # would be a type named "Vector<>"
        "tlTestBad#1 x:vector<int = TlTestBad;",  # unclosed: a bare type named "vector<int"
        "tlTestBad#1 flags:# x:flags.a?int = TlTestBad;",  # the bit is not a number
        "tlTestBad#1 flags:# x:flags.32?int = TlTestBad;",  # a flags word has bits 0..31
        "tlTestBad#1 x:int x:long = TlTestBad;",  # a repeated field: the generated class could not compile
        "tlTestBad#1 x:int = ;",  # no result type
    ],
)
def test_malformed_type_raises_schema_error(bad: str) -> None:
    with pytest.raises(SchemaError):
        parse_line(bad, is_function=False)


def test_flags_field_before_its_flags_word_raises() -> None:
    with pytest.raises(SchemaError, match="x uses flags word flags before it is declared"):
        parse_line("tlTestF#1 x:flags.0?int flags:# = TlTestF;", is_function=False)
    with pytest.raises(SchemaError, match="flags2"):
        parse_line("tlTestF#1 flags:# a:flags.0?true b:flags2.1?int flags2:# = TlTestF;", is_function=False)


def test_flags_word_must_be_a_flags_word() -> None:
    with pytest.raises(SchemaError):
        parse_line("tlTestF#1 n:int x:n.0?int = TlTestF;", is_function=False)


def test_duplicate_ids_raise() -> None:
    with pytest.raises(SchemaError, match="0x0000abcd used by both tlTestA and tlTestB"):
        parse_schema("tlTestA#abcd = TlTestA;\n---functions---\ntlTestB#0000abcd = TlTestA;\n")
    computed = crc_id("tlTestC x:int = TlTestC;")
    with pytest.raises(SchemaError, match="used by both"):
        parse_schema(f"tlTestC x:int = TlTestC;\ntlTestD#{computed:08x} = TlTestC;\n")


def test_layer_comment_is_read() -> None:
    assert parse_schema("tlTestA#1 = TlTestA;\n//  LAYER 181\n").layer == 181
    assert parse_schema("tlTestA#1 = TlTestA;\n// layers are fun\n").layer is None


def test_builtin_declarations_are_skipped_and_nothing_else() -> None:
    text = """
        int ? = Int;
        long ? = Long;
        double ? = Double;
        string ? = String;
        vector {t:Type} # [ t ] = Vector t;
        int128 4*[ int ] = Int128;
        int256 8*[ int ] = Int256;
        vector#1cb5c415 {t:Type} # [ t ] = Vector t;
        longPollTlTest x:int128 = LongPollTlTest;
        int128HolderTlTest value:int128 = Int128HolderTlTest;
    """
    schema = parse_schema(text)
    assert [c.name for c in schema.combinators] == ["longPollTlTest", "int128HolderTlTest"]


def test_sections_and_computed_ids() -> None:
    schema = parse_schema(
        "tlTestA x:int = TlTestA;\n---functions---\ntlTestF#12345678 = TlTestA;\n---types---\ntlTestB = TlTestB;\n"
    )
    assert [(c.name, c.is_function, c.explicit_id) for c in schema.combinators] == [
        ("tlTestA", False, False),
        ("tlTestF", True, True),
        ("tlTestB", False, False),
    ]
    assert schema.by_name("tlTestA").id == crc_id("tlTestA x:int = TlTestA;")
    assert schema.by_name("tlTestF").id == 0x12345678


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int", TLType("int")),
        ("DcOption", TLType("DcOption")),
        ("help.Config", TLType("help.Config")),
        ("%Message", TLType("Message", bare=True)),
        ("future_salt", TLType("future_salt", bare=True)),
        ("help.config", TLType("help.config", bare=True)),
        ("Vector<long>", TLType("vector", vector=TLType("long"))),
        ("vector<%Message>", TLType("vector", bare=True, vector=TLType("Message", bare=True))),
        ("Vector<Vector<JSONValue>>", TLType("vector", vector=TLType("vector", vector=TLType("JSONValue")))),
        ("!X", TLType("X", generic_query=True)),
    ],
)
def test_parse_type(text: str, expected: TLType) -> None:
    assert parse_type(text) == expected
    assert str(parse_type(text)) == text


def test_flag_parameters() -> None:
    c = parse_line(
        "tlTestP#1 flags:# a:flags.0?true b:flags.5?Vector<int> flags2:# c:flags2.31?string = P;", is_function=False
    )
    assert c is not None
    params = {p.name: p for p in c.params}
    assert params["flags"].is_flags_word and params["flags2"].is_flags_word
    assert params["a"].is_flag_bit and (params["a"].flag_word, params["a"].flag_bit) == ("flags", 0)
    assert not params["b"].is_flag_bit and params["b"].type == TLType("vector", vector=TLType("int"))
    assert (params["c"].flag_word, params["c"].flag_bit) == ("flags2", 31)
