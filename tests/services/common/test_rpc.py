"""Internal RPC over real loopback TCP, on trio and on asyncio."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from mtproto.tl import api, mt
from mtproto.tl.internal.functions import lab
from mtproto.tl.internal.types import rpc as rpc_types
from mtproto.tl.runtime import Reader
from services.common.rpc import RpcClient, RpcError, RpcServer, ServiceUnavailable, context

PING = mt.functions.Ping.CONSTRUCTOR_ID
GET_CONFIG = api.functions.help.GetConfig.CONSTRUCTOR_ID
LAB_PING = lab.Ping.CONSTRUCTOR_ID
ECHO = mt.functions.GetFutureSalts.CONSTRUCTOR_ID  # any id: the toy echoes the bytes of the query


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Service:
    """A toy service: echoes pings (after an optional delay), fails on help.getConfig, streams lab.ping."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.running = 0
        self.peak = 0
        self.delay = 0.0

    async def ping(self, ctx: Any, query: bytes) -> bytes:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await anyio.sleep(self.delay)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        ping = mt.functions.Ping.from_bytes(query)
        return mt.types.Pong(msg_id=ctx.user_id or 0, ping_id=ping.ping_id).to_bytes()

    async def echo(self, ctx: Any, query: bytes) -> bytes:
        return query

    async def fail(self, ctx: Any, query: bytes) -> bytes:
        raise RpcError(420, "FLOOD_WAIT_3")

    async def count(self, ctx: Any, query: bytes) -> AsyncIterator[bytes]:
        for i in range(lab.Ping.from_bytes(query).ping_id):
            yield i.to_bytes(4, "little")

    def server(self, **kw: Any) -> RpcServer:
        return RpcServer("toy", {PING: self.ping, GET_CONFIG: self.fail, ECHO: self.echo}, {LAB_PING: self.count},
                         **kw)


def ping(n: int) -> bytes:
    return mt.functions.Ping(ping_id=n).to_bytes()


@pytest.mark.anyio
async def test_concurrent_calls_on_one_connection_errors_and_unknown_methods() -> None:
    svc = Service()
    svc.delay = 0.01
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server().serve, "127.0.0.1", 0)
        async with RpcClient("toy", "127.0.0.1", port) as client:
            with anyio.fail_after(10):
                await client.wait_connected()
                results: dict[int, int] = {}

                async def one(i: int) -> None:
                    answer = mt.types.Pong.from_bytes(await client.call(ping(i), context(user_id=i)))
                    results[i] = answer.ping_id

                async with anyio.create_task_group() as calls:
                    for i in range(100):
                        calls.start_soon(one, i)
                assert results == {i: i for i in range(100)}
                assert svc.peak > 1  # they really ran concurrently, on one connection
                with pytest.raises(RpcError) as info:
                    await client.call(api.functions.help.GetConfig().to_bytes(), context())
                assert (info.value.code, info.value.message) == (420, "FLOOD_WAIT_3")
                with pytest.raises(RpcError) as info:
                    await client.call(api.functions.updates.GetState().to_bytes(), context())
                assert info.value.code == 400 and info.value.message.startswith("INPUT_METHOD_INVALID")
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_server_push_stream() -> None:
    svc = Service()
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server().serve, "127.0.0.1", 0)
        async with RpcClient("toy", "127.0.0.1", port) as client:
            with anyio.fail_after(10):
                await client.wait_connected()
                items = [int.from_bytes(x, "little") async for x in client.stream(lab.Ping(ping_id=50).to_bytes(),
                                                                                    context())]
                assert items == list(range(50))
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_caller_that_gives_up_cancels_the_handler() -> None:
    svc = Service()
    svc.delay = 30
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server().serve, "127.0.0.1", 0)
        async with RpcClient("toy", "127.0.0.1", port) as client:
            with anyio.fail_after(10):
                await client.wait_connected()
                with anyio.move_on_after(0.2):
                    await client.call(ping(1), context())
                while svc.cancelled == 0:
                    await anyio.sleep(0.01)
                svc.delay = 0
                assert mt.types.Pong.from_bytes(await client.call(ping(2), context())).ping_id == 2
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_in_flight_calls_are_bounded() -> None:
    svc = Service()
    svc.delay = 0.05
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server().serve, "127.0.0.1", 0)
        async with RpcClient("toy", "127.0.0.1", port, max_in_flight=3) as client:
            with anyio.fail_after(10):
                await client.wait_connected()
                async with anyio.create_task_group() as calls:
                    for i in range(12):
                        calls.start_soon(client.call, ping(i), context())
                assert svc.peak == 3
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_service_restart_fails_calls_cleanly_then_recovers() -> None:
    svc = Service()
    async with anyio.create_task_group() as tg:
        server_scope = anyio.CancelScope()

        async def run_server(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            with server_scope:
                await svc.server().serve("127.0.0.1", port_holder[0], task_status=task_status)

        port_holder = [0]
        port_holder[0] = await tg.start(run_server)
        async with RpcClient("toy", "127.0.0.1", port_holder[0]) as client:
            with anyio.fail_after(20):
                await client.wait_connected()
                svc.delay = 30
                async with anyio.create_task_group() as calls:

                    async def in_flight() -> None:
                        with pytest.raises(ServiceUnavailable):
                            await client.call(ping(1), context())

                    calls.start_soon(in_flight)
                    while svc.running == 0:
                        await anyio.sleep(0.01)
                    server_scope.cancel()  # the service goes away with a call in flight
                while client.connected.is_set():
                    await anyio.sleep(0.01)
                with pytest.raises(ServiceUnavailable):  # fails at once while the service is away
                    await client.call(ping(2), context())
                svc.delay = 0
                server_scope = anyio.CancelScope()
                await tg.start(run_server)  # back on the same port
                await client.wait_connected()
                assert mt.types.Pong.from_bytes(await client.call(ping(3), context())).ping_id == 3
                assert client.connects == 2
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_an_oversized_frame_closes_only_that_connection() -> None:
    svc = Service()
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server(max_frame=1024).serve, "127.0.0.1", 0)
        async with await anyio.connect_tcp("127.0.0.1", port) as raw:
            await raw.send((10**6).to_bytes(4, "little"))
            with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await raw.receive()
        async with RpcClient("toy", "127.0.0.1", port) as client:
            with anyio.fail_after(10):
                await client.wait_connected()
                assert mt.types.Pong.from_bytes(await client.call(ping(7), context())).ping_id == 7
        tg.cancel_scope.cancel()


def echo(payload: bytes) -> bytes:
    return ECHO.to_bytes(4, "little") + payload


@pytest.mark.anyio
async def test_frames_of_every_size_arrive_whole_both_ways() -> None:
    """Frames around the sizes where the reader and writer change strategy (one read or several, one write or
    two), and several megabytes, concurrently on one connection."""
    sizes = [0, 1, 4093, 64 * 1024 - 9, 64 * 1024 - 8, 64 * 1024, 64 * 1024 + 1, 1024 * 1024 + 3, 3 * 1024 * 1024 + 7]
    payloads = [os.urandom(n) for n in sizes]
    svc = Service()
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server().serve, "127.0.0.1", 0)
        async with RpcClient("toy", "127.0.0.1", port) as client:
            with anyio.fail_after(20):
                await client.wait_connected()
                got: dict[int, bytes] = {}

                async def one(i: int) -> None:
                    got[i] = await client.call(echo(payloads[i]), context())

                async with anyio.create_task_group() as calls:
                    for i in range(len(sizes)):
                        calls.start_soon(one, i)
                assert got == {i: echo(p) for i, p in enumerate(payloads)}
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_requests_split_at_every_byte_are_read_right() -> None:
    """Three requests sent as one byte string cut in pieces of 1 to 3 bytes, then a big one in uneven pieces:
    the server finds each frame whole whatever the reads return."""
    svc = Service()
    small = [rpc_types.Request(req_id=i, context=context(), query=ping(i)).to_bytes() for i in range(3)]
    big_payload = os.urandom(300 * 1024 + 5)
    big = rpc_types.Request(req_id=9, context=context(), query=echo(big_payload)).to_bytes()
    wire = b"".join(len(f).to_bytes(4, "little") + f for f in small)
    async with anyio.create_task_group() as tg:
        port = await tg.start(svc.server().serve, "127.0.0.1", 0)
        async with await anyio.connect_tcp("127.0.0.1", port) as raw:
            with anyio.fail_after(20):
                cut = 0
                while cut < len(wire):
                    step = 1 + cut % 3
                    await raw.send(wire[cut:cut + step])
                    await anyio.sleep(0.001)  # separate TCP segments, so separate reads
                    cut += step
                framed = len(big).to_bytes(4, "little") + big
                for start in range(0, len(framed), 70_001):
                    await raw.send(framed[start:start + 70_001])
                    await anyio.sleep(0.001)
                answers: dict[int, bytes] = {}
                buffer = b""
                while len(answers) < 4:
                    buffer += await raw.receive()
                    while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "little"):
                        n = int.from_bytes(buffer[:4], "little")
                        frame = Reader(buffer[4:4 + n]).read_object()
                        buffer = buffer[4 + n:]
                        assert isinstance(frame, rpc_types.Result)
                        answers[frame.req_id] = frame.result
                assert {i: mt.types.Pong.from_bytes(answers[i]).ping_id for i in range(3)} == {0: 0, 1: 1, 2: 2}
                assert answers[9] == echo(big_payload)
        tg.cancel_scope.cancel()
