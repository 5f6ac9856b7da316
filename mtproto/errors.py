"""The two error families at mtproto's boundary (the h11 split).

- ``LocalProtocolError``: our own side misused the API (sent an event in the wrong state, passed a value that
  does not fit its TL type). It is a bug in the caller.
- ``RemoteProtocolError``: the peer misbehaved (malformed bytes, a failed check, a broken limit). It carries the
  transport error code, if any, that the connection should be closed with (MTProto "Transport errors":
  -404, -429, -444).

Either one puts the connection that raised it into a terminal state. Any other exception escaping mtproto is a
bug in mtproto.
"""

from __future__ import annotations

from enum import IntEnum


class TransportErrorCode(IntEnum):
    """The negative int32 payloads a server sends before closing (core.telegram.org/mtproto/mtproto-transports)."""

    NOT_FOUND = -404  # unknown auth key, failed handshake check, malformed frame
    FLOOD = -429  # too many connections or handshakes
    INVALID_DC = -444  # the DC id from the obfuscation header is not ours


class ProtocolError(Exception):
    """Base class of everything mtproto raises on purpose."""


class LocalProtocolError(ProtocolError):
    """Our side misused the API: a bug in the caller, never caused by peer input."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids; the connection must be closed.

    ``transport_error`` is the code to send before closing, or ``None`` to close silently. Its message is for
    logs only: what goes on the wire is the code alone, identical for every cause (the security guidelines ask
    that failures be indistinguishable to the peer).
    """

    def __init__(self, message: str, transport_error: TransportErrorCode | None = TransportErrorCode.NOT_FOUND):
        super().__init__(message)
        self.transport_error = transport_error
