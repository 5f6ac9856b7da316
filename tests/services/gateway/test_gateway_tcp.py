"""The gateway process over real loopback TCP: every transport, hostile input, and every limit."""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any

import anyio
import pytest

from mtlab.selfcheck import PairClient, Transcript, run_client
from mtproto.crypto import rsa
from mtproto.tl import LAYER, api, mt
from mtproto.transport import TransportKind
from tests.helpers.gateway import GatewayProcess

COMBINATIONS = [(k, False) for k in TransportKind] + [(k, True) for k in TransportKind if k is not TransportKind.FULL]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def server_keys(gateway: GatewayProcess) -> dict[int, tuple[int, int]]:
    key = rsa.load_private_pem((gateway.data_dir / "gateway_rsa.pem").read_bytes())
    return {rsa.fingerprint(key.n, key.e): (key.n, key.e)}


def queries() -> list[Any]:
    init = api.functions.InitConnection(
        api_id=1, device_model="pytest", system_version="x", app_version="1", system_lang_code="en",
        lang_pack="", lang_code="en", query=api.functions.help.GetConfig(),
    )
    return [api.functions.InvokeWithLayer(layer=LAYER, query=init), mt.functions.Ping(ping_id=9),
            api.functions.updates.GetState()]


async def tcp_exchange(gateway: GatewayProcess, kind: TransportKind, obfuscated: bool) -> Transcript:
    client = PairClient(kind, obfuscated, server_keys(gateway), os.urandom)
    transcript = Transcript(kind, obfuscated)
    with anyio.fail_after(30):
        async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
            await run_client(client, stream, stream, queries(), time.time, transcript)  # type: ignore[arg-type]
    return transcript


EXPECTED = [
    "invokeWithLayer -> config(this_dc=2, dc_options=1)",
    "ping -> pong(ping_id=9)",
    "updates.getState -> rpc_error 401 AUTH_KEY_UNREGISTERED",
]


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "obfuscated"), COMBINATIONS, ids=lambda v: getattr(v, "value", str(v)))
async def test_every_transport_over_tcp(gateway: GatewayProcess, kind: TransportKind, obfuscated: bool) -> None:
    transcript = await tcp_exchange(gateway, kind, obfuscated)
    assert sorted(transcript.results) == EXPECTED


# -- hostile input: one connection closes with the right code, the others go on ----------------------------


def raw_connection(gateway: GatewayProcess, data: bytes, *, read_for: float = 5.0) -> bytes:
    """Send ``data`` and return everything the gateway writes until it closes (or ``read_for`` passes)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=read_for) as s:
        s.sendall(data)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except TimeoutError:
            return received + b"<still open>"
        return received


def intermediate_error(code: int) -> bytes:
    return struct.pack("<Ii", 4, code)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        # an auth key the gateway has never seen, over intermediate: -404
        ("unknown key", b"\xee" * 4 + struct.pack("<I", 40) + os.urandom(40), intermediate_error(-404)),
        # a length header above the frame limit: -404 before any payload is sent
        ("oversized frame", b"\xee" * 4 + struct.pack("<I", 64 * 1024 * 1024), intermediate_error(-404)),
        # a length that is not a multiple of 4
        ("misaligned frame", b"\xee" * 4 + struct.pack("<I", 7) + bytes(7), intermediate_error(-404)),
        # a handshake message that is no handshake message
        ("bad handshake", b"\xee" * 4 + struct.pack("<I", 24) + bytes(8) + struct.pack("<qi", 4, 4) + b"abcd",
         intermediate_error(-404)),
        # HTTP is not served: closed without a transport error (there is no framing to put it in)
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
        # an obfuscation init whose decrypted tag is no framing
        ("bad obfuscation tag", b"\x01" + os.urandom(63), b""),
    ],
)
def test_malformed_input_closes_only_that_connection(gateway: GatewayProcess, name: str, data: bytes,
                                                     expected: bytes) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as bystander:
        bystander.sendall(b"\xef")  # a client that has only sent its abridged marker so far
        received = raw_connection(gateway, data)
        if name == "bad obfuscation tag":
            assert received != b"<still open>" and len(received) <= 8  # closed (the error is encrypted, if any)
        else:
            assert received == expected
        # the other connection was not disturbed, and the gateway still serves new clients
        bystander.settimeout(0.2)
        with pytest.raises(TimeoutError):
            bystander.recv(1)
    assert sorted(anyio.run(tcp_exchange, gateway, TransportKind.ABRIDGED, False).results) == EXPECTED


def test_protocol_errors_are_counted(gateway: GatewayProcess) -> None:
    before = gateway.metric("mtlab_gateway_protocol_errors_total", code="-404")
    raw_connection(gateway, b"\xee" * 4 + struct.pack("<I", 64 * 1024 * 1024))
    assert gateway.metric("mtlab_gateway_protocol_errors_total", code="-404") == before + 1


# -- limits (each on its own gateway) ---------------------------------------------------------------------


def test_handshake_rate_per_ip(gateway_factory: Any) -> None:
    gw = gateway_factory.start(MTLAB_GATEWAY_HANDSHAKES_PER_IP="2")
    results = []
    for _ in range(4):
        try:
            results.append(len(anyio.run(tcp_exchange, gw, TransportKind.INTERMEDIATE, False).results))
        except Exception as exc:  # the refused handshake surfaces as a transport error at the client
            results.append(type(exc).__name__)
    assert results[:2] == [3, 3]
    assert "RemoteProtocolError" in results[2:]
    assert gw.metric("mtlab_gateway_handshakes_total", result="rate_limited") >= 1


def test_max_connections(gateway_factory: Any) -> None:
    gw = gateway_factory.start(MTLAB_GATEWAY_MAX_CONNECTIONS="2")
    a = socket.create_connection(("127.0.0.1", gw.port))
    b = socket.create_connection(("127.0.0.1", gw.port))
    try:
        time.sleep(0.3)
        frame = b"\xee" * 4 + struct.pack("<I", 4) + b"\0\0\0\0"
        assert raw_connection(gw, frame) == intermediate_error(-429)
        assert gw.metric("mtlab_gateway_refused_total", reason="max_connections") == 1
    finally:
        a.close()
        b.close()


def test_idle_timeout_closes_the_connection(gateway_factory: Any) -> None:
    gw = gateway_factory.start(MTLAB_GATEWAY_IDLE_TIMEOUT="0.5")
    assert raw_connection(gw, b"\xef", read_for=10) == b""  # closed by the gateway, well before 10 s
    assert gw.metric("mtlab_gateway_refused_total", reason="timeout") == 1


def test_graceful_shutdown(gateway_factory: Any) -> None:
    gw = gateway_factory.start()
    assert sorted(anyio.run(tcp_exchange, gw, TransportKind.FULL, False).results) == EXPECTED
    with socket.create_connection(("127.0.0.1", gw.metrics_port)) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.0 200 OK")
    idle = socket.create_connection(("127.0.0.1", gw.port))  # a client that keeps its connection open
    try:
        assert gw.stop() == 0  # SIGTERM: stops accepting, drains within the grace period, exits cleanly
        assert "shutting down" in gw.log.read_text()
    finally:
        idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1)


def test_keys_and_salt_secret_persist_with_owner_only_permissions(gateway: GatewayProcess) -> None:
    for name in ("gateway_rsa.pem", "salt_secret"):
        assert (gateway.data_dir / name).stat().st_mode & 0o077 == 0


@pytest.mark.anyio
async def test_ping_delay_disconnect_closes_a_quiet_connection(gateway: GatewayProcess) -> None:
    client = PairClient(TransportKind.INTERMEDIATE, False, server_keys(gateway), os.urandom)
    transcript = Transcript(TransportKind.INTERMEDIATE, False)
    async with await anyio.connect_tcp("127.0.0.1", gateway.port) as stream:
        queries = [mt.functions.PingDelayDisconnect(ping_id=3, disconnect_delay=1)]
        await run_client(client, stream, stream, queries, time.time, transcript)  # type: ignore[arg-type]
        assert transcript.results == ["ping_delay_disconnect -> pong(ping_id=3)"]
        with anyio.fail_after(10):  # the idle timeout is 300 s: only the requested delay can close it this soon
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    await stream.receive()
