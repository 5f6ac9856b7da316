"""MTProto over WebSocket (core.telegram.org/mtproto/transports#websocket): the gateway's second listener.

The TCP transport carried in binary WebSocket messages, subprotocol ``binary``; the client must use obfuscation.
``wsproto`` (sans-IO) does the WebSocket part, so this module only moves bytes: ``accept`` runs the HTTP upgrade
(bounded in size and time), then ``WebSocketStream`` offers the same three calls as a trio ``SocketStream``
(``receive_some``, ``send_all``, ``aclose``). The payloads of binary messages, concatenated, are the byte stream
the ``ServerTransport`` already parses, so ``server.Connection`` runs unchanged on either.

Close codes: 1000 when the client or a timeout ends the connection, 1002 (protocol error) for a broken MTProto
stream or one that is not obfuscated, 1003 for a text message, 1008 for a gateway limit, 1009 for a message
above ``max_frame`` (+ the 64-byte obfuscation init).
"""

from __future__ import annotations

import contextlib
from typing import Final

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

SUBPROTOCOL: Final = "binary"
MAX_REQUEST: Final = 16 * 1024
"""Bytes the upgrade request may take (h11 refuses a larger head anyway)."""
HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds from the TCP accept to a complete upgrade request."""
CLOSE_TIMEOUT: Final = 1.0
"""Seconds ``aclose`` may spend writing the close frame."""

NORMAL: Final = 1000
PROTOCOL_ERROR: Final = 1002
UNSUPPORTED_DATA: Final = 1003
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009

_CAN_CLOSE: Final = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)


class WebSocketStream:
    """The binary messages of one accepted WebSocket as a byte stream (what ``server.ByteStream`` asks for)."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection, *, max_message: int) -> None:
        self._stream = stream
        self._ws = ws
        self._max_message = max_message
        self._pending = bytearray()  # payload bytes received but not yet handed out
        self._message_size = 0  # bytes of the binary message under way
        self._eof = False
        self._send_lock = trio.Lock()  # the writer task and pongs/close from the reader share the socket
        self.close_code = NORMAL
        self.close_reason = ""

    def refuse(self, reason: str, *, protocol_error: bool) -> None:
        """The connection closes for ``reason``: say so in the close frame."""
        self.close_code = PROTOCOL_ERROR if protocol_error else POLICY_VIOLATION
        self.close_reason = reason[:100]  # a control frame's payload is at most 125 bytes

    async def _write(self, event: BytesMessage | CloseConnection) -> None:
        async with self._send_lock:
            allowed = (ConnectionState.OPEN,) if isinstance(event, BytesMessage) else _CAN_CLOSE
            if self._ws.state not in allowed:
                raise trio.ClosedResourceError("the WebSocket is closing")
            await self._stream.send_all(self._ws.send(event))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._write(BytesMessage(data=bytes(data)))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` payload bytes; ``b""`` once the client closed (or broke the WebSocket rules)."""
        while not self._pending and not self._eof:
            data = await self._stream.receive_some(max(max_bytes or 0, 16 * 1024))
            if not data:
                self._eof = True
                break
            try:
                self._ws.receive_data(data)
                await self._handle_events()
            except RemoteProtocolError:
                self.close_code, self.close_reason = PROTOCOL_ERROR, "bad WebSocket frame"
                self._eof = True
        size = len(self._pending) if max_bytes is None else min(max_bytes, len(self._pending))
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out

    async def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                self._message_size += len(event.data)
                if self._message_size > self._max_message:
                    self.close_code, self.close_reason = MESSAGE_TOO_BIG, "message above max_frame"
                    self._eof = True
                    return
                self._pending += event.data
                if event.message_finished:
                    self._message_size = 0
            elif isinstance(event, TextMessage):
                self.close_code, self.close_reason = UNSUPPORTED_DATA, "MTProto travels in binary messages"
                self._eof = True
                return
            elif isinstance(event, Ping):
                async with self._send_lock:
                    await self._stream.send_all(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._eof = True  # aclose answers with the close frame
                self.close_code, self.close_reason = NORMAL, ""
                return

    async def aclose(self) -> None:
        """Send the close frame (bounded in time, even while being cancelled), then close the socket."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + CLOSE_TIMEOUT
            try:
                if self._ws.state in _CAN_CLOSE:
                    await self._write(CloseConnection(code=self.close_code, reason=self.close_reason))
            except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError):
                pass
        await trio.aclose_forcefully(self._stream)


async def accept(stream: trio.SocketStream, *, max_message: int) -> WebSocketStream | None:
    """Run the upgrade: a ``WebSocketStream``, or ``None`` once a bad request got its 4xx (or timed out)."""
    ws = WSConnection(ConnectionType.SERVER)
    received = 0
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        try:
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    return None
                received += len(data)
                if received > MAX_REQUEST:
                    await stream.send_all(ws.send(RejectConnection(status_code=431)))
                    return None
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        chosen = SUBPROTOCOL if SUBPROTOCOL in event.subprotocols else None
                        await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
                        return WebSocketStream(stream, ws, max_message=max_message)
        except RemoteProtocolError as exc:  # not a WebSocket upgrade (plain HTTP, a bad header, ...)
            hint = exc.event_hint if isinstance(exc.event_hint, RejectConnection) else RejectConnection()
            with contextlib.suppress(RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(ws.send(hint))
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
    return None
