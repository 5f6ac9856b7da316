"""Shared pieces of the transport tests: seeded randomness, a gateway-like feeder, payload comparison."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from typing import TypeAlias

from mtproto.transport import (
    NEED_DATA,
    ClientTransport,
    Frame,
    QuickAck,
    Randbytes,
    ServerTransport,
    TransportError,
    TransportKind,
)

Event: TypeAlias = Frame | QuickAck | TransportError

COMBOS = [
    (kind, obfuscated)
    for kind in TransportKind
    for obfuscated in (False, True)
    if not (obfuscated and kind is TransportKind.FULL)  # the full framing has no obfuscated form
]
COMBO_IDS = [f"{kind.value}-{'obfuscated' if obf else 'plain'}" for kind, obf in COMBOS]


def seeded(seed: int) -> Randbytes:
    """A reproducible ``randbytes``: tests pass randomness in exactly as production code does."""
    return random.Random(seed).randbytes


def drain(transport: ServerTransport | ClientTransport) -> list[Event]:
    """Every event the buffered bytes complete, as a gateway would pull them."""
    events: list[Event] = []
    while (event := transport.next_event()) is not NEED_DATA:
        events.append(event)
    # The promise behind receive_capacity: after draining there is always room for one more byte.
    if transport.receive_capacity <= 0:
        raise AssertionError("drained transport has no receive capacity: the caller would deadlock")
    return events


def feed(transport: ServerTransport | ClientTransport, chunks: Iterable[bytes]) -> list[Event]:
    """Deliver ``chunks`` like a gateway: never more than ``receive_capacity`` at once, draining after each."""
    events: list[Event] = []
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            room = transport.receive_capacity
            transport.receive_data(view[:room])
            view = view[room:]
            events.extend(drain(transport))
    return events


def cut(stream: bytes, cuts: Iterable[int], byte_prefix: int = 0) -> list[bytes]:
    """Split ``stream`` at ``cuts``; its first ``byte_prefix`` bytes go one at a time."""
    points = sorted({p for p in cuts if 0 < p < len(stream)} | set(range(1, min(byte_prefix, len(stream)))))
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def same_payload(kind: TransportKind, got: bytes, sent: bytes) -> bool:
    """Padded intermediate hands up the payload plus 0, 4, 8 or 12 bytes of aligned padding; others exactly."""
    if kind is TransportKind.PADDED_INTERMEDIATE:
        return got[: len(sent)] == sent and len(got) - len(sent) in (0, 4, 8, 12)
    return got == sent
