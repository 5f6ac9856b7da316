"""The four MTProto TCP envelopes as codecs over a byte buffer.

core.telegram.org/mtproto/mtproto-transports, sections "Abridged", "Intermediate", "Padded intermediate",
"Full", and the "Quick ack" and "Transport errors" features. A codec knows one envelope and nothing else: no
socket, no obfuscation (``mtproto.transport.obfuscation`` wraps the byte stream underneath), no marker
detection (``mtproto.transport.connection`` does that). Each direction has its own rules, so decoding has two
methods:

- ``decode_from_client`` (server side): frames only; the high bit of the length asks for a quick ack.
- ``decode_from_server`` (client side): frames, quick-ack tokens and transport errors.

Decoders take a ``bytearray`` holding the undecoded (already de-obfuscated) stream, return ``None`` while the
next item is incomplete, and otherwise remove exactly that item from the front of the buffer (one ``del``). A
length header is judged as soon as it is complete, so an oversized, empty or misaligned length is refused with
``RemoteProtocolError`` (-404) before any of its payload has to be buffered.

Payloads are MTProto messages, whose length is always a multiple of 4; so is a transport error (one int32).
"""

from __future__ import annotations

import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Final

from mtproto.errors import LocalProtocolError, RemoteProtocolError
from mtproto.transport.events import Frame, QuickAck, TransportError, TransportKind

Randbytes = Callable[[int], bytes]
"""``randbytes(n)`` returns ``n`` random bytes; supplied by the caller (a CSPRNG in production)."""

BytesLike = bytes | bytearray | memoryview

_U32: Final = struct.Struct("<I")
_U32_BE: Final = struct.Struct(">I")
_I32: Final = struct.Struct("<i")
_LEN_SEQ: Final = struct.Struct("<II")

QUICK_ACK_BIT: Final = 0x8000_0000
_LEN_MASK: Final = 0x7FFF_FFFF
_ABRIDGED_LONG: Final = 0x7F  # "length/4 >= 127": a 0x7f byte, then length/4 in 3 bytes
_ABRIDGED_MAX: Final = 0xFF_FFFF * 4  # the most that 3 bytes of length/4 can say
_PADDED_MAX_PAD: Final = 15
_PADDED_QUICK_ACK_MARK: Final = b"\xff\xff\xff\xff"
_FULL_OVERHEAD: Final = 12  # length, seq and crc, all counted in the length field itself


def draw(randbytes: Randbytes, n: int) -> bytes:
    """``randbytes(n)``, checked: a short answer would silently corrupt the framing."""
    out = randbytes(n)
    if len(out) != n:
        raise LocalProtocolError(f"randbytes({n}) returned {len(out)} bytes")
    return out


def _take(buf: bytearray, start: int, stop: int, consumed: int) -> bytes:
    """Copy ``buf[start:stop]`` out once and drop the first ``consumed`` bytes of ``buf``.

    Slicing the bytearray directly would copy twice (a bytearray slice, then ``bytes``); the memoryview is
    released before the ``del``, which a bytearray with a live export would refuse. Deleting a prefix of a
    bytearray is cheap in CPython: it moves the start pointer instead of the bytes.
    """
    with memoryview(buf) as view:
        out = view[start:stop].tobytes()
    del buf[:consumed]
    return out


def _byte_len(payload: BytesLike) -> int:
    return payload.nbytes if isinstance(payload, memoryview) else len(payload)


def _check_token(token: int) -> None:
    # The token's bit 31 is what lets the client tell it from a length header: without it the answer would
    # desynchronise the client's decoder, so a token without it is the caller's bug.
    if not QUICK_ACK_BIT <= token <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"a quick-ack token is a uint32 with bit 31 set, got {token:#x}")


def _client_event(payload: bytes) -> Frame | TransportError:
    """Frame or transport error: what a whole payload from the server means ("Transport errors").

    An error is a payload of exactly one negative int32. No MTProto message is that short (an unencrypted one
    alone has a 20-byte header), so the two cannot be confused.
    """
    if len(payload) == 4:
        (code,) = _I32.unpack(payload)
        if code < 0:
            return TransportError(code)
    return Frame(payload)


class Codec(ABC):
    """One envelope, both directions. Instances hold per-connection state (the full framing's counters)."""

    kind: ClassVar[TransportKind]
    marker: ClassVar[bytes]
    """What a plain (not obfuscated) client sends once before its first frame."""
    tag: ClassVar[bytes | None]
    """The 4-byte protocol tag at offset 56 of an obfuscation init; ``None``: no obfuscated form."""
    max_payload: ClassVar[int]
    """The largest payload the envelope can express at all (``max_frame`` is the policy limit)."""
    supports_quick_ack: ClassVar[bool] = True

    __slots__ = ("_max_frame", "_randbytes")

    def __init__(self, *, max_frame: int, randbytes: Randbytes) -> None:
        self._max_frame = max_frame
        self._randbytes = randbytes

    @abstractmethod
    def encode(self, payload: BytesLike, *, quick_ack: bool = False) -> bytes:
        """Wrap one payload; ``quick_ack`` (client to server only) asks the server for a quick ack."""

    @abstractmethod
    def encode_quick_ack(self, token: int) -> bytes:
        """The server's answer to a quick-ack request, in this envelope's form."""

    @abstractmethod
    def decode_from_client(self, buf: bytearray) -> Frame | None:
        """Take the next frame a client sent off the front of ``buf``; ``None`` if it is incomplete."""

    @abstractmethod
    def decode_from_server(self, buf: bytearray) -> Frame | QuickAck | TransportError | None:
        """Take the next item a server sent off the front of ``buf``; ``None`` if it is incomplete."""

    def _check_send(self, payload: BytesLike, quick_ack: bool) -> int:
        n = _byte_len(payload)
        if n == 0 or n % 4 or n > self.max_payload:
            raise LocalProtocolError(
                f"{self.kind.value}: a payload is 4..{self.max_payload} bytes, a multiple of 4; got {n}"
            )
        if quick_ack and not self.supports_quick_ack:
            raise LocalProtocolError(f"the {self.kind.value} transport has no quick ack")
        return n

    def _check_length(self, n: int) -> None:
        # The message is for our logs: the peer only ever sees the -404 code, the same for every cause.
        if n <= 0 or n % 4 or n > self._max_frame:
            raise RemoteProtocolError(
                f"{self.kind.value}: bad frame length {n} (limit {self._max_frame}, multiple of 4)"
            )


class AbridgedCodec(Codec):
    """The "Abridged" envelope: length/4 in one byte (< 0x7f), else 0x7f and length/4 in 3 bytes, LE.

    Quick ack: the client sets bit 7 of the first header byte (0x80 | length/4, or 0xff before the 3 bytes).
    The server answers with the token byte-swapped (big-endian on the wire), four bytes with no header: its
    first byte then has bit 7 set, while a frame header from the server never does.
    """

    kind = TransportKind.ABRIDGED
    marker = b"\xef"
    tag = b"\xef\xef\xef\xef"  # the one-byte marker repeated to 4 bytes, as the spec says for the init
    max_payload = _ABRIDGED_MAX

    __slots__ = ()

    def encode(self, payload: BytesLike, *, quick_ack: bool = False) -> bytes:
        words = self._check_send(payload, quick_ack) >> 2
        flag = 0x80 if quick_ack else 0
        if words < _ABRIDGED_LONG:
            return b"".join((bytes((words | flag,)), payload))
        return b"".join((_U32.pack((words << 8) | _ABRIDGED_LONG | flag), payload))

    def encode_quick_ack(self, token: int) -> bytes:
        _check_token(token)
        return _U32_BE.pack(token)

    def _header(self, buf: bytearray, first: int) -> tuple[int, int] | None:
        """(header size, payload length) once the header is complete; ``first`` has its bit 7 cleared."""
        if first < _ABRIDGED_LONG:
            header, n = 1, first << 2
        elif len(buf) < 4:
            return None
        else:
            # A long header may legally encode a small length; accepting it costs nothing.
            header, n = 4, (_U32.unpack_from(buf)[0] >> 8) << 2
        self._check_length(n)
        return header, n

    def decode_from_client(self, buf: bytearray) -> Frame | None:
        if not buf:
            return None
        first = buf[0]
        head = self._header(buf, first & 0x7F)
        if head is None:
            return None
        header, n = head
        end = header + n
        if len(buf) < end:
            return None
        return Frame(_take(buf, header, end, end), first >= 0x80)

    def decode_from_server(self, buf: bytearray) -> Frame | QuickAck | TransportError | None:
        if not buf:
            return None
        first = buf[0]
        if first >= 0x80:
            if len(buf) < 4:
                return None
            (token,) = _U32_BE.unpack_from(buf)
            del buf[:4]
            return QuickAck(token)
        head = self._header(buf, first)
        if head is None:
            return None
        header, n = head
        end = header + n
        if len(buf) < end:
            return None
        return _client_event(_take(buf, header, end, end))


class IntermediateCodec(Codec):
    """The "Intermediate" envelope: a 4-byte little-endian length, then the payload.

    Quick ack: the client sets bit 31 of the length. The server answers with the token as a little-endian
    uint32 and no header; read as a length it is >= 0x80000000, which no frame can have.
    """

    kind = TransportKind.INTERMEDIATE
    marker = b"\xee\xee\xee\xee"
    tag = marker
    max_payload = _LEN_MASK & ~3

    __slots__ = ()

    def encode(self, payload: BytesLike, *, quick_ack: bool = False) -> bytes:
        n = self._check_send(payload, quick_ack)
        return b"".join((_U32.pack(n | QUICK_ACK_BIT if quick_ack else n), payload))

    def encode_quick_ack(self, token: int) -> bytes:
        _check_token(token)
        return _U32.pack(token)

    def decode_from_client(self, buf: bytearray) -> Frame | None:
        if len(buf) < 4:
            return None
        (raw,) = _U32.unpack_from(buf)
        n = raw & _LEN_MASK
        self._check_length(n)
        end = 4 + n
        if len(buf) < end:
            return None
        return Frame(_take(buf, 4, end, end), raw >= QUICK_ACK_BIT)

    def decode_from_server(self, buf: bytearray) -> Frame | QuickAck | TransportError | None:
        if len(buf) < 4:
            return None
        (raw,) = _U32.unpack_from(buf)
        if raw >= QUICK_ACK_BIT:
            del buf[:4]
            return QuickAck(raw)
        self._check_length(raw)
        end = 4 + raw
        if len(buf) < end:
            return None
        return _client_event(_take(buf, 4, end, end))


class PaddedIntermediateCodec(Codec):
    """The "Padded intermediate" envelope: total length (4 bytes LE), payload, 0..15 random bytes.

    The total length counts payload and padding.

    What the receiver hands up: the envelope does not say where the payload ends, and the spec leaves the
    padding for the MTProto layer to ignore. The codec strips what it can prove is padding: the ``len % 4``
    bytes that break the 4-byte alignment every payload has. Up to 12 more bytes (0, 4, 8 or 12) may remain,
    and nothing at this layer can tell them from payload: the MTProto layer drops them, an unencrypted message
    by its own message_data_length, an encrypted one by cutting encrypted_data down to a multiple of 16 bytes
    (unambiguous, as the leftover is under 16). So ``Frame.payload`` is the payload plus 0..12 trailing bytes.

    Quick ack: the client sets bit 31 of the total length. The server answers (as the spec's current text
    gives it) with an ordinary padded frame of 8..16 bytes: 0xffffffff, the token little-endian, then 0..8
    random bytes; no MTProto message is that short, and -1 is no transport error. A client also accepts the
    plain intermediate answer (the bare token, bit 31 set, where a length would be), which older servers and
    tdlib's reader use: such a "length" can never be a frame, so accepting it is free.
    """

    kind = TransportKind.PADDED_INTERMEDIATE
    marker = b"\xdd\xdd\xdd\xdd"
    tag = marker
    max_payload = (_LEN_MASK - _PADDED_MAX_PAD) & ~3

    __slots__ = ()

    def _pad(self, limit: int) -> bytes:
        # One random byte picks the padding length: uniform for limit 15 (a mask), near enough for 8.
        size = draw(self._randbytes, 1)[0] % (limit + 1)
        return draw(self._randbytes, size) if size else b""

    def encode(self, payload: BytesLike, *, quick_ack: bool = False) -> bytes:
        n = self._check_send(payload, quick_ack)
        padding = self._pad(_PADDED_MAX_PAD)
        total = n + len(padding)
        return b"".join((_U32.pack(total | QUICK_ACK_BIT if quick_ack else total), payload, padding))

    def encode_quick_ack(self, token: int) -> bytes:
        _check_token(token)
        body = b"".join((_PADDED_QUICK_ACK_MARK, _U32.pack(token), self._pad(8)))
        return b"".join((_U32.pack(len(body)), body))

    def _frame_end(self, total: int) -> None:
        # The bound allows a maximal payload with maximal padding; the lower bound keeps at least one
        # aligned word after stripping.
        if total < 4 or total > self._max_frame + _PADDED_MAX_PAD:
            raise RemoteProtocolError(f"padded_intermediate: bad length {total} (limit {self._max_frame})")

    def decode_from_client(self, buf: bytearray) -> Frame | None:
        if len(buf) < 4:
            return None
        (raw,) = _U32.unpack_from(buf)
        total = raw & _LEN_MASK
        self._frame_end(total)
        end = 4 + total
        if len(buf) < end:
            return None
        return Frame(_take(buf, 4, 4 + (total & ~3), end), raw >= QUICK_ACK_BIT)

    def decode_from_server(self, buf: bytearray) -> Frame | QuickAck | TransportError | None:
        if len(buf) < 4:
            return None
        (raw,) = _U32.unpack_from(buf)
        if raw >= QUICK_ACK_BIT:
            del buf[:4]
            return QuickAck(raw)
        self._frame_end(raw)
        end = 4 + raw
        if len(buf) < end:
            return None
        payload = _take(buf, 4, 4 + (raw & ~3), end)
        # A quick ack or an error plus at most 15 bytes of padding: 16 bytes once stripped, and no MTProto
        # message is that short.
        if len(payload) <= 16:
            (first,) = _I32.unpack_from(payload)
            if first == -1 and len(payload) >= 8:
                return QuickAck(_U32.unpack_from(payload, 4)[0])
            if first < 0:
                return TransportError(first)
        return Frame(payload)


class FullCodec(Codec):
    """The "Full" envelope: length (payload + 12) | seq | payload | CRC32 of all before it; little-endian.

    ``seq`` counts the frames of one direction from 0; a receiver checks it, and the CRC, and refuses the
    connection on a mismatch (-404). The spec gives this envelope no quick ack and no protocol tag, so it has
    no obfuscated form either: an obfuscated connection cannot name it.
    """

    kind = TransportKind.FULL
    marker = b""  # none: the server recognises the full framing by its first seq, 0, at bytes 4..8
    tag = None
    max_payload = (_LEN_MASK - _FULL_OVERHEAD) & ~3
    supports_quick_ack = False

    __slots__ = ("_recv_seq", "_send_seq")

    def __init__(self, *, max_frame: int, randbytes: Randbytes) -> None:
        super().__init__(max_frame=max_frame, randbytes=randbytes)
        self._send_seq = 0
        self._recv_seq = 0

    def encode(self, payload: BytesLike, *, quick_ack: bool = False) -> bytes:
        n = self._check_send(payload, quick_ack)
        head = _LEN_SEQ.pack(n + _FULL_OVERHEAD, self._send_seq)
        crc = zlib.crc32(payload, zlib.crc32(head))
        self._send_seq = (self._send_seq + 1) & 0xFFFF_FFFF
        return b"".join((head, payload, _U32.pack(crc)))

    def encode_quick_ack(self, token: int) -> bytes:
        raise LocalProtocolError("the full transport has no quick ack")

    def _decode(self, buf: bytearray) -> bytes | None:
        if len(buf) < 4:
            return None
        (total,) = _U32.unpack_from(buf)
        # Bit 31 is no flag here: such a length is simply too large.
        self._check_length(total - _FULL_OVERHEAD)
        if len(buf) < 8:
            return None
        (seq,) = _U32.unpack_from(buf, 4)
        if seq != self._recv_seq:
            # Checked before the payload arrives: a replayed or dropped frame shows here first.
            raise RemoteProtocolError(f"full: seq {seq}, expected {self._recv_seq}")
        if len(buf) < total:
            return None
        crc_at = total - 4
        with memoryview(buf) as view:
            crc = zlib.crc32(view[:crc_at])
            payload = view[8:crc_at].tobytes()
        if crc != _U32.unpack_from(buf, crc_at)[0]:
            raise RemoteProtocolError("full: CRC32 mismatch")
        del buf[:total]
        self._recv_seq = (self._recv_seq + 1) & 0xFFFF_FFFF
        return payload

    def decode_from_client(self, buf: bytearray) -> Frame | None:
        payload = self._decode(buf)
        return None if payload is None else Frame(payload)

    def decode_from_server(self, buf: bytearray) -> Frame | QuickAck | TransportError | None:
        payload = self._decode(buf)
        return None if payload is None else _client_event(payload)


CODECS: Final[dict[TransportKind, type[Codec]]] = {
    codec.kind: codec for codec in (AbridgedCodec, IntermediateCodec, PaddedIntermediateCodec, FullCodec)
}

CODEC_BY_TAG: Final[dict[bytes, type[Codec]]] = {codec.tag: codec for codec in CODECS.values() if codec.tag is not None}
"""Obfuscation protocol tag -> codec (abridged, intermediate, padded intermediate: the three with a tag)."""
