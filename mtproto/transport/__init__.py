"""MTProto's TCP transports as sans-IO codecs (core.telegram.org/mtproto/mtproto-transports).

Bytes in, events out, bytes out: the four framings (abridged, intermediate, padded intermediate, full), quick
acks, transport errors and obfuscation, with the server's recognition of the framing from the client's first
bytes. No socket, clock or system randomness: random bytes come in through a ``randbytes`` parameter.

- ``events``: ``Frame``, ``QuickAck``, ``TransportError``, ``NEED_DATA``, ``TransportKind``.
- ``framing``: one codec per envelope.
- ``obfuscation``: the 64-byte init and its two AES-256-CTR streams.
- ``connection``: ``ServerTransport`` and ``ClientTransport``, the objects the gateway and clients use.
"""

from mtproto.transport.connection import DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, ClientTransport, ServerTransport
from mtproto.transport.events import NEED_DATA, Frame, NeedData, QuickAck, TransportError, TransportKind
from mtproto.transport.framing import Randbytes

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAX_FRAME_LIMIT",
    "NEED_DATA",
    "ClientTransport",
    "Frame",
    "NeedData",
    "QuickAck",
    "Randbytes",
    "ServerTransport",
    "TransportError",
    "TransportKind",
]
