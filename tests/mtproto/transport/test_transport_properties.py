"""Property tests: every framing, plain and obfuscated, round-trips through arbitrary TCP chunking, and no
input makes ServerTransport or ClientTransport raise anything but RemoteProtocolError."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transport_helpers import COMBO_IDS, COMBOS, cut, feed, same_payload, seeded

from mtproto.errors import RemoteProtocolError
from mtproto.transport import (
    ClientTransport,
    Frame,
    QuickAck,
    ServerTransport,
    TransportError,
    TransportKind,
)

ROUND_TRIP = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Payload sizes in 4-byte words: small ones, the abridged one-byte/four-byte boundary (0x7f words), and large
# ones up to 300 KiB, which span many TCP reads.
WORDS = st.one_of(
    st.integers(1, 40),
    st.integers(0x7C, 0x82),
    st.integers(0x83, 300 * 1024 // 4),
)
QUICK_ACK_KINDS = {TransportKind.ABRIDGED, TransportKind.INTERMEDIATE, TransportKind.PADDED_INTERMEDIATE}
TOKENS = st.integers(0x8000_0000, 0xFFFF_FFFF)


def make_payload(words: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(4 * words)


def draw_chunks(data: st.DataObject, stream: bytes, boundaries: list[int]) -> list[bytes]:
    """Hypothesis picks the split points: near frame boundaries (so headers get split), anywhere, and a run
    of one-byte chunks at the start (preamble and first header byte by byte)."""
    near = [
        b + data.draw(st.integers(-9, 9), label="offset near a boundary")
        for b in boundaries
        if data.draw(st.booleans(), label="cut near this boundary")
    ]
    anywhere = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    prefix = data.draw(st.integers(0, 80), label="one-byte prefix")
    return cut(stream, near + anywhere, prefix)


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
@ROUND_TRIP
@given(
    sizes=st.lists(WORDS, min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_client_to_server_round_trip(
    kind: TransportKind, obfuscated: bool, sizes: list[int], seed: int, data: st.DataObject
) -> None:
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=seeded(seed), dc_id=2)
    server = ServerTransport(randbytes=seeded(seed + 1), expected_dc=2 if obfuscated else None)
    payloads = [make_payload(words, seed + i) for i, words in enumerate(sizes)]
    flags = [kind in QUICK_ACK_KINDS and data.draw(st.booleans(), label="quick ack") for _ in payloads]

    pieces = [client.send_frame(p, quick_ack=f) for p, f in zip(payloads, flags, strict=True)]
    stream = b"".join(pieces)
    boundaries = [sum(map(len, pieces[:i])) for i in range(len(pieces))]
    events = feed(server, draw_chunks(data, stream, boundaries))

    assert server.kind is kind
    assert server.obfuscated is obfuscated
    assert server.dc_id == (2 if obfuscated else None)
    assert [type(e) for e in events] == [Frame] * len(payloads)
    for event, payload, flag in zip(events, payloads, flags, strict=True):
        assert isinstance(event, Frame)
        assert same_payload(kind, event.payload, payload)
        assert event.quick_ack is flag


@pytest.mark.parametrize(("kind", "obfuscated"), COMBOS, ids=COMBO_IDS)
@ROUND_TRIP
@given(
    # At least 5 words: a shorter payload is no MTProto message, and a 4-byte negative one *is* a transport
    # error by definition, so the client would rightly not hand it up as a frame.
    items=st.lists(
        st.one_of(
            st.tuples(st.just("frame"), WORDS.filter(lambda w: w >= 5)),
            st.tuples(st.just("quick_ack"), TOKENS),
        ),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_server_to_client_round_trip(
    kind: TransportKind, obfuscated: bool, items: list[tuple[str, int]], seed: int, data: st.DataObject
) -> None:
    """Frames and (where the framing has them) quick-ack answers, interleaved, arrive in order."""
    client = ClientTransport(kind, obfuscated=obfuscated, randbytes=seeded(seed))
    server = ServerTransport(randbytes=seeded(seed + 1))
    feed(server, [client.send_frame(b"\x00" * 40)])  # the preamble tells the server which framing

    expected: list[bytes | int] = []
    pieces: list[bytes] = []
    for i, (what, value) in enumerate(items):
        if what == "quick_ack":
            if kind not in QUICK_ACK_KINDS:
                continue
            pieces.append(server.send_quick_ack(value))
            expected.append(value)
        else:
            payload = make_payload(value, seed + i)
            pieces.append(server.send_frame(payload))
            expected.append(payload)
    stream = b"".join(pieces)
    boundaries = [sum(map(len, pieces[:i])) for i in range(len(pieces))]
    events = feed(client, draw_chunks(data, stream, boundaries))

    assert len(events) == len(expected)
    for event, want in zip(events, expected, strict=True):
        if isinstance(want, int):
            assert event == QuickAck(want)
        else:
            assert isinstance(event, Frame)
            assert not event.quick_ack
            assert same_payload(kind, event.payload, want)


PREFIXES = st.sampled_from(
    [
        b"",
        b"\xef",
        b"\xee\xee\xee\xee",
        b"\xdd\xdd\xdd\xdd",
        b"\x18\x00\x00\x00\x00\x00\x00\x00",  # a full-framing start: length 24, seq 0
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    prefix=PREFIXES,
    body=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 420), max_size=8),
    max_frame=st.sampled_from([4, 64, 1 << 20]),
    expected_dc=st.sampled_from([None, 2]),
)
def test_server_survives_arbitrary_bytes(
    prefix: bytes, body: bytes, cuts: list[int], max_frame: int, expected_dc: int | None
) -> None:
    """Only Frames, NEED_DATA or RemoteProtocolError come out; after a failure, the error still frames."""
    server = ServerTransport(randbytes=seeded(0), max_frame=max_frame, expected_dc=expected_dc)
    try:
        events = feed(server, cut(prefix + body, cuts))
    except RemoteProtocolError as exc:
        assert server.receive_capacity == 0
        if exc.transport_error is not None:
            assert isinstance(server.send_error(exc.transport_error), bytes)
        return
    assert all(type(e) is Frame for e in events)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(TransportKind)),
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=8),
    max_frame=st.sampled_from([4, 64, 1 << 20]),
)
def test_client_survives_arbitrary_bytes(kind: TransportKind, body: bytes, cuts: list[int], max_frame: int) -> None:
    client = ClientTransport(kind, obfuscated=False, randbytes=seeded(0), max_frame=max_frame)
    try:
        events = feed(client, cut(body, cuts))
    except RemoteProtocolError:
        return
    assert all(type(e) in (Frame, QuickAck, TransportError) for e in events)
