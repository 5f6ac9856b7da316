"""One TCP connection's transport, server side and client side, as h11-style sans-IO objects.

core.telegram.org/mtproto/mtproto-transports: "The server recognizes these different protocols (and
distinguishes them from HTTP, too) by the header." ``ServerTransport`` does that recognition, then decodes
frames; ``ClientTransport`` is the other end (for tests, load generators and ``mtlab.client``). Neither
touches a socket, a clock or the system's random source:

    transport.receive_data(chunk)           # bytes read from the socket
    while (event := transport.next_event()) is not NEED_DATA:
        ...                                 # Frame, or on the client also QuickAck / TransportError
    socket.send(transport.send_frame(payload))

How the server recognises the framing from the client's first bytes, in this order:

====================================  ==============================================================
first bytes                           meaning
====================================  ==============================================================
``ef``                                abridged
``ee ee ee ee``                       intermediate
``dd dd dd dd``                       padded intermediate
``HEAD`` ``POST`` ``GET `` ``OPTI``   HTTP: refused, this server does not serve MTProto over HTTP
``16 03 01 02``                       TLS (MTProxy fake-TLS): refused
bytes 4..8 all zero                   full (the first frame's seq, 0); nothing is consumed
anything else                         a 64-byte obfuscation init; its decrypted tag names the framing
====================================  ==============================================================

Limits. ``max_frame`` bounds one payload (the gateway sets it); a length header beyond it, or zero, or not a
multiple of 4, is refused (-404) as soon as the header is complete. The undecoded buffer never holds more than
``max_frame + 64`` bytes (one frame with its envelope, or the obfuscation init): ``receive_capacity`` says how
many more bytes ``receive_data`` will take, and the caller reads at most that much from its socket. Draining
``next_event`` to ``NEED_DATA`` always leaves room for at least one byte, so this bound never deadlocks; it
turns a flood of pipelined frames into TCP back-pressure instead of memory.

Errors (``mtproto.errors``). A ``RemoteProtocolError`` carries the code to send before closing
(``transport_error``); a ``LocalProtocolError`` is a bug in the caller. Either one leaves the object failed:
every further call raises ``LocalProtocolError``, except ``ServerTransport.send_error``, which still frames
the error code so the gateway can send it and close. The table ``_ALLOWED`` below is the whole state machine.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping
from typing import Final

from mtproto.crypto.ctr import AesCtr
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode
from mtproto.transport import obfuscation
from mtproto.transport.events import NEED_DATA, Frame, NeedData, QuickAck, TransportError, TransportKind
from mtproto.transport.framing import (
    CODEC_BY_TAG,
    CODECS,
    BytesLike,
    Codec,
    IntermediateCodec,
    PaddedIntermediateCodec,
    Randbytes,
)

DEFAULT_MAX_FRAME: Final = (1 << 20) + (8 << 10)
"""1 MiB + 8 KiB: room for ``upload.file`` carrying a whole 1 MiB chunk, with its TL, message and encryption
overhead (under 2 KiB) and a container around it."""

MAX_FRAME_LIMIT: Final = 0xFF_FFFF * 4
"""The largest ``max_frame`` accepted: what the abridged 3-byte length can express (64 MiB - 4)."""

_MAX_OVERHEAD: Final = obfuscation.INIT_SIZE
"""Bytes beyond one payload that may have to wait in the buffer before an event comes out: the 64-byte init is
the largest (a frame's envelope is at most 4 + 15 padding, or 12 for the full framing)."""

_I32: Final = struct.Struct("<i")
_DECRYPT_PIECE: Final = 64 << 10

_Build = Callable[[Codec], bytes]
"""How ``ServerTransport._send`` is told what to encode once it has checked the state."""

_PLAIN_MARKERS: Final[Mapping[bytes, type[Codec]]] = {
    IntermediateCodec.marker: IntermediateCodec,
    PaddedIntermediateCodec.marker: PaddedIntermediateCodec,
}
_ABRIDGED_MARKER: Final = 0xEF
_ZERO_SEQ: Final = b"\x00\x00\x00\x00"


class _State(enum.Enum):
    DETECTING = "detecting"  # server only: the client's first bytes have not named a framing yet
    OPEN = "open"
    FAILED = "failed"  # an error was raised; only send_error is left (server side)
    CLOSED = "closed"  # send_error was called; nothing is left


class _Op(enum.Enum):
    RECEIVE = "receive"
    SEND = "send"
    SEND_ERROR = "send_error"


_ALLOWED: Final[Mapping[_Op, frozenset[_State]]] = {
    _Op.RECEIVE: frozenset({_State.DETECTING, _State.OPEN}),
    _Op.SEND: frozenset({_State.OPEN}),
    # Still allowed after a failure: answering a broken peer with its error code is the point of failing.
    _Op.SEND_ERROR: frozenset({_State.DETECTING, _State.OPEN, _State.FAILED}),
}
"""Which operations each state allows; every transition is into FAILED (any error) or CLOSED (send_error),
plus DETECTING -> OPEN when the server has recognised the framing."""


class _Transport:
    """What both ends share: the undecoded buffer, its bound, the ciphers and the state."""

    __slots__ = ("_buf", "_codec", "_decryptor", "_encryptor", "_limit", "_max_frame", "_randbytes", "_state")

    def __init__(self, *, max_frame: int, randbytes: Randbytes) -> None:
        if not 4 <= max_frame <= MAX_FRAME_LIMIT:
            raise LocalProtocolError(f"max_frame must be 4..{MAX_FRAME_LIMIT}, got {max_frame}")
        self._max_frame = max_frame
        self._limit = max_frame + _MAX_OVERHEAD
        self._randbytes = randbytes
        self._buf = bytearray()
        self._codec: Codec | None = None
        self._decryptor: AesCtr | None = None
        self._encryptor: AesCtr | None = None
        self._state = _State.OPEN

    @property
    def kind(self) -> TransportKind | None:
        """The framing, or ``None`` while the server has not recognised it yet."""
        return None if self._codec is None else self._codec.kind

    @property
    def obfuscated(self) -> bool:
        """True once the connection is known to be obfuscated (False while the server is still detecting)."""
        return self._decryptor is not None

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def receive_capacity(self) -> int:
        """How many bytes ``receive_data`` accepts now (0 once the connection has failed or closed)."""
        if self._state not in _ALLOWED[_Op.RECEIVE]:
            return 0
        return self._limit - len(self._buf)

    def receive_data(self, data: BytesLike) -> None:
        """Buffer bytes read from the socket (at most ``receive_capacity``); ``b""`` is a no-op.

        End of stream is the caller's business: a frame cut short by the peer's close is simply never handed
        up.
        """
        self._check(_Op.RECEIVE)
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > self._limit - len(self._buf):
            raise self._misuse(
                f"receive_data got {size} bytes with room for {self._limit - len(self._buf)}: "
                "read at most receive_capacity bytes, and drain next_event first"
            )
        if self._decryptor is None:
            self._buf += data
            return
        # CTR is a byte stream, so decrypting on arrival is exact however the bytes were split. Pieces of at
        # most 64 KiB keep each temporary ciphertext copy small enough for malloc to reuse; one fresh
        # megabyte per call (fresh pages from the kernel) made decoding five times slower.
        decrypt = self._decryptor.update
        with memoryview(data) as view:
            for start in range(0, size, _DECRYPT_PIECE):
                self._buf += decrypt(view[start : start + _DECRYPT_PIECE])

    def _check(self, op: _Op) -> None:
        if self._state not in _ALLOWED[op]:
            raise self._misuse(f"{op.value} is not allowed: the transport is {self._state.value}")

    def _misuse(self, message: str) -> LocalProtocolError:
        if self._state is not _State.CLOSED:
            self._state = _State.FAILED
        return LocalProtocolError(message)

    def _fail(self) -> None:
        if self._state is not _State.CLOSED:
            self._state = _State.FAILED

    def _encrypt(self, data: bytes) -> bytes:
        return data if self._encryptor is None else self._encryptor.update(data)


class ServerTransport(_Transport):
    """The server end of one connection: recognises the framing, then decodes frames.

    ``randbytes`` pads outgoing padded-intermediate frames; ``expected_dc``, if set, is the DC id an
    obfuscated client must name (compared by absolute value, since media DCs are negative; test DCs carry
    +10000, so a test server passes e.g. 10002). Leave it ``None`` unless the clients are known to write it
    (see ``mtproto.transport.obfuscation``). A mismatch is refused with -444.
    """

    __slots__ = ("_dc_id", "_expected_dc")

    def __init__(
        self,
        *,
        randbytes: Randbytes,
        max_frame: int = DEFAULT_MAX_FRAME,
        expected_dc: int | None = None,
    ) -> None:
        super().__init__(max_frame=max_frame, randbytes=randbytes)
        self._expected_dc = expected_dc
        self._dc_id: int | None = None
        self._state = _State.DETECTING

    @property
    def dc_id(self) -> int | None:
        """The DC id from the obfuscation init (int16, as sent); ``None`` for plain connections."""
        return self._dc_id

    def next_event(self) -> Frame | NeedData:
        """The next frame from the client, or ``NEED_DATA``."""
        self._check(_Op.RECEIVE)
        try:
            codec = self._codec
            if codec is None:
                codec = self._detect()
                if codec is None:
                    return NEED_DATA
            frame = codec.decode_from_client(self._buf)
        except (RemoteProtocolError, LocalProtocolError):
            self._fail()
            raise
        return NEED_DATA if frame is None else frame

    def send_frame(self, payload: BytesLike) -> bytes:
        """The bytes that carry one payload to the client."""
        return self._send(lambda codec: codec.encode(payload))

    def send_quick_ack(self, token: int) -> bytes:
        """The bytes that answer a frame that asked for a quick ack; ``token`` is a uint32 with bit 31 set."""
        return self._send(lambda codec: codec.encode_quick_ack(token))

    def send_error(self, code: TransportErrorCode) -> bytes:
        """The bytes that carry a transport error; afterwards the transport is closed.

        Works after a failure too: send ``exc.transport_error`` of the ``RemoteProtocolError``, then close.
        Returns ``b""`` when the client never named a framing (HTTP, TLS, an unknown obfuscation tag): there
        is no envelope to put the code in, so the gateway just closes.
        """
        self._check(_Op.SEND_ERROR)
        if not -0x8000_0000 <= code < 0:
            raise self._misuse(f"a transport error is a negative int32, got {code}")
        self._state = _State.CLOSED
        if self._codec is None:
            return b""
        return self._encrypt(self._codec.encode(_I32.pack(code)))

    def _send(self, build: _Build) -> bytes:
        self._check(_Op.SEND)
        codec = self._codec
        if codec is None:  # unreachable: OPEN implies a codec; kept so a broken invariant fails loudly
            raise self._misuse("no framing yet")
        try:
            data = build(codec)
        except LocalProtocolError:
            self._fail()
            raise
        return self._encrypt(data)

    def _detect(self) -> Codec | None:
        """Recognise the framing from the buffered first bytes; ``None`` while they cannot tell yet."""
        buf = self._buf
        if not buf:
            return None
        if buf[0] == _ABRIDGED_MARKER:
            return self._open(CODECS[TransportKind.ABRIDGED], consumed=1)
        if len(buf) < 4:
            return None
        start = bytes(buf[:4])
        plain = _PLAIN_MARKERS.get(start)
        if plain is not None:
            return self._open(plain, consumed=4)
        if start in obfuscation.HTTP_STARTS:
            raise RemoteProtocolError("the client speaks HTTP: MTProto over HTTP is not served", None)
        if start == obfuscation.TLS_START:
            raise RemoteProtocolError("the client opens TLS (MTProxy fake-TLS): not served", None)
        if len(buf) < 8:
            return None
        if buf[4:8] == _ZERO_SEQ:
            # The full framing has no marker: its first frame is consumed as a frame, seq 0 included.
            return self._open(CODECS[TransportKind.FULL], consumed=0)
        if len(buf) < obfuscation.INIT_SIZE:
            return None
        tag, dc_id, decryptor, encryptor = obfuscation.server_init(bytes(buf[: obfuscation.INIT_SIZE]))
        del buf[: obfuscation.INIT_SIZE]
        codec_type = CODEC_BY_TAG.get(tag)
        if codec_type is None:
            raise RemoteProtocolError(f"unknown obfuscation protocol tag {tag.hex()}")
        self._decryptor, self._encryptor = decryptor, encryptor
        self._dc_id = dc_id
        # Whatever followed the init in the same read is still ciphertext: it continues the stream.
        buf[:] = decryptor.update(buf)
        codec = self._open(codec_type, consumed=0)
        if self._expected_dc is not None and abs(dc_id) != self._expected_dc:
            # Raised after the framing is set up, so send_error can still frame the -444.
            raise RemoteProtocolError(
                f"the client asks for DC {dc_id}, this is DC {self._expected_dc}",
                TransportErrorCode.INVALID_DC,
            )
        return codec

    def _open(self, codec_type: type[Codec], *, consumed: int) -> Codec:
        del self._buf[:consumed]
        codec = codec_type(max_frame=self._max_frame, randbytes=self._randbytes)
        self._codec = codec
        self._state = _State.OPEN
        return codec


class ClientTransport(_Transport):
    """The client end of one connection.

    The preamble (the framing's marker, or the 64-byte obfuscation init) is not a separate call: the first
    ``send_frame`` returns it in front of the first frame, so it cannot be forgotten or sent twice. The
    obfuscation init is drawn from ``randbytes`` here, in the constructor, and ``dc_id`` is written into it
    (it is unused without obfuscation). The full framing has no obfuscated form.
    """

    __slots__ = ("_dc_id", "_preamble")

    def __init__(
        self,
        kind: TransportKind,
        *,
        obfuscated: bool,
        randbytes: Randbytes,
        dc_id: int = 2,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__(max_frame=max_frame, randbytes=randbytes)
        codec_type = CODECS[kind]
        self._codec = codec_type(max_frame=max_frame, randbytes=randbytes)
        self._dc_id: int | None = None
        if obfuscated:
            if codec_type.tag is None:
                raise LocalProtocolError(f"the {kind.value} transport has no obfuscated form (no tag)")
            self._preamble, self._encryptor, self._decryptor = obfuscation.client_init(codec_type.tag, dc_id, randbytes)
            self._dc_id = dc_id
        else:
            self._preamble = codec_type.marker

    @property
    def dc_id(self) -> int | None:
        """The DC id written into the obfuscation init; ``None`` for plain connections."""
        return self._dc_id

    def send_frame(self, payload: BytesLike, *, quick_ack: bool = False) -> bytes:
        """The bytes that carry one payload to the server (the first call's start with the preamble).

        ``quick_ack`` asks the server to acknowledge receipt (not on the full framing).
        """
        self._check(_Op.SEND)
        codec = self._codec
        if codec is None:  # unreachable: the client's codec is set in the constructor
            raise self._misuse("no framing")
        try:
            data = self._encrypt(codec.encode(payload, quick_ack=quick_ack))
        except LocalProtocolError:
            self._fail()
            raise
        if self._preamble:
            data = self._preamble + data
            self._preamble = b""
        return data

    def next_event(self) -> Frame | QuickAck | TransportError | NeedData:
        """The next item from the server, or ``NEED_DATA``."""
        self._check(_Op.RECEIVE)
        codec = self._codec
        if codec is None:  # unreachable, as above
            raise self._misuse("no framing")
        try:
            event = codec.decode_from_server(self._buf)
        except (RemoteProtocolError, LocalProtocolError):
            self._fail()
            raise
        return NEED_DATA if event is None else event
