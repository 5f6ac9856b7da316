"""The HTTP endpoint every service exposes: ``/metrics`` (Prometheus) and ``/healthz``.

A deliberately tiny HTTP/1.0 server on anyio, so the same code serves the trio gateway and the asyncio
services: one request per connection, GET only, bounded request size, a timeout per client.

``healthy`` is a plain function (the gateway: is it accepting?) or an async one (a service asks its Postgres and
Redis right then); an async check that takes longer than ``HEALTH_TIMEOUT`` counts as unhealthy, so a hung
dependency shows as a 503, not as a probe that hangs too.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import SocketStream
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

MAX_REQUEST = 8192
HEALTH_TIMEOUT = 3.0

HealthCheck = Callable[[], bool | Awaitable[bool]]


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _check(healthy: HealthCheck) -> bool:
    outcome = healthy()
    if not inspect.isawaitable(outcome):
        return outcome
    ok = False
    with anyio.move_on_after(HEALTH_TIMEOUT):
        ok = await outcome
    return ok


async def _serve_one(stream: SocketStream, healthy: HealthCheck) -> None:
    async with stream:
        request = b""
        with anyio.move_on_after(5):
            while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
                try:
                    chunk = await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                request += chunk
        line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = line[1] if len(line) >= 2 and line[0] == "GET" else ""
        if path.startswith("/metrics"):
            reply = _response("200 OK", generate_latest(), CONTENT_TYPE_LATEST)
        elif path.startswith("/healthz"):
            ok = await _check(healthy)
            reply = _response("200 OK" if ok else "503 Service Unavailable", b"ok\n" if ok else b"unhealthy\n",
                              "text/plain")
        else:
            reply = _response("404 Not Found", b"try /metrics or /healthz\n", "text/plain")
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(reply)


async def serve_http(host: str, port: int, healthy: HealthCheck = lambda: True) -> None:
    """Serve /metrics and /healthz until cancelled."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)

    async def handler(stream: SocketStream) -> None:
        await _serve_one(stream, healthy)

    await listener.serve(handler)
