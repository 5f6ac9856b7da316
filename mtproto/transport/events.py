"""The events a transport hands up, and the names of the four framings.

core.telegram.org/mtproto/mtproto-transports: a TCP connection carries one framing ("Abridged",
"Intermediate", "Padded intermediate" or "Full"), and besides whole MTProto payloads the server may send two
small things that are not payloads: a "Quick ack" token and a "Transport errors" code. Each of them is one
event type here, so that callers match on types instead of sniffing bytes.

``NEED_DATA`` is h11's sentinel: ``next_event`` returns it (it does not raise) when the bytes buffered so far
do not complete an event; the caller then reads more from its socket and calls ``receive_data``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class TransportKind(enum.Enum):
    """The four MTProto TCP framings (core.telegram.org/mtproto/mtproto-transports)."""

    ABRIDGED = "abridged"
    INTERMEDIATE = "intermediate"
    PADDED_INTERMEDIATE = "padded_intermediate"
    FULL = "full"


class NeedData(enum.Enum):
    """The type of ``NEED_DATA``; an enum with one member, so that mypy narrows ``event is NEED_DATA``."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by ``next_event`` when more bytes are needed before the next event is complete."""


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """One MTProto payload taken out of its transport envelope.

    ``quick_ack`` is true when the client set the high bit of the length ("Quick ack"): the session layer
    should answer with ``send_quick_ack`` once the payload is decrypted and accepted. It is always false on
    frames the client receives (the server never asks for quick acks).

    With the padded intermediate framing the payload may carry 0, 4, 8 or 12 trailing bytes of padding: see
    ``mtproto.transport.framing.PaddedIntermediateCodec`` for why no transport can strip them exactly.
    """

    payload: bytes
    quick_ack: bool = False

    def __repr__(self) -> str:
        # A frame can be a megabyte long: logs want its size, not its bytes.
        return f"Frame(<{len(self.payload)} bytes>, quick_ack={self.quick_ack})"


@dataclass(frozen=True, slots=True)
class QuickAck:
    """A quick-ack token from the server (client side only).

    ``token`` is the 32-bit value the client computed when it sent the payload: the first four bytes of
    msg_key_large read as a little-endian integer, with bit 31 set. The framing's byte order is undone.
    """

    token: int


@dataclass(frozen=True, slots=True)
class TransportError:
    """A transport error from the server (client side only): ``code`` is the negative int32 it sent.

    Known codes are in ``mtproto.errors.TransportErrorCode`` (-404, -429, -444); the spec also mentions -403,
    so the code is kept as a plain ``int``. The server closes the connection after sending one.
    """

    code: int
