"""The gateway process over WebSocket: MTProto in binary messages, obfuscation required, bad upgrades refused."""

from __future__ import annotations

import os
import socket
import time

import anyio
import pytest
from anyio.abc import SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request

from mtlab.selfcheck import PairClient, Transcript, run_client
from mtproto.transport import ClientTransport, TransportKind
from tests.helpers.gateway import GatewayProcess
from tests.services.gateway.test_gateway_tcp import EXPECTED, queries, server_keys

OBFUSCATED = [TransportKind.ABRIDGED, TransportKind.INTERMEDIATE, TransportKind.PADDED_INTERMEDIATE]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class WsClient:
    """A WebSocket client (wsproto over an anyio TCP stream) that looks like run_client's outbox and inbox."""

    def __init__(self, stream: SocketStream, ws: WSConnection) -> None:
        self.stream, self.ws = stream, ws
        self.closed_with: CloseConnection | None = None
        self._message = bytearray()

    @classmethod
    async def connect(cls, port: int) -> WsClient:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send(ws.send(Request(host="127.0.0.1", target="/apiws", subprotocols=["binary"])))
        while True:
            ws.receive_data(await stream.receive())
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    assert event.subprotocol == "binary"
                    return cls(stream, ws)
                if isinstance(event, RejectConnection):
                    raise AssertionError(f"upgrade refused: {event.status_code}")

    async def send(self, data: bytes) -> None:
        await self.stream.send(self.ws.send(BytesMessage(data=data)))

    async def receive(self) -> bytes:
        """The next whole binary message; EndOfStream once the gateway closed the WebSocket."""
        while True:
            if self.closed_with is not None:
                raise anyio.EndOfStream
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    self._message += event.data
                    if event.message_finished:
                        out = bytes(self._message)
                        self._message.clear()
                        return out
                elif isinstance(event, Ping):
                    await self.stream.send(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.closed_with = event
            if not data and self.closed_with is None:
                raise anyio.EndOfStream


async def ws_exchange(gateway: GatewayProcess, kind: TransportKind) -> Transcript:
    client = PairClient(kind, True, server_keys(gateway), os.urandom)
    transcript = Transcript(kind, True)
    with anyio.fail_after(30):
        ws = await WsClient.connect(gateway.ws_port)
        async with ws.stream:
            await run_client(client, ws, ws, queries(), time.time, transcript)  # type: ignore[arg-type]
    return transcript


@pytest.mark.anyio
@pytest.mark.parametrize("kind", OBFUSCATED, ids=lambda k: k.value)
async def test_every_obfuscated_transport_over_websocket(gateway: GatewayProcess, kind: TransportKind) -> None:
    label = f"{kind.value}+obfuscated+ws"
    before = gateway.metric("mtlab_gateway_connections_total", transport=label)
    transcript = await ws_exchange(gateway, kind)
    assert sorted(transcript.results) == EXPECTED
    assert gateway.metric("mtlab_gateway_connections_total", transport=label) == before + 1


@pytest.mark.anyio
async def test_a_plain_stream_over_websocket_is_refused(gateway: GatewayProcess) -> None:
    with anyio.fail_after(30):
        ws = await WsClient.connect(gateway.ws_port)
        async with ws.stream:
            plain = ClientTransport(TransportKind.INTERMEDIATE, obfuscated=False, randbytes=os.urandom)
            await ws.send(plain.send_frame(bytes(40)))
            with pytest.raises(anyio.EndOfStream):
                while True:
                    await ws.receive()  # nothing but the close: no MTProto answer to a plain stream
            assert ws.closed_with is not None and ws.closed_with.code == 1002
    assert gateway.metric("mtlab_gateway_refused_total", reason="not_obfuscated") >= 1
    # the gateway goes on serving
    assert sorted((await ws_exchange(gateway, TransportKind.INTERMEDIATE)).results) == EXPECTED


def test_http_that_is_no_upgrade_gets_a_4xx_and_close(gateway: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway.ws_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := s.recv(65536):  # the gateway closes: recv returns b"" (a timeout would fail the test)
            received += chunk
    status = received.split(b"\r\n", 1)[0].split(b" ")
    assert status[0] == b"HTTP/1.1" and 400 <= int(status[1]) < 500
    assert anyio.run(ws_exchange, gateway, TransportKind.ABRIDGED).results


def test_an_oversized_upgrade_request_is_refused(gateway: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway.ws_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 40_000 + b"\r\n\r\n")
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:  # closed with request bytes still unread
            pass
    assert received.startswith(b"HTTP/1.1 4")
