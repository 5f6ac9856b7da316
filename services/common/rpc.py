"""Internal RPC: TL frames over TCP between the gateway and the services, on anyio (trio and asyncio alike).

Wire format: each frame is a 4-byte little-endian length and one boxed ``rpc.*`` object of
``mtproto/tl/schema/internal.tl``:

    client -> server   rpc.request(req_id, context, query)    rpc.cancel(req_id)
    server -> client   rpc.result(req_id, result)             rpc.error(req_id, code, message)
                       rpc.streamItem(req_id, item)  ...then rpc.result or rpc.error ends the stream

``query`` and ``result`` are serialized TL objects the RPC layer never decodes: the gateway forwards a
client's query as it came, and the service's answer goes back the same way. ``context`` says who asks (user,
auth key, session, layer, trace id, and what the client said in initConnection with its address).

- Many calls share one connection, matched by ``req_id``; the client bounds how many are in flight and the
  server how many handlers run per connection (beyond that it stops reading: back-pressure, not memory).
- A caller that gives up (cancelled, timed out) sends ``rpc.cancel`` and the server cancels the handler.
- Server push: a stream handler is an async iterator; its items arrive as ``rpc.streamItem``.
- The client keeps its connection up with exponential backoff. While the service is away, calls fail at once
  with ``ServiceUnavailable`` instead of waiting: the gateway turns that into a clean rpc_error and the next
  call after the service returns goes through.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import re
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLDecodeError, TLObject

log = logging.getLogger("mtlab.rpc")

MAX_FRAME = 16 * 1024 * 1024
_LEN = struct.Struct("<I")
_RECEIVE = 64 * 1024  # the least asked of the socket per read
MAX_RECEIVE = 1024 * 1024  # the most: a bigger frame arrives in several reads
_SEPARATE_HEADER = 64 * 1024  # frames this big are sent without copying them behind their length

Context = rpc.Context
Handler = Callable[[rpc.Context, bytes], Awaitable[bytes]]
StreamHandler = Callable[[rpc.Context, bytes], AsyncGenerator[bytes, None]]


class RpcError(Exception):
    """A call failed: ``code`` and ``message`` as in an MTProto rpc_error (400 BAD_REQUEST-style names)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def signed_in(ctx: Context) -> int:
    """The user a call comes from, or 401 AUTH_KEY_UNREGISTERED when its auth key is not signed in."""
    if ctx.user_id is None:
        raise RpcError(401, "AUTH_KEY_UNREGISTERED")
    return ctx.user_id


class ServiceUnavailable(RpcError):
    """The service is not connected (down, restarting, unreachable): the call was not delivered."""

    def __init__(self, service: str) -> None:
        super().__init__(500, "SERVICE_UNAVAILABLE")
        self.service = service


def error_label(message: str) -> str:
    """An error name fit for a metric label: FLOOD_WAIT_37 -> FLOOD_WAIT_X (a bounded label set)."""
    return re.sub(r"\d+", "X", message)


def constructor_id(query: bytes) -> int:
    return int(_LEN.unpack_from(query)[0]) if len(query) >= 4 else -1


async def _write(stream: ByteStream, lock: anyio.Lock, frame: TLObject) -> None:
    data = frame.to_bytes()
    async with lock:
        if len(data) < _SEPARATE_HEADER:
            await stream.send(_LEN.pack(len(data)) + data)
        else:  # a file part: two writes rather than a copy of up to a megabyte to put 4 bytes in front
            await stream.send(_LEN.pack(len(data)))
            await stream.send(data)


class _Frames:
    """The frames arriving on a stream, each whole frame copied once.

    The pieces a frame arrives in are kept as they came and joined once the frame is whole (anyio's
    BufferedByteReceiveStream would copy a frame of a megabyte three times: into its buffer, out of it, and into
    ``bytes``). A length above ``max_frame`` is refused before its bytes are read."""

    def __init__(self, stream: ByteStream, max_frame: int) -> None:
        self._stream = stream
        self._max_frame = max_frame
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._size = 0

    async def next(self) -> TLObject:
        (length,) = _LEN.unpack(await self._take(4))
        if length > self._max_frame:
            raise TLDecodeError(f"internal frame of {length} bytes exceeds {self._max_frame}")
        return Reader(await self._take(length), max_unpacked=0).read_object()

    async def _take(self, n: int) -> bytes:
        while self._size < n:
            # EndOfStream at the end, in the middle of a frame too: the caller takes either for the connection's end.
            data = await self._stream.receive(min(max(n - self._size, _RECEIVE), MAX_RECEIVE))
            self._pieces.append(memoryview(data))
            self._size += len(data)
        out: list[memoryview] = []
        need = n
        while need:
            piece = self._pieces[0]
            if len(piece) <= need:
                out.append(self._pieces.popleft())
                need -= len(piece)
            else:
                out.append(piece[:need])
                self._pieces[0] = piece[need:]
                need = 0
        self._size -= n
        if len(out) == 1 and isinstance(out[0].obj, bytes) and len(out[0]) == len(out[0].obj):
            return out[0].obj  # a piece that was exactly the frame: no copy at all
        return b"".join(out)


# -- server -------------------------------------------------------------------------------------------------


@dataclass
class RpcServer:
    """Serves ``handlers`` (constructor id -> async function) and ``streams`` (-> async iterator)."""

    name: str
    handlers: Mapping[int, Handler]
    streams: Mapping[int, StreamHandler] = field(default_factory=dict)
    max_in_flight: int = 256
    max_frame: int = MAX_FRAME
    port: int = 0

    async def serve(self, host: str, port: int, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:  # closed on the way out, so a restarted service can bind the port again
            self.port = int(listener.extra(SocketAttribute.local_port))  # noqa: S610 - anyio's extra, not Django's
            log.info("%s: internal RPC on %s:%d", self.name, host, self.port)
            task_status.started(self.port)
            await listener.serve(self._connection)

    async def _connection(self, stream: ByteStream) -> None:
        lock = anyio.Lock()
        slots = anyio.Semaphore(self.max_in_flight)
        running: dict[int, anyio.CancelScope] = {}
        frames = _Frames(stream, self.max_frame)
        async with stream, anyio.create_task_group() as tg:
            while True:
                try:
                    frame = await frames.next()
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    break
                except TLDecodeError as exc:
                    log.warning("%s: closing a connection that sent a bad frame: %s", self.name, exc)
                    break
                if isinstance(frame, rpc.Cancel):
                    scope = running.get(frame.req_id)
                    if scope is not None:
                        scope.cancel()
                elif isinstance(frame, rpc.Request):
                    await slots.acquire()  # at the limit, stop reading until a handler finishes
                    scope = anyio.CancelScope()
                    running[frame.req_id] = scope
                    tg.start_soon(self._call, stream, lock, frame, scope, running, slots)
            tg.cancel_scope.cancel()  # the client is gone: nobody waits for what is still running

    async def _call(
        self, stream: ByteStream, lock: anyio.Lock, request: rpc.Request, scope: anyio.CancelScope,
        running: dict[int, anyio.CancelScope], slots: anyio.Semaphore,
    ) -> None:
        rid = request.req_id
        reply: TLObject | None = None
        try:
            with scope:
                cid = constructor_id(request.query)
                if cid in self.streams:
                    # aclosing: a cancelled stream's generator runs its finally blocks now, not when collected
                    async with contextlib.aclosing(self.streams[cid](request.context, request.query)) as items:
                        async for item in items:
                            await _write(stream, lock, rpc.StreamItem(req_id=rid, item=item))
                    reply = rpc.Result(req_id=rid, result=b"")
                elif cid in self.handlers:
                    reply = rpc.Result(req_id=rid, result=await self.handlers[cid](request.context, request.query))
                else:
                    reply = rpc.Error(req_id=rid, code=400, message=f"INPUT_METHOD_INVALID_0X{cid & 0xFFFFFFFF:08X}")
        except RpcError as exc:
            reply = rpc.Error(req_id=rid, code=exc.code, message=exc.message)
        except Exception:
            log.exception("%s: handler for request %d failed", self.name, rid)
            reply = rpc.Error(req_id=rid, code=500, message="INTERNAL")
        finally:
            running.pop(rid, None)
            slots.release()
        if reply is not None and not scope.cancel_called:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await _write(stream, lock, reply)


# -- client -------------------------------------------------------------------------------------------------


class _Pending:
    __slots__ = ("done", "error", "items", "result")

    def __init__(self, items: MemoryObjectSendStream[bytes] | None = None) -> None:
        self.done = anyio.Event()
        self.result: bytes | None = None
        self.error: RpcError | None = None
        self.items = items


class Caller(Protocol):
    """What a service needs of another service's client: ``RpcClient``, or a test's in-process stand-in that hands
    the same bytes to the other service's handlers."""

    async def call(self, query: bytes, context: rpc.Context) -> bytes: ...


class RpcClient:
    """A connection to one service, kept up in the background; use as ``async with RpcClient(...) as c``."""

    def __init__(
        self, service: str, host: str, port: int, *, max_in_flight: int = 256, max_frame: int = MAX_FRAME,
        backoff_min: float = 0.05, backoff_max: float = 2.0, stream_buffer: int = 256,
    ) -> None:
        self.service = service
        self.host, self.port = host, port
        self.max_frame = max_frame
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.stream_buffer = stream_buffer
        self._slots = anyio.Semaphore(max_in_flight)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._stream: ByteStream | None = None
        self._lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self.connected = anyio.Event()
        self.connects = 0  # how many times a connection was made (a reconnect shows as 2, 3, ...)

    async def __aenter__(self) -> RpcClient:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._maintain)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)

    async def wait_connected(self) -> None:
        """Until the service answers (callers wrap this in their own timeout)."""
        await self.connected.wait()

    async def _maintain(self) -> None:
        delay = self.backoff_min
        while True:
            try:
                stream = await anyio.connect_tcp(self.host, self.port)
            except OSError:
                await anyio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = self.backoff_min
            self.connects += 1
            self._stream = stream
            self.connected.set()
            try:
                await self._reader(stream)
            finally:
                self._stream = None
                self.connected = anyio.Event()
                self._fail_all()
                await anyio.aclose_forcefully(stream)
            log.warning("lost the connection to %s; reconnecting", self.service)

    def _fail_all(self) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.error = ServiceUnavailable(self.service)
            if p.items is not None:
                p.items.close()
            p.done.set()

    async def _reader(self, stream: ByteStream) -> None:
        frames = _Frames(stream, self.max_frame)
        while True:
            try:
                frame = await frames.next()
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    TLDecodeError):
                return
            if not isinstance(frame, (rpc.Result, rpc.Error, rpc.StreamItem)):
                continue
            rid = frame.req_id
            p = self._pending.get(rid)
            if p is None:
                continue  # an answer to a call that was cancelled
            if isinstance(frame, rpc.StreamItem):
                if p.items is None:
                    continue
                try:
                    p.items.send_nowait(frame.item)
                except anyio.WouldBlock:  # the consumer lags: end its stream rather than buffer without bound
                    del self._pending[rid]
                    p.error = RpcError(500, "STREAM_OVERFLOW")
                    p.items.close()
                    p.done.set()
                    await self._cancel(rid)
                continue
            del self._pending[rid]
            if isinstance(frame, rpc.Result):
                p.result = frame.result
            elif isinstance(frame, rpc.Error):
                p.error = RpcError(frame.code, frame.message)
            if p.items is not None:
                p.items.close()
            p.done.set()

    async def _send(self, frame: TLObject) -> None:
        stream = self._stream
        if stream is None:
            raise ServiceUnavailable(self.service)
        try:
            await _write(stream, self._lock, frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ServiceUnavailable(self.service) from None

    async def _cancel(self, req_id: int) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(RpcError):
            await self._send(rpc.Cancel(req_id=req_id))

    async def call(self, query: bytes, context: rpc.Context) -> bytes:
        """Send ``query`` and return the service's serialized answer; raises ``RpcError``."""
        if self._stream is None:
            raise ServiceUnavailable(self.service)
        async with self._slots:
            rid = next(self._ids)
            pending = self._pending[rid] = _Pending()
            try:
                await self._send(rpc.Request(req_id=rid, context=context, query=query))
                await pending.done.wait()
            except BaseException:
                if self._pending.pop(rid, None) is not None:
                    await self._cancel(rid)
                raise
        if pending.error is not None:
            raise pending.error
        return pending.result if pending.result is not None else b""

    async def stream(self, query: bytes, context: rpc.Context) -> AsyncGenerator[bytes, None]:
        """Items a stream handler pushes, until it ends (an error ending it is raised)."""
        if self._stream is None:
            raise ServiceUnavailable(self.service)
        send, receive = anyio.create_memory_object_stream[bytes](self.stream_buffer)
        rid = next(self._ids)
        pending = self._pending[rid] = _Pending(send)
        try:
            await self._send(rpc.Request(req_id=rid, context=context, query=query))
            async with receive:
                async for item in receive:
                    yield item
            if pending.error is not None:
                raise pending.error
        finally:
            if self._pending.pop(rid, None) is not None:
                await self._cancel(rid)


def context(*, user_id: int | None = None, auth_key_id: int = 0, session_id: int = 0, msg_id: int | None = None,
            layer: int = 0, trace_id: int = 0, client: rpc.ClientInfo | None = None) -> rpc.Context:
    return rpc.Context(user_id=user_id, auth_key_id=auth_key_id, session_id=session_id, msg_id=msg_id, layer=layer,
                       trace_id=trace_id, client=client)

