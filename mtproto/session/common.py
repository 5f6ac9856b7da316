"""What both roles of the session layer share: seq_no, containers, and which messages need an ack.

core.telegram.org/mtproto/description ("Message Sequence Number", "Content-related Message") and
/mtproto/service_messages ("Simple Container", "Packed Object"): a message that needs an acknowledgment is
content-related and takes seq_no 2n+1 (then n grows); acks and containers take 2n. A container holds up to
1024 messages, never another container, and each inner msg_id is lower than the container's own.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mtproto.errors import RemoteProtocolError
from mtproto.session.envelope import HEADER_SIZE, MAX_PADDING
from mtproto.tl.runtime import GZIP_PACKED_ID, INT, LONG, UINT, VECTOR_HEADER

MSGS_ACK_ID = 0x62D6B459
MSG_CONTAINER_ID = 0x73F1F8DC
RPC_RESULT_ID = 0xF35C6D01
RPC_ERROR_ID = 0x2144CA19
MSG_COPY_ID = 0xE06046B2

#: Never content-related: they take an even seq_no and are never acked (core.telegram.org/mtproto/description,
#: "Content-related Message"). gzip_packed is left out on purpose: the rule speaks of the wrapper, but common
#: clients number a gzipped query like the query inside it, and the receiver judges it by its contents.
NOT_CONTENT_RELATED = frozenset({MSGS_ACK_ID, MSG_CONTAINER_ID, MSG_COPY_ID})

#: Service messages a sender may mark either way: tdlib sends pings, state requests and the like with an even
#: seq_no, Telethon with an odd one. Everything not listed here or above is an API query and must be odd.
EITHER_PARITY = frozenset(
    {
        GZIP_PACKED_ID,
        0x7ABE77EC,  # ping
        0xF3427B8C,  # ping_delay_disconnect
        0xB921BD04,  # get_future_salts
        0xDA69FB52,  # msgs_state_req
        0x04DEB57D,  # msgs_state_info
        0x8CC0D131,  # msgs_all_info
        0x7D861A08,  # msg_resend_req
        0x276D3EC6,  # msg_detailed_info
        0x809DB6DF,  # msg_new_detailed_info
        0x58E4A740,  # rpc_drop_answer
        0x9299359F,  # http_wait
        0xE7512126,  # destroy_session
        0xD1435160,  # destroy_auth_key
    }
)

MAX_CONTAINER_MESSAGES = 1024
#: The largest container body; with the message header and padding it stays within a 1 MiB transport frame.
MAX_CONTAINER_BYTES = 1024 * 1024 - HEADER_SIZE - MAX_PADDING - 64
MAX_ACK_IDS = 8192

_INNER_HEADER = struct.Struct("<qii")  # msg_id, seqno, bytes


def constructor_of(body: bytes) -> int:
    if len(body) < 4:
        return -1
    value: int = UINT.unpack_from(body)[0]
    return value


def is_content_related(body: bytes) -> bool:
    """Whether a message we send with this body is content-related (odd seq_no, the receiver acks it)."""
    return constructor_of(body) not in NOT_CONTENT_RELATED


def seq_parity_problem(body: bytes, seq_no: int) -> int | None:
    """34 when a never-content-related message has an odd seq_no, 35 when an API query has an even one."""
    cid = constructor_of(body)
    if cid in NOT_CONTENT_RELATED:
        return 34 if seq_no & 1 else None
    if cid in EITHER_PARITY:
        return None
    return None if seq_no & 1 else 35


class SeqCounter:
    """seq_no for one direction of one session."""

    __slots__ = ("content_count",)

    def __init__(self) -> None:
        self.content_count = 0

    def next(self, content_related: bool) -> int:
        if content_related:
            self.content_count += 1
            return self.content_count * 2 - 1
        return self.content_count * 2


@dataclass(frozen=True, slots=True)
class Inner:
    """A message inside a container (or a lone message): its id, seq_no and raw TL body."""

    msg_id: int
    seq_no: int
    body: bytes


class InvalidContainer(RemoteProtocolError):
    """A container breaks a rule; answered with bad_msg_notification code 64, not by closing."""


def parse_container(body: bytes, container_msg_id: int) -> list[Inner]:
    """The messages of a msg_container body (constructor id included), checked against every limit."""
    if len(body) < 8:
        raise InvalidContainer("container shorter than its count")
    count = INT.unpack_from(body, 4)[0]
    if not 0 <= count <= MAX_CONTAINER_MESSAGES:
        raise InvalidContainer(f"container of {count} messages (at most {MAX_CONTAINER_MESSAGES})")
    if len(body) > MAX_CONTAINER_BYTES:
        raise InvalidContainer(f"container of {len(body)} bytes (at most {MAX_CONTAINER_BYTES})")
    pos = 8
    out: list[Inner] = []
    seen: set[int] = set()
    for _ in range(count):
        if pos + _INNER_HEADER.size > len(body):
            raise InvalidContainer("container truncated in a message header")
        msg_id, seq_no, length = _INNER_HEADER.unpack_from(body, pos)
        pos += _INNER_HEADER.size
        if length < 4 or length % 4 or pos + length > len(body):
            raise InvalidContainer(f"inner message length {length} does not fit the container")
        inner = body[pos : pos + length]
        pos += length
        if constructor_of(inner) == MSG_CONTAINER_ID:
            raise InvalidContainer("container inside a container")
        if msg_id >= container_msg_id or msg_id in seen:
            raise InvalidContainer(f"inner msg_id {msg_id} is not below the container's and unique")
        seen.add(msg_id)
        out.append(Inner(msg_id, seq_no, inner))
    if pos != len(body):
        raise InvalidContainer(f"{len(body) - pos} bytes after the last message of the container")
    return out


def pack_container(messages: Sequence[Inner]) -> bytes:
    parts = [UINT.pack(MSG_CONTAINER_ID), INT.pack(len(messages))]
    for m in messages:
        parts.append(_INNER_HEADER.pack(m.msg_id, m.seq_no, len(m.body)))
        parts.append(m.body)
    return b"".join(parts)


def pack_msgs_ack(msg_ids: Iterable[int]) -> bytes:
    ids = list(msg_ids)
    return UINT.pack(MSGS_ACK_ID) + VECTOR_HEADER + INT.pack(len(ids)) + b"".join(LONG.pack(i) for i in ids)


def pack_rpc_result(req_msg_id: int, result: bytes) -> bytes:
    return UINT.pack(RPC_RESULT_ID) + LONG.pack(req_msg_id) + result


def batches(bodies: Sequence[bytes]) -> list[list[int]]:
    """Group message indexes into containers within the count and size limits, keeping their order."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 8
    for i, body in enumerate(bodies):
        cost = _INNER_HEADER.size + len(body)
        if current and (len(current) >= MAX_CONTAINER_MESSAGES or size + cost > MAX_CONTAINER_BYTES):
            groups.append(current)
            current, size = [], 8
        current.append(i)
        size += cost
    if current:
        groups.append(current)
    return groups


__all__ = [
    "GZIP_PACKED_ID",
    "MAX_ACK_IDS",
    "MAX_CONTAINER_BYTES",
    "MAX_CONTAINER_MESSAGES",
    "Inner",
    "InvalidContainer",
    "SeqCounter",
    "batches",
    "constructor_of",
    "is_content_related",
    "pack_container",
    "pack_msgs_ack",
    "pack_rpc_result",
    "parse_container",
    "seq_parity_problem",
]
