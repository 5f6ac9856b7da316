"""The MTProto gateway: the DC entry clients connect to (trio).

One trio task per connection, in a nursery per connection (a writer task drains the bounded outgoing queue,
so a slow reader never blocks the loop that reads its requests). Each connection runs the sans-IO stack of
``mtproto``: ``ServerTransport`` (framing detected from the first bytes) -> auth-key handshake or
``open_message`` -> ``ServerSession`` (held per (auth key, session id), so a client that reconnects keeps its
session) -> the router -> ``data_to_send`` -> the transport.

A call the router sends to a service runs as its own task in the connection's nursery: the reader goes on
reading (pings, acks, more calls) while services work, and each answer is queued through the session when it
comes. At most ``calls_per_connection`` calls wait per connection; beyond that the reader pauses (back-pressure
on that one client). rpc_drop_answer cancels a call still waiting; invokeAfterMsg waits for the named call if it
still runs here. Auth keys come from the ``KeyStore`` (``keys.py``): the auth service with a cache, or memory
when the gateway runs alone.

Limits, each with a metric and a clear outcome:
- connections beyond ``max_connections``: -429, then close;
- a frame above ``max_frame``: -404 from the length header alone, before the payload is read;
- handshakes per client IP per second above ``handshakes_per_ip``: -429;
- no auth key after ``handshake_timeout`` seconds, or no byte for ``idle_timeout``: close;
- more than ``session_queue`` messages waiting to be written: close (the client is not reading);
- the auth service unreachable: a connection whose key this process already holds keeps working (calls that
  need the service get ``500 SERVICE_UNAVAILABLE``); a key it cannot look up closes the connection silently (no
  -404, which would make the client throw a good key away), and so does a handshake whose key cannot be stored.
A protocol error closes that one connection with its transport error; every other connection goes on.

Two listeners feed the same ``Connection``: ``port`` (MTProto over TCP) and ``ws_port`` (MTProto over WebSocket,
``websocket.py``). A connection only needs a ``ByteStream`` (``receive_some``/``send_all``/``aclose``): a trio
``SocketStream``, or a ``WebSocketStream`` whose binary messages concatenated are the same byte stream. Over
WebSocket obfuscation is required (a plain stream is closed with 1002), and metric labels get ``+ws``.
SIGINT/SIGTERM stop accepting and give open connections ``shutdown_grace`` seconds to finish.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from mtproto import handshake
from mtproto.crypto import rsa
from mtproto.errors import RemoteProtocolError, TransportErrorCode
from mtproto.session import SaltPolicy, ServerSession, open_message
from mtproto.session.msgid import MAX_FUTURE, MAX_PAST
from mtproto.session.server import DisconnectAfter, Rejected, RpcCall, RpcDropped
from mtproto.tl.internal.types import rpc
from mtproto.transport import NEED_DATA, Frame, ServerTransport, TransportKind
from services.common.config import GatewayConfig, gateway_config
from services.common.http import serve_http
from services.common.rpc import RpcClient, error_label
from services.gateway import metrics, router, websocket
from services.gateway.keys import (
    AuthServiceKeyStore,
    KeyStore,
    KeyStoreUnavailable,
    MemoryKeyStore,
    StoredKey,
    key_id_int,
    load_or_create_rsa_key,
    load_or_create_salt_secret,
)
from services.gateway.push import Push

log = logging.getLogger("mtlab.gateway")

MAX_SESSIONS = 100_000
MAX_SESSIONS_PER_KEY = 64
MAX_TOMBSTONES = 1_000_000
WRITE_BATCH = 256 * 1024  # bytes of queued frames joined into one write at most


class ByteStream(Protocol):
    """What a ``Connection`` reads and writes: a trio ``SocketStream`` or a ``websocket.WebSocketStream``."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray: ...

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...

    async def aclose(self) -> None: ...


class _Refused(Exception):
    """A limit closes this connection: send ``code`` (if the framing is known) and close."""

    def __init__(self, reason: str, code: TransportErrorCode | None = TransportErrorCode.FLOOD) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class Gateway:
    config: GatewayConfig
    rsa_key: rsa.RsaKey
    salts: SaltPolicy
    keys: KeyStore = field(default_factory=MemoryKeyStore)
    routes: router.Router = field(default_factory=lambda: router.Router({}, timeout=30.0))

    def __post_init__(self) -> None:
        self.handshake_config = handshake.ServerConfig(rsa_keys=(self.rsa_key,), dc_id=self.config.dc_id)
        self.sessions: OrderedDict[tuple[bytes, int], ServerSession] = OrderedDict()
        self.push = Push(self.sessions, self.routes.services.get("updates"))
        if isinstance(self.keys, AuthServiceKeyStore):
            self.keys.on_change = self.push.unbind_key
        self._per_key: dict[bytes, OrderedDict[int, None]] = {}
        self._tombstones: OrderedDict[tuple[bytes, int], tuple[int, float]] = OrderedDict()
        self.open_connections = 0
        self._buckets: dict[str, _Bucket] = {}
        self.port = self.config.port  # the bound port (differs when the config asks for 0)
        self.ws_port = self.config.ws_port
        self._accepting = trio.CancelScope()
        self.stopped = trio.Event()

    @classmethod
    def from_config(cls, config: GatewayConfig, keys: KeyStore | None = None,
                    routes: router.Router | None = None) -> Gateway:
        data = config.data_dir
        return cls(config, load_or_create_rsa_key(data), SaltPolicy(load_or_create_salt_secret(data)),
                   keys if keys is not None else MemoryKeyStore(),
                   routes if routes is not None else router.Router({}, timeout=config.rpc_timeout))

    # -- limits -----------------------------------------------------------------------------------------

    def allow_handshake(self, ip: str, now: float) -> bool:
        """A token bucket per client IP: ``handshakes_per_ip`` per second, bursts up to the same number."""
        rate = self.config.handshakes_per_ip
        bucket = self._buckets.get(ip)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()  # a flood of distinct addresses must not grow memory without bound
            bucket = self._buckets[ip] = _Bucket(rate, now)
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def session_for(self, stored: StoredKey, session_id: int, now: float) -> ServerSession:
        key = (stored.key.id, session_id)
        session = self.sessions.get(key)
        if session is not None:
            self.sessions.move_to_end(key)
            return session
        floor = self._tombstones.pop(key, (0, 0.0))[0]
        session = ServerSession(
            stored.key, session_id, salts=self.salts, randbytes=os.urandom,
            handshake_salt=stored.handshake_salt, handshake_salt_until=stored.created_at + self.salts.period,
            min_msg_id=floor,
        )
        self.sessions[key] = session
        per_key = self._per_key.setdefault(stored.key.id, OrderedDict())
        per_key[session_id] = None
        if len(per_key) > MAX_SESSIONS_PER_KEY:  # one key cannot push other clients' sessions out
            self._forget((stored.key.id, per_key.popitem(last=False)[0]), now)
        if len(self.sessions) > MAX_SESSIONS:
            self._forget(next(iter(self.sessions)), now)  # the least recently used session
        metrics.SESSIONS.set(len(self.sessions))
        return session

    def _forget(self, key: tuple[bytes, int], now: float) -> None:
        """Drop a session but remember, while its messages could still arrive, the highest id it accepted.

        A message older than 300 s is refused by the time check anyway, so a tombstone is kept that long: a
        message captured before the session was dropped cannot be replayed into its next incarnation.
        """
        session = self.sessions.pop(key, None)
        if session is None:
            return
        self.push.unbind(key)
        per_key = self._per_key.get(key[0])
        if per_key is not None:
            per_key.pop(key[1], None)
            if not per_key:
                del self._per_key[key[0]]
        self._tombstones[key] = (session.highest_msg_id, now + MAX_PAST + MAX_FUTURE)
        while self._tombstones:
            oldest_key, (_, expires) = next(iter(self._tombstones.items()))
            if expires > now and len(self._tombstones) <= MAX_TOMBSTONES:
                break
            del self._tombstones[oldest_key]

    # -- serving ----------------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until ``stop()``; then open connections get ``shutdown_grace`` to finish.

        Cancelling the caller instead stops everything at once (what a test or a second Ctrl-C wants).
        """
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.port = listeners[0].socket.getsockname()[1]
        ws_listeners = await trio.open_tcp_listeners(self.config.ws_port, host=self.config.host)
        self.ws_port = ws_listeners[0].socket.getsockname()[1]
        log.info("gateway listening on %s:%d, WebSocket on %d (dc %d)", self.config.host, self.port, self.ws_port,
                 self.config.dc_id)
        try:
            async with trio.open_nursery() as connections:
                with self._accepting:
                    task_status.started(self.port)
                    async with trio.open_nursery() as accepting:
                        for handler, group in ((self._handle, listeners), (self._handle_ws, ws_listeners)):
                            accepting.start_soon(functools.partial(
                                trio.serve_listeners, handler, group, handler_nursery=connections))
                for listener in [*listeners, *ws_listeners]:
                    await listener.aclose()
                log.info("stopped accepting; %d connections get %.0fs to finish", self.open_connections,
                         self.config.shutdown_grace)
                connections.cancel_scope.deadline = trio.current_time() + self.config.shutdown_grace
        finally:
            self.stopped.set()

    def stop(self) -> None:
        self._accepting.cancel()

    def accepting(self) -> bool:
        """Healthy: the listener is up and no shutdown has begun."""
        return not self._accepting.cancel_called

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.open_connections += 1
        try:
            await Connection(self, stream, _peer(stream)).run()
        finally:
            self.open_connections -= 1

    async def _handle_ws(self, stream: trio.SocketStream) -> None:
        """A WebSocket upgrade (bounded in size and time), then the same ``Connection`` over its messages."""
        self.open_connections += 1
        try:
            ws = await websocket.accept(stream, max_message=self.config.max_frame + 64)
            if ws is None:
                metrics.REFUSED.labels("websocket_handshake").inc()
                await trio.aclose_forcefully(stream)
                return
            await Connection(self, ws, _peer(stream), carrier="+ws", refuse=ws.refuse).run()
        finally:
            self.open_connections -= 1


def _peer(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


class Connection:
    """One client connection, over any ``ByteStream``.

    ``carrier`` suffixes the transport label of the metrics ("+ws"). ``refuse``, when given, marks a carrier that
    requires obfuscation, and is told why the connection closes for a protocol error or a limit (a WebSocket
    puts it in its close frame); ``protocol_error`` tells the two apart.
    """

    def __init__(self, gateway: Gateway, stream: ByteStream, peer: str, *, carrier: str = "",
                 refuse: Callable[..., None] | None = None) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.stream = stream
        self.peer = peer
        self.carrier = carrier
        self._refuse = refuse
        self.transport = ServerTransport(randbytes=os.urandom, max_frame=self.config.max_frame)
        self.handshake: handshake.ServerHandshake | None = None
        self.handshake_deadline = math.inf
        self.disconnect_deadline = math.inf
        self.has_key = False
        self.kind_label = "unknown"
        self._plain_ids = 0
        self._send, self._outbox = trio.open_memory_channel[bytes](self.config.session_queue)
        self.stored: StoredKey | None = None  # the key this connection last used: still usable if the store is down
        self.layer = 0  # from invokeWithLayer, for this connection (clients repeat it after reconnecting)
        self.client_info = rpc.ClientInfo(api_id=0, device_model="", system_version="", app_version="", lang_code="",
                                          ip=self.peer)
        self._slots = trio.Semaphore(self.config.calls_per_connection)
        self._calls: trio.Nursery | None = None
        self._inflight: dict[int, trio.CancelScope] = {}
        self._running: dict[int, trio.Event] = {}

    @property
    def padded(self) -> bool:
        return self.transport.kind is TransportKind.PADDED_INTERMEDIATE

    async def run(self) -> None:
        over_limit = self.gateway.open_connections > self.config.max_connections
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                try:
                    async with trio.open_nursery() as calls:
                        self._calls = calls
                        await self._reader(over_limit)
                        calls.cancel_scope.cancel()  # the client is gone: nobody is left to read those answers
                finally:
                    self._send.close()
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("connection from %s failed", self.peer)
        finally:
            self.gateway.push.drop_connection(self)
            if self.kind_label != "unknown":
                metrics.CONNECTIONS.labels(self.kind_label).dec()
            with trio.CancelScope() as forcefully:  # trio.aclose_forcefully, for any ByteStream
                forcefully.cancel()
                await self.stream.aclose()

    async def _writer(self) -> None:
        async for first in self._outbox:
            # Whatever else is queued goes in the same write (a push to many sessions of one connection, answers
            # that came together): one system call instead of one per frame.
            chunks = [first]
            size = len(first)
            while size < WRITE_BATCH:
                try:
                    chunks.append(self._outbox.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                size += len(chunks[-1])
            try:
                await self.stream.send_all(b"".join(chunks) if len(chunks) > 1 else first)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            metrics.BYTES.labels("out").inc(size)

    def _queue(self, data: bytes) -> None:
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            raise _Refused("outgoing queue full (the client does not read)", None) from None
        except trio.ClosedResourceError:
            pass  # the connection is closing: a late answer has nowhere to go

    def _flush(self, session: ServerSession) -> None:
        for out in session.data_to_send(time.time()):
            self._queue(self.transport.send_frame(out))

    def push(self, session: ServerSession) -> None:
        """Write what ``session`` has to send (a push put there); a client that does not read is closed."""
        try:
            self._flush(session)
        except _Refused as refused:
            self._abort(refused)

    def _abort(self, refused: _Refused) -> None:
        """A limit hit outside the reader (an answer arriving for a client that does not read): close now."""
        metrics.REFUSED.labels(refused.reason.split(" ")[0]).inc()
        self._send.close()
        if self._calls is not None:
            self._calls.cancel_scope.cancel()

    async def _reader(self, over_limit: bool) -> None:
        while True:
            data: bytes | bytearray = b""
            deadline = min(trio.current_time() + self.config.idle_timeout, self.handshake_deadline,
                           self.disconnect_deadline)
            with trio.move_on_at(deadline):
                try:
                    data = await self.stream.receive_some(self.transport.receive_capacity)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return  # the client closed
            if not data:
                metrics.REFUSED.labels("timeout").inc()
                return
            metrics.BYTES.labels("in").inc(len(data))
            try:
                self.transport.receive_data(data)
                while (event := self.transport.next_event()) is not NEED_DATA:
                    self._note_transport()
                    if over_limit:
                        raise _Refused("max_connections")
                    if isinstance(event, Frame):
                        await self._frame(event.payload)
                self._note_transport()  # the framing may be known before its first frame is complete
            except _Refused as refused:
                metrics.REFUSED.labels(refused.reason.split(" ")[0]).inc()
                if self._refuse is not None:
                    self._refuse(refused.reason, protocol_error=refused.reason == "not_obfuscated")
                await self._close_with(refused.code)
                return
            except RemoteProtocolError as exc:
                code = exc.transport_error
                metrics.PROTOCOL_ERRORS.labels(str(int(code)) if code is not None else "close").inc()
                log.info("closing %s: %s", self.peer, exc)
                if self._refuse is not None:
                    self._refuse(str(exc), protocol_error=True)
                await self._close_with(code)
                return

    def _note_transport(self) -> None:
        if self.kind_label == "unknown" and self.transport.kind is not None:
            if self._refuse is not None and not self.transport.obfuscated:
                # MTProto over WebSocket: "the client MUST use obfuscation" (core.telegram.org/mtproto/transports)
                raise _Refused("not_obfuscated", None)
            self.kind_label = (self.transport.kind.value + ("+obfuscated" if self.transport.obfuscated else "")
                               + self.carrier)
            metrics.CONNECTIONS.labels(self.kind_label).inc()
            metrics.CONNECTIONS_TOTAL.labels(self.kind_label).inc()

    async def _close_with(self, code: TransportErrorCode | None) -> None:
        """Write the transport error (when the framing is known) after what is queued, then close."""
        if code is not None:
            try:
                error = self.transport.send_error(code)
            except Exception:  # the framing may be unknown (e.g. HTTP bytes): close without a code
                error = b""
            if error:
                with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                    self._send.send_nowait(error)
        self._send.close()

    async def _frame(self, payload: bytes) -> None:
        if payload[:8] == bytes(8):
            await self._plain(payload)
            return
        stored, known = await self._lookup(payload[:8])
        now = time.time()
        if stored is None or (stored.expires_in is not None and now > stored.created_at + stored.expires_in):
            # An expired temporary key is as unknown as one never made: the client must create a new one.
            metrics.DECRYPT_FAILURES.labels("unknown_key").inc()
            raise RemoteProtocolError(f"unknown auth key {payload[:8].hex()}")
        try:
            msg = open_message(stored.key, payload, from_client=True, padded=self.padded)
        except RemoteProtocolError:
            metrics.DECRYPT_FAILURES.labels("msg_key").inc()
            raise
        if not self.has_key:
            self.has_key = True
            self.handshake_deadline = math.inf
        self.stored = stored
        session = self.gateway.session_for(stored, msg.session_id, now)
        for event in session.receive(msg, now):
            if isinstance(event, RpcCall):
                await self._call(session, stored, known, event)
            elif isinstance(event, Rejected):
                metrics.BAD_MSGS.labels(str(int(event.code))).inc()
            elif isinstance(event, DisconnectAfter):
                # ping_delay_disconnect: close unless the next one arrives within the delay (each resets it).
                self.disconnect_deadline = trio.current_time() + max(event.seconds, 1)
            elif isinstance(event, RpcDropped) and event.req_msg_id in self._inflight:
                self._inflight[event.req_msg_id].cancel()  # the session already answered rpc_answer_unknown
        self._flush(session)

    async def _lookup(self, key_id: bytes) -> tuple[StoredKey | None, bool]:
        """The key's record and whether it is current (False: the store is unreachable, this is our last copy)."""
        try:
            with trio.fail_after(self.config.rpc_timeout):
                return await self.gateway.keys.get(key_id), True
        except (KeyStoreUnavailable, trio.TooSlowError):
            if self.stored is not None and self.stored.key.id == key_id:
                return self.stored, False
            metrics.DECRYPT_FAILURES.labels("key_store_unavailable").inc()
            # Silently: -404 would tell the client its key is gone, and it would throw a good key away.
            raise RemoteProtocolError("the key store is unreachable", None) from None

    def _answer(self, session: ServerSession, msg_id: int, answer: router.Answer) -> None:
        if answer.result is not None:
            session.send_result(msg_id, answer.result)
        else:
            session.send_error(msg_id, answer.error_code, answer.error_message)

    async def _call(self, session: ServerSession, stored: StoredKey, known: bool, call: RpcCall) -> None:
        started = time.perf_counter()
        try:
            query, wrappers = router.peel(call.body)
        except RemoteProtocolError:
            session.send_error(call.msg_id, 400, "INPUT_METHOD_INVALID")
            return
        if wrappers.layer is not None:
            self.layer = wrappers.layer
        if wrappers.app:
            app = wrappers.app
            self.client_info = rpc.ClientInfo(
                api_id=int(app["api_id"]), device_model=str(app["device_model"]),
                system_version=str(app["system_version"]), app_version=str(app["app_version"]),
                lang_code=str(app["lang_code"]), ip=self.peer)
        name = router.method_name(query)
        state = router.KeyState(known, stored.user_id, stored.revoked,
                                unbound_temporary=stored.temporary and stored.perm_auth_key_id is None)
        answer = router.answer_at_edge(query, call.msg_id, state, routed=self.gateway.routes.routed,
                                       dc_id=self.config.dc_id, port=self.gateway.port, now=int(time.time()))
        if answer is not None:
            self._answer(session, call.msg_id, answer)
            if answer.result is None:
                metrics.RPC_ERRORS.labels("gateway", error_label(answer.error_message)).inc()
            metrics.RPC_SECONDS.labels(name, "gateway").observe(time.perf_counter() - started)
            return
        service = router.service_for(name, self.gateway.routes.services) or ""
        ctx = rpc.Context(user_id=stored.user_id, auth_key_id=key_id_int(stored.key.id),
                          session_id=session.session_id, msg_id=call.msg_id, layer=self.layer,
                          trace_id=int.from_bytes(os.urandom(8), "little") >> 1, client=self.client_info)
        if stored.user_id is not None and not stored.revoked and not wrappers.without_updates:
            # A signed-in session that calls subscribes to pushes, on the connection of its latest call.
            self.gateway.push.bind(stored.user_id, (stored.key.id, session.session_id), self)
        await self._slots.acquire()  # at the limit, this connection's reader waits for an answer first
        if self._calls is None:  # run() opened the nursery before reading: only a bug gets here
            raise RuntimeError("connection has no call nursery")
        log.debug("%s -> %s trace=%x", name, service, ctx.trace_id)
        self._calls.start_soon(self._routed, session, stored.key.id, call.msg_id, query, name, service, ctx,
                               wrappers.after, started)

    async def _routed(self, session: ServerSession, key_id: bytes, msg_id: int, query: bytes, name: str,
                      service: str, ctx: rpc.Context, after: tuple[int, ...], started: float) -> None:
        done = trio.Event()
        self._running[msg_id] = done
        metrics.CALLS_IN_FLIGHT.inc()
        try:
            with trio.CancelScope() as scope:
                self._inflight[msg_id] = scope
                for earlier in after:  # invokeAfterMsg(s): the named call must finish first, if it runs here
                    pending = self._running.get(earlier)
                    if pending is not None and pending is not done:
                        await pending.wait()
                answer = await self.gateway.routes.forward(service, query, ctx)
        finally:
            self._inflight.pop(msg_id, None)
            self._running.pop(msg_id, None)
            done.set()
            self._slots.release()
            metrics.CALLS_IN_FLIGHT.dec()
        if scope.cancelled_caught:
            return  # rpc_drop_answer
        if name in router.CHANGES_OWN_KEY:
            self.gateway.keys.forget(key_id)  # the key's next request must see its new sign-in state
            self.gateway.push.unbind_key(key_id)  # and subscribe to pushes again as whoever it is now
        if answer.result is None:
            metrics.RPC_ERRORS.labels(service, error_label(answer.error_message)).inc()
        metrics.RPC_SECONDS.labels(name, service).observe(time.perf_counter() - started)
        self._answer(session, msg_id, answer)
        try:
            self._flush(session)
        except _Refused as refused:
            self._abort(refused)

    async def _plain(self, payload: bytes) -> None:
        _, body = handshake.unpack_plain(payload, padded=self.padded)
        if self.handshake is None:
            if not self.gateway.allow_handshake(self.peer, time.monotonic()):
                metrics.HANDSHAKES.labels("rate_limited").inc()
                raise _Refused("handshake_rate")
            self.handshake = handshake.ServerHandshake(self.gateway.handshake_config, os.urandom)
            self.handshake_deadline = trio.current_time() + self.config.handshake_timeout
        try:
            answer = self.handshake.receive(body, int(time.time()))
        except RemoteProtocolError:
            metrics.HANDSHAKES.labels("failed").inc()
            raise
        created = self.handshake.created
        if created is not None:
            # Stored before dh_gen_ok leaves: the client may use the key on another connection at once.
            try:
                with trio.fail_after(self.config.rpc_timeout):
                    await self.gateway.keys.put(created)
            except (KeyStoreUnavailable, trio.TooSlowError):
                metrics.HANDSHAKES.labels("store_failed").inc()
                raise RemoteProtocolError("the new auth key could not be stored", None) from None
            self.handshake.created = None
            self.handshake = None
            self.handshake_deadline = math.inf
            metrics.HANDSHAKES.labels("ok").inc()
            metrics.AUTH_KEYS.inc()
            log.info("auth key %s created for %s", created.auth_key_id.hex(), self.peer)
        self._plain_ids = max(self._plain_ids + 4, (int(time.time() * 2**32) & ~3) | 1)
        self._queue(self.transport.send_frame(handshake.pack_plain(self._plain_ids, answer)))


async def main(config: GatewayConfig) -> None:
    if not config.auth_host:
        log.info("no auth service configured (MTLAB_GATEWAY_AUTH_HOST): keys in memory, nobody can sign in")
        await _run(config, Gateway.from_config(config))
        return
    # RpcClient is anyio: it runs on trio here, and keeps reconnecting while the service is away.
    async with contextlib.AsyncExitStack() as stack:
        auth = await stack.enter_async_context(RpcClient("auth", config.auth_host, config.auth_port))
        services = {"auth": auth}
        if config.messages_host:
            services["messages"] = await stack.enter_async_context(
                RpcClient("messages", config.messages_host, config.messages_port))
        if config.updates_host:
            services["updates"] = await stack.enter_async_context(
                RpcClient("updates", config.updates_host, config.updates_port, stream_buffer=8192))
        if config.media_host:
            services["media"] = await stack.enter_async_context(
                RpcClient("media", config.media_host, config.media_port))
        keys = AuthServiceKeyStore(auth, size=config.key_cache_size)
        gateway = Gateway.from_config(config, keys, router.Router(services, timeout=config.rpc_timeout))
        await _run(config, gateway, keys)


async def _run(config: GatewayConfig, gateway: Gateway, keys: AuthServiceKeyStore | None = None) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if keys is not None:
                nursery.start_soon(keys.watch)
            nursery.start_soon(gateway.push.run)
            port = await nursery.start(gateway.serve)
            # /healthz only once the MTProto port is bound, and unhealthy from the moment shutdown begins.
            nursery.start_soon(serve_http, config.host, config.metrics_port, gateway.accepting)
            services = "".join(f", {name} service at {client.host}:{client.port}"
                               for name, client in gateway.routes.services.items())
            print(f"mtlab gateway: MTProto on {config.host}:{port} (dc {config.dc_id}), "
                  f"WebSocket on ws://{config.host}:{gateway.ws_port}/ (obfuscated only), "
                  f"metrics on http://{config.host}:{config.metrics_port}/metrics{services}", flush=True)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    gateway.stop()
                    break

            nursery.start_soon(stop_on_signal)
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()


def run() -> None:
    from services.common import logs, memory

    logs.setup("gateway")
    memory.tune_allocator()  # frames of file parts are big buffers (services/common/memory.py)
    trio.run(main, gateway_config())
