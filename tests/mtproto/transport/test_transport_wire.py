"""Wire-level tests: exact bytes from the spec (core.telegram.org/mtproto/mtproto-transports), recognition of
the framing, limits, failures and the terminal state."""

from __future__ import annotations

import struct
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from transport_helpers import COMBO_IDS, COMBOS, drain, feed, same_payload, seeded

from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode
from mtproto.transport import (
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    ClientTransport,
    Frame,
    QuickAck,
    Randbytes,
    ServerTransport,
    TransportError,
    TransportKind,
)
from mtproto.transport.obfuscation import client_init, is_valid_init

ABRIDGED = TransportKind.ABRIDGED
INTERMEDIATE = TransportKind.INTERMEDIATE
PADDED = TransportKind.PADDED_INTERMEDIATE
FULL = TransportKind.FULL
MARKERS = {ABRIDGED: b"\xef", INTERMEDIATE: b"\xee" * 4, PADDED: b"\xdd" * 4, FULL: b""}
TAGS = {ABRIDGED: b"\xef" * 4, INTERMEDIATE: b"\xee" * 4, PADDED: b"\xdd" * 4}


def fixed(data: bytes) -> Randbytes:
    """A randbytes that hands out ``data`` in order (and fails loudly when it runs out)."""
    stream = bytearray(data)

    def randbytes(n: int) -> bytes:
        if n > len(stream):
            raise AssertionError("fixed randbytes exhausted")
        out = bytes(stream[:n])
        del stream[:n]
        return out

    return randbytes


def aes_ctr(key: bytes, iv: bytes) -> CipherContext:
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()


def connected(kind: TransportKind, obfuscated: bool) -> tuple[ClientTransport, ServerTransport]:
    """A client and a server that have exchanged the preamble and one frame."""
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=seeded(1))
    server = ServerTransport(randbytes=seeded(2))
    [frame] = feed(server, [client.send_frame(bytes(24))])
    assert isinstance(frame, Frame) and same_payload(kind, frame.payload, bytes(24))
    return client, server


# --- exact envelopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "quick_ack", "header"),
    [
        (1, False, b"\x01"),
        (0x7E, False, b"\x7e"),  # the largest one-byte length
        (0x7F, False, b"\x7f\x7f\x00\x00"),  # length/4 == 127 needs the long form
        (0x1234, False, b"\x7f\x34\x12\x00"),
        (0x7E, True, b"\xfe"),  # quick ack: bit 7 of the length byte
        (0x7F, True, b"\xff\x7f\x00\x00"),  # ... and 0xff in place of 0x7f
    ],
)
def test_abridged_envelope(words: int, quick_ack: bool, header: bytes) -> None:
    payload = bytes(range(256)) * (words // 64 + 1)
    payload = payload[: 4 * words]
    client = ClientTransport(ABRIDGED, obfuscated=False, randbytes=seeded(0))
    assert client.send_frame(payload, quick_ack=quick_ack) == b"\xef" + header + payload
    assert client.send_frame(payload, quick_ack=quick_ack) == header + payload  # the marker goes once


def test_intermediate_envelope() -> None:
    client = ClientTransport(INTERMEDIATE, obfuscated=False, randbytes=seeded(0))
    assert client.send_frame(b"abcdefgh") == b"\xee\xee\xee\xee" + b"\x08\x00\x00\x00abcdefgh"
    assert client.send_frame(b"abcd", quick_ack=True) == b"\x04\x00\x00\x80abcd"


def test_padded_intermediate_envelope() -> None:
    # randbytes: one byte picks the padding length (0x27 & 15 = 7), then the 7 padding bytes.
    client = ClientTransport(PADDED, obfuscated=False, randbytes=fixed(b"\x27PADDING\x10\x03xyz"))
    assert client.send_frame(b"abcdefgh") == b"\xdd\xdd\xdd\xdd" + b"\x0f\x00\x00\x00abcdefgh" + b"PADDING"
    assert client.send_frame(b"abcd", quick_ack=True) == b"\x04\x00\x00\x80abcd"  # 0x10 & 15 = no padding
    assert client.send_frame(b"abcd") == b"\x07\x00\x00\x00abcdxyz"


def test_full_envelope_counts_seq_and_checksums() -> None:
    client = ClientTransport(FULL, obfuscated=False, randbytes=seeded(0))
    for seq, payload in enumerate([b"abcd", b"efghijkl", b"mnop"]):
        head = struct.pack("<II", len(payload) + 12, seq)
        crc = struct.pack("<I", zlib.crc32(head + payload))
        assert client.send_frame(payload) == head + payload + crc  # no marker: the first seq 0 is its mark


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (ABRIDGED, b"\x80\x01\x02\x03"),  # byte-swapped: the token's top byte (bit 7 set) first
        (INTERMEDIATE, b"\x03\x02\x01\x80"),  # little-endian, no header
    ],
)
def test_quick_ack_answer_byte_order(kind: TransportKind, answer: bytes) -> None:
    client, server = connected(kind, obfuscated=False)
    assert server.send_quick_ack(0x8001_0203) == answer
    client.receive_data(answer)
    assert drain(client) == [QuickAck(0x8001_0203)]


def test_padded_quick_ack_answer_is_a_small_frame() -> None:
    client = ClientTransport(PADDED, obfuscated=False, randbytes=seeded(0))
    server = ServerTransport(randbytes=fixed(b"\x0dRRRR" + b"\x08" + b"Q" * 8))
    feed(server, [client.send_frame(bytes(24))])
    # 0x0d % 9 = 4 bytes of padding: 0xffffffff, the token little-endian, the padding; total 12.
    assert server.send_quick_ack(0x8001_0203) == b"\x0c\x00\x00\x00" + b"\xff" * 4 + b"\x03\x02\x01\x80RRRR"
    answer = server.send_quick_ack(0x8000_0000)
    assert answer == b"\x10\x00\x00\x00" + b"\xff" * 4 + b"\x00\x00\x00\x80" + b"Q" * 8  # the longest form
    client.receive_data(answer)
    assert drain(client) == [QuickAck(0x8000_0000)]


def test_padded_client_also_accepts_a_bare_quick_ack() -> None:
    """tdlib's reader (and older servers) treat a padded quick ack like an intermediate one."""
    client = ClientTransport(PADDED, obfuscated=False, randbytes=seeded(0))
    client.receive_data(b"\x03\x02\x01\x80")
    assert drain(client) == [QuickAck(0x8001_0203)]


def test_padding_is_stripped_to_the_payload_alignment() -> None:
    server = ServerTransport(randbytes=seeded(0))
    server.receive_data(b"\xdd" * 4 + struct.pack("<I", 8 + 3) + b"abcdefgh" + b"xyz")
    server.receive_data(struct.pack("<I", 8 + 7) + b"abcdefgh" + b"1234567")
    # 3 stray bytes cannot be payload; 4 of the 7 can, and stay for the MTProto layer to ignore.
    assert drain(server) == [Frame(b"abcdefgh"), Frame(b"abcdefgh1234")]


def test_transport_error_envelope() -> None:
    _, server = connected(INTERMEDIATE, obfuscated=False)
    assert server.send_error(TransportErrorCode.FLOOD) == b"\x04\x00\x00\x00" + struct.pack("<i", -429)


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("code", list(TransportErrorCode))
def test_transport_error_round_trip(kind: TransportKind, obfuscated: bool, code: TransportErrorCode) -> None:
    client, server = connected(kind, obfuscated)
    client.receive_data(server.send_frame(bytes(range(24))))
    client.receive_data(server.send_error(code))
    events = drain(client)
    assert events[1:] == [TransportError(int(code))]
    with pytest.raises(LocalProtocolError):
        server.send_frame(bytes(24))  # send_error closed the server side


def test_small_non_negative_payload_is_a_frame_not_an_error() -> None:
    client, server = connected(INTERMEDIATE, obfuscated=False)
    client.receive_data(server.send_frame(b"\x00\x00\x00\x00"))
    assert drain(client) == [Frame(b"\x00\x00\x00\x00")]


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
def test_quick_ack_request_and_answer(kind: TransportKind, obfuscated: bool) -> None:
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=seeded(1))
    server = ServerTransport(randbytes=seeded(2))
    if kind is FULL:
        with pytest.raises(LocalProtocolError, match="no quick ack"):
            client.send_frame(bytes(24), quick_ack=True)
        feed(server, [ClientTransport(FULL, obfuscated=False, randbytes=seeded(1)).send_frame(bytes(24))])
        with pytest.raises(LocalProtocolError, match="no quick ack"):
            server.send_quick_ack(0x8000_0001)
        return
    [frame, plain] = feed(server, [client.send_frame(bytes(24), quick_ack=True) + client.send_frame(bytes(28))])
    assert isinstance(frame, Frame) and frame.quick_ack
    assert isinstance(plain, Frame) and not plain.quick_ack
    client.receive_data(server.send_quick_ack(0xDEAD_BEEF))
    assert drain(client) == [QuickAck(0xDEAD_BEEF)]


# --- obfuscation ---------------------------------------------------------------------------------------


def test_obfuscation_known_answer() -> None:
    """The init and both streams, derived here straight from the spec's text with cryptography's AES-CTR."""
    chosen = bytes(range(64))  # valid: first byte 0x00, first int 0x03020100, bytes 4..8 non-zero
    client = ClientTransport(INTERMEDIATE, obfuscated=True, randbytes=fixed(chosen), dc_id=-4)

    init = chosen[:56] + b"\xee\xee\xee\xee" + struct.pack("<h", -4) + chosen[62:]
    up = aes_ctr(init[8:40], init[40:56])  # client -> server: key init[8:40], iv init[40:56]
    reverse = init[8:56][::-1]
    down = aes_ctr(reverse[:32], reverse[32:48])  # server -> client: from the reversed bytes

    encrypted_init = up.update(init)
    payload = b"0123456789abcdef0123"
    wire = client.send_frame(payload)
    assert wire[:56] == init[:56]  # in the clear
    assert wire[56:64] == encrypted_init[56:64]  # tag and DC id encrypted
    assert wire[64:] == up.update(struct.pack("<I", len(payload)) + payload)  # the stream runs on

    server = ServerTransport(randbytes=seeded(0), expected_dc=4)  # media DC -4: compared by absolute value
    server.receive_data(wire)
    assert drain(server) == [Frame(payload)]
    assert (server.kind, server.obfuscated, server.dc_id) == (INTERMEDIATE, True, -4)

    answer = b"answer-payload-00"[:16]
    reply = server.send_frame(answer)
    assert reply == down.update(struct.pack("<I", 16) + answer)
    client.receive_data(reply)
    assert drain(client) == [Frame(answer)]


@pytest.mark.parametrize(
    "bad_start",
    [
        b"\xef\x01\x02\x03\x04\x05\x06\x07",  # abridged marker
        b"HEAD\x01\x02\x03\x04",
        b"POST\x01\x02\x03\x04",
        b"GET \x01\x02\x03\x04",
        b"OPTI\x01\x02\x03\x04",
        b"\x16\x03\x01\x02\x01\x02\x03\x04",  # a TLS record header
        b"\xdd\xdd\xdd\xdd\x01\x02\x03\x04",
        b"\xee\xee\xee\xee\x01\x02\x03\x04",
        b"\x01\x02\x03\x04\x00\x00\x00\x00",  # the full framing's seq 0
    ],
)
def test_client_redraws_an_init_that_looks_like_a_plain_start(bad_start: bytes) -> None:
    bad = bad_start + bytes(range(8, 64))
    good = bytes(range(1, 65))
    assert not is_valid_init(bad) and is_valid_init(good)
    client = ClientTransport(ABRIDGED, obfuscated=True, randbytes=fixed(bad + good))
    assert client.send_frame(bytes(4))[:56] == good[:56]


def test_client_init_gives_up_on_a_broken_random_source() -> None:
    with pytest.raises(LocalProtocolError, match="no valid obfuscation init"):
        ClientTransport(ABRIDGED, obfuscated=True, randbytes=lambda n: b"\xef" * n)


def test_full_transport_has_no_obfuscated_form() -> None:
    with pytest.raises(LocalProtocolError, match="no obfuscated form"):
        ClientTransport(FULL, obfuscated=True, randbytes=seeded(0))


def test_obfuscated_wrong_dc_is_refused_with_444() -> None:
    client = ClientTransport(PADDED, obfuscated=True, randbytes=seeded(5), dc_id=3)
    server = ServerTransport(randbytes=seeded(6), expected_dc=2)
    with pytest.raises(RemoteProtocolError) as caught:
        feed(server, [client.send_frame(bytes(24))])
    assert caught.value.transport_error is TransportErrorCode.INVALID_DC
    assert server.dc_id == 3
    client.receive_data(server.send_error(TransportErrorCode.INVALID_DC))
    assert drain(client) == [TransportError(-444)]


def test_unknown_obfuscation_tag_is_refused_with_404() -> None:
    wire, _, _ = client_init(b"\x01\x02\x03\x04", 2, seeded(7))
    server = ServerTransport(randbytes=seeded(0))
    server.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="tag") as caught:
        server.next_event()
    assert caught.value.transport_error is TransportErrorCode.NOT_FOUND
    assert server.send_error(TransportErrorCode.NOT_FOUND) == b""  # no framing to carry the code


# --- recognising the framing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
def test_framing_is_recognised_byte_by_byte(kind: TransportKind, obfuscated: bool) -> None:
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=seeded(3))
    server = ServerTransport(randbytes=seeded(4))
    wire = client.send_frame(bytes(range(40)))
    decisive = 64 if obfuscated else {ABRIDGED: 1, INTERMEDIATE: 4, PADDED: 4, FULL: 8}[kind]
    events = []
    for i in range(len(wire)):
        server.receive_data(wire[i : i + 1])
        events += drain(server)
        assert server.kind is (kind if i + 1 >= decisive else None), i
    assert server.obfuscated is obfuscated
    assert len(events) == 1 and isinstance(events[0], Frame) and events[0].payload[:40] == bytes(range(40))


@pytest.mark.parametrize(
    "start", [b"POST /api HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n", b"OPTIONS * HTTP/1.1\r\n"]
)
def test_http_is_refused(start: bytes) -> None:
    server = ServerTransport(randbytes=seeded(0))
    with pytest.raises(RemoteProtocolError, match="HTTP") as caught:
        feed(server, [start])
    assert caught.value.transport_error is None  # close silently: there is no MTProto framing to answer in
    assert server.send_error(TransportErrorCode.NOT_FOUND) == b""


def test_tls_start_is_refused() -> None:
    server = ServerTransport(randbytes=seeded(0))
    server.receive_data(b"\x16\x03\x01\x02\x00")
    with pytest.raises(RemoteProtocolError, match="TLS"):
        server.next_event()


# --- limits --------------------------------------------------------------------------------------------

MAX = 4096


def bad_headers(kind: TransportKind) -> list[bytes]:
    """Length headers the server must refuse: too long, zero, and (where expressible) misaligned."""
    if kind is ABRIDGED:
        return [b"\x7f" + ((MAX // 4) + 1).to_bytes(3, "little"), b"\x00", b"\x7f\x00\x00\x00", b"\xff\xff\xff\xff"]
    if kind is INTERMEDIATE:
        return [struct.pack("<I", n) for n in (MAX + 4, 0, 6, 0x7FFF_FFFF, 0xFFFF_FFFF)]
    if kind is PADDED:
        return [struct.pack("<I", n) for n in (MAX + 16, 0, 3, 0xFFFF_FFFF)]
    return [struct.pack("<II", n, 0) for n in (MAX + 16, 12, 0, 18, 0xFFFF_FFFF)]


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
def test_bad_length_is_refused_from_the_header_alone(kind: TransportKind, obfuscated: bool) -> None:
    for header in bad_headers(kind):
        if obfuscated:
            tag = TAGS[kind]
            init, encryptor, _ = client_init(tag, 2, seeded(8))
            wire = init + encryptor.update(header)
        else:
            wire = MARKERS[kind] + header
        server = ServerTransport(randbytes=seeded(0), max_frame=MAX)
        server.receive_data(wire)  # the header and nothing after it
        with pytest.raises(RemoteProtocolError) as caught:
            server.next_event()
        assert caught.value.transport_error is TransportErrorCode.NOT_FOUND, header.hex()
        assert server.kind is kind


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
def test_largest_allowed_frame_passes(kind: TransportKind, obfuscated: bool) -> None:
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=seeded(1), max_frame=MAX)
    server = ServerTransport(randbytes=seeded(2), max_frame=MAX)
    events = feed(server, [client.send_frame(bytes(MAX))])
    assert len(events) == 1 and isinstance(events[0], Frame) and events[0].payload[:MAX] == bytes(MAX)


def test_receive_buffer_is_bounded() -> None:
    server = ServerTransport(randbytes=seeded(0), max_frame=MAX)
    assert server.receive_capacity == MAX + 64  # one frame and its envelope, or the obfuscation init
    server.receive_data(b"\xee" * 4 + struct.pack("<I", MAX))
    assert server.next_event() is NEED_DATA  # the marker is consumed, the 4-byte header waits
    assert server.receive_capacity == MAX + 60
    with pytest.raises(LocalProtocolError, match="receive_capacity"):
        server.receive_data(bytes(MAX + 61))
    assert server.receive_capacity == 0
    with pytest.raises(LocalProtocolError):
        server.next_event()


def test_default_max_frame_fits_a_one_megabyte_file_chunk() -> None:
    client = ClientTransport(INTERMEDIATE, obfuscated=True, randbytes=seeded(1))
    server = ServerTransport(randbytes=seeded(2))
    big = bytes(1 << 20) + bytes(1024)
    assert feed(server, [client.send_frame(big)]) == [Frame(big)]
    assert server.max_frame == DEFAULT_MAX_FRAME


# --- the full framing's checks -------------------------------------------------------------------------


def test_full_crc_mismatch_is_refused() -> None:
    wire = bytearray(ClientTransport(FULL, obfuscated=False, randbytes=seeded(0)).send_frame(bytes(range(32))))
    wire[20] ^= 0x01
    server = ServerTransport(randbytes=seeded(0))
    server.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="CRC"):
        server.next_event()


def test_full_seq_mismatch_is_refused_before_the_payload() -> None:
    client = ClientTransport(FULL, obfuscated=False, randbytes=seeded(0))
    first = client.send_frame(bytes(range(32)))
    server = ServerTransport(randbytes=seeded(0))
    server.receive_data(first)
    assert drain(server) == [Frame(bytes(range(32)))]
    server.receive_data(first[:8])  # a replay of frame 0: length and seq are enough to refuse it
    with pytest.raises(RemoteProtocolError, match="seq"):
        server.next_event()


def test_full_seq_from_the_server_is_checked_by_the_client() -> None:
    client, server = connected(FULL, obfuscated=False)
    server.send_frame(bytes(24))  # seq 0, lost
    client.receive_data(server.send_frame(bytes(24)))  # seq 1
    with pytest.raises(RemoteProtocolError, match="seq"):
        client.next_event()


# --- the terminal state and misuse ---------------------------------------------------------------------


def test_failure_is_terminal_but_the_error_can_still_be_sent() -> None:
    init, up, down = client_init(TAGS[ABRIDGED], 2, seeded(9))
    server = ServerTransport(randbytes=seeded(0))
    server.receive_data(init + up.update(b"\x01abcd"))
    assert drain(server) == [Frame(b"abcd")]
    first_reply = server.send_frame(b"efgh")
    server.receive_data(up.update(b"\x00"))  # a zero length
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    code = caught.value.transport_error
    assert code is TransportErrorCode.NOT_FOUND
    for call in (server.next_event, lambda: server.receive_data(b"x"), lambda: server.send_frame(bytes(4))):
        with pytest.raises(LocalProtocolError):
            call()
    # The error is framed and encrypted where the server's stream left off.
    assert down.update(first_reply + server.send_error(code)) == b"\x01efgh" + b"\x01" + struct.pack("<i", -404)
    with pytest.raises(LocalProtocolError):
        server.send_error(code)  # once only: afterwards the connection is closed


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.send_frame(b""),
        lambda c: c.send_frame(b"abc"),
        lambda c: c.send_frame(b"abcdef"),
    ],
    ids=["empty", "3 bytes", "6 bytes"],
)
def test_client_refuses_bad_payloads(call) -> None:  # type: ignore[no-untyped-def]
    client = ClientTransport(INTERMEDIATE, obfuscated=False, randbytes=seeded(0))
    with pytest.raises(LocalProtocolError):
        call(client)
    with pytest.raises(LocalProtocolError):
        client.send_frame(bytes(4))  # a misuse is terminal too


def test_server_refuses_misuse() -> None:
    server = ServerTransport(randbytes=seeded(0))
    with pytest.raises(LocalProtocolError):
        server.send_frame(bytes(4))  # the framing is not known yet
    _, server = connected(INTERMEDIATE, obfuscated=False)
    with pytest.raises(LocalProtocolError, match="bit 31"):
        server.send_quick_ack(0x1234)  # a token without bit 31 would read as a length


@pytest.mark.parametrize("max_frame", [0, 3, 64 << 20])
def test_max_frame_is_validated(max_frame: int) -> None:
    with pytest.raises(LocalProtocolError):
        ServerTransport(randbytes=seeded(0), max_frame=max_frame)


def test_short_random_answer_is_caught() -> None:
    client = ClientTransport(PADDED, obfuscated=False, randbytes=lambda n: b"\x0f")
    with pytest.raises(LocalProtocolError, match="randbytes"):
        client.send_frame(bytes(4))
