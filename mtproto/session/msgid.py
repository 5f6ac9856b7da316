"""Message identifiers: generating them and judging the peer's (core.telegram.org/mtproto/description,
"Message Identifier (msg_id)", and /mtproto/service_messages_about_messages for the error codes).

A msg_id is roughly unixtime * 2^32; the low 32 bits make ids unique within a second. A client's ids are
divisible by 4; a server's are 1 mod 4 for responses to client messages and 3 mod 4 otherwise. Each side's ids
grow strictly within a session, and a resent message always gets a fresh id.

The receiver keeps a window of recent ids (``MsgIdWindow``) to drop duplicates and refuses ids too far from
its clock: more than 300 s in the past or 30 s in the future.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import IntEnum

MAX_PAST = 300
MAX_FUTURE = 30


class BadMsgCode(IntEnum):
    """bad_msg_notification error codes (core.telegram.org/mtproto/service_messages_about_messages)."""

    MSG_ID_TOO_LOW = 16  # the client's clock is behind: sync time and resend with a new id
    MSG_ID_TOO_HIGH = 17  # ... or ahead
    MSG_ID_BAD_LOW_BITS = 18  # a client id must be divisible by 4
    CONTAINER_MSG_ID_REUSED = 19  # a container reuses the id of a message already received
    MSG_ID_TOO_OLD = 20  # older than anything remembered: cannot tell whether it is a duplicate
    SEQ_NO_TOO_LOW = 32
    SEQ_NO_TOO_HIGH = 33
    SEQ_NO_EXPECTED_EVEN = 34  # not content-related, yet an odd seq_no
    SEQ_NO_EXPECTED_ODD = 35  # content-related, yet an even seq_no
    BAD_SERVER_SALT = 48
    INVALID_CONTAINER = 64


def msg_id_time(msg_id: int) -> float:
    return msg_id / 2**32


class MsgIdGenerator:
    """Strictly increasing msg_ids for one side of one session.

    ``parity`` is the required remainder mod 4 of the ids it makes: 0 for a client; a server calls ``next``
    with ``response=True`` (1 mod 4) or ``False`` (3 mod 4).
    """

    __slots__ = ("_last", "offset")

    def __init__(self, offset: int = 0) -> None:
        self._last = 0
        self.offset = offset  # seconds to add to the local clock (client: learned from the server)

    def correct(self, offset: int) -> None:
        """Adopt a new clock offset (learned from bad_msg_notification 16/17).

        The ids made with the wrong clock were refused, so the sequence restarts from the corrected clock,
        even if that is below the last refused id.
        """
        self.offset = offset
        self._last = 0

    def next(self, now: float, remainder: int = 0) -> int:
        candidate = (int((now + self.offset) * 2**32) & ~3) | remainder
        if candidate <= self._last:
            candidate = ((self._last + 4) & ~3) | remainder
        self._last = candidate
        return candidate


@dataclass(slots=True)
class Seen:
    msg_id: int
    seq_no: int


class MsgIdWindow:
    """The peer's recent msg_ids and seq_nos, to drop duplicates and check seq_no order.

    Keeps at most ``size`` entries, sorted by msg_id. An id below the oldest remembered one, once the window
    is full, cannot be judged a duplicate or not: it is refused with code 20.
    """

    __slots__ = ("_ids", "_seqs", "floor", "size")

    def __init__(self, size: int = 1024, floor: int = 0) -> None:
        self.size = size
        self.floor = floor  # ids at or below it are refused as too old (a session that was forgotten)
        self._ids: list[int] = []
        self._seqs: list[int] = []

    @property
    def highest(self) -> int:
        return self._ids[-1] if self._ids else self.floor

    def __contains__(self, msg_id: int) -> bool:
        i = bisect.bisect_left(self._ids, msg_id)
        return i < len(self._ids) and self._ids[i] == msg_id

    def seq_of(self, msg_id: int) -> int | None:
        i = bisect.bisect_left(self._ids, msg_id)
        return self._seqs[i] if i < len(self._ids) and self._ids[i] == msg_id else None

    def too_old(self, msg_id: int) -> bool:
        return msg_id <= self.floor or (len(self._ids) >= self.size and msg_id < self._ids[0])

    def seq_problem(self, msg_id: int, seq_no: int) -> BadMsgCode | None:
        """32 or 33 when ``seq_no`` contradicts the order of the ids around ``msg_id``.

        From the spec: too low if a message with a lower msg_id had a higher seq_no, or an equal odd one (two
        content-related messages cannot share a number); too high, symmetrically, against a higher msg_id.
        """
        i = bisect.bisect_left(self._ids, msg_id)
        if i > 0:
            before = self._seqs[i - 1]
            if before > seq_no or (before == seq_no and seq_no & 1):
                return BadMsgCode.SEQ_NO_TOO_LOW
        if i < len(self._ids):
            after = self._seqs[i]
            if after < seq_no or (after == seq_no and seq_no & 1):
                return BadMsgCode.SEQ_NO_TOO_HIGH
        return None

    def add(self, msg_id: int, seq_no: int) -> None:
        i = bisect.bisect_left(self._ids, msg_id)
        self._ids.insert(i, msg_id)
        self._seqs.insert(i, seq_no)
        if len(self._ids) > self.size:
            del self._ids[0], self._seqs[0]


def time_problem(msg_id: int, now: float) -> BadMsgCode | None:
    t = msg_id_time(msg_id)
    if t < now - MAX_PAST:
        return BadMsgCode.MSG_ID_TOO_LOW
    if t > now + MAX_FUTURE:
        return BadMsgCode.MSG_ID_TOO_HIGH
    return None
