"""MTProto over WebSocket, the client side (core.telegram.org/mtproto/transports#websocket).

What browsers and web clients use: the usual MTProto transport, obfuscated (required, since the server cannot
tell the framings apart by their first bytes the way it does on TCP), carried in binary WebSocket messages on
path ``/apiws`` with subprotocol ``binary``. The message boundaries mean nothing: the payloads, concatenated, are
the byte stream the transport codec reads, exactly as on TCP. The gateway's side is services/gateway/websocket.py.

``connect`` opens the TCP connection and runs the HTTP upgrade; the ``WebSocketStream`` it returns is an anyio
``ByteStream`` (``send``, ``receive``, ``aclose``), so ``Link`` runs on it unchanged. ``wsproto`` (sans-IO) does
the WebSocket part; this module only moves its bytes. Ping frames are answered; the server closing the WebSocket
ends the stream with ``ConnectionLost`` naming the close code and reason (1008: a gateway limit, 1002: a broken
MTProto stream, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Final

import anyio
from anyio.abc import ByteStream, SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Event, Ping, RejectConnection, Request
from wsproto.utilities import RemoteProtocolError

from mtlab.client.errors import ConnectionLost

PATH: Final = "/apiws"
SUBPROTOCOL: Final = "binary"
READ_SIZE: Final = 64 * 1024
CLOSE_TIMEOUT: Final = 1.0
"""Seconds ``aclose`` may spend sending the close frame."""


class WebSocketStream(ByteStream):
    """The binary messages of one open WebSocket as a byte stream."""

    def __init__(self, stream: SocketStream, ws: WSConnection) -> None:
        self._stream = stream
        self._ws = ws
        self._pending = bytearray()  # payload bytes received, not yet handed out
        self._closed: ConnectionLost | None = None  # set once the server closed the WebSocket
        self._send_lock = anyio.Lock()  # the writer task and pongs from the reader share the socket

    async def send(self, item: bytes) -> None:
        async with self._send_lock:
            if self._ws.state is not ConnectionState.OPEN:
                raise anyio.ClosedResourceError
            await self._stream.send(self._ws.send(BytesMessage(data=bytes(item))))

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        """Up to ``max_bytes`` payload bytes; raises ``ConnectionLost`` once the server closed the WebSocket and
        ``anyio.EndOfStream`` when the TCP connection ended without a close frame."""
        while not self._pending:
            if self._closed is not None:
                raise self._closed
            data = await self._stream.receive(READ_SIZE)  # EndOfStream when the connection ended
            try:
                self._ws.receive_data(data)
                await self._handle(self._ws.events())
            except RemoteProtocolError as exc:
                raise ConnectionLost(f"the gateway broke the WebSocket protocol: {exc}") from exc
        out = bytes(self._pending[:max_bytes])
        del self._pending[:max_bytes]
        return out

    async def _handle(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, BytesMessage):
                self._pending += event.data
            elif isinstance(event, Ping):
                async with self._send_lock:
                    await self._stream.send(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                reason = f"{event.code}{f' {event.reason}' if event.reason else ''}"
                self._closed = ConnectionLost(f"the gateway closed the WebSocket ({reason})")
                if self._ws.state is ConnectionState.REMOTE_CLOSING:  # it spoke first: answer, as the RFC asks
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        async with self._send_lock:
                            await self._stream.send(self._ws.send(event.response()))
            # a text message or a pong carries nothing for MTProto: ignored

    async def send_eof(self) -> None:
        """WebSocket has no half-close: start the closing handshake (the server may still send until it answers)."""
        async with self._send_lock:
            if self._ws.state is ConnectionState.OPEN:
                await self._stream.send(self._ws.send(CloseConnection(code=1000)))

    async def aclose(self) -> None:
        """Send the close frame (bounded in time, even while being cancelled), then close the socket."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT), \
                contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.send_eof()
        await self._stream.aclose()


async def connect(host: str, port: int) -> WebSocketStream:
    """A TCP connection to ``host:port`` upgraded to a WebSocket on ``/apiws``, subprotocol ``binary``.

    Raises ``OSError`` when the TCP connection cannot be made and ``ConnectionLost`` when the upgrade is refused
    or broken. No timeout of its own: the caller bounds it.
    """
    stream = await anyio.connect_tcp(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        await stream.send(ws.send(Request(host=f"{host}:{port}", target=PATH, subprotocols=[SUBPROTOCOL])))
        while True:
            try:
                data = await stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                raise ConnectionLost(f"{host}:{port} closed the connection during the WebSocket upgrade") from None
            ws.receive_data(data)
            events = ws.events()
            for event in events:
                if isinstance(event, RejectConnection):
                    raise ConnectionLost(f"{host}:{port} refused the WebSocket upgrade (HTTP {event.status_code})")
                if isinstance(event, AcceptConnection):
                    if event.subprotocol != SUBPROTOCOL:
                        raise ConnectionLost(f"{host}:{port} accepted the WebSocket without subprotocol binary")
                    opened = WebSocketStream(stream, ws)
                    await opened._handle(events)  # frames that came in the same read as the 101 answer
                    return opened
    except RemoteProtocolError as exc:
        await anyio.aclose_forcefully(stream)
        raise ConnectionLost(f"{host}:{port} does not speak WebSocket: {exc}") from exc
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
