"""``Client``: MTProto over TCP or WebSocket for applications, a thin anyio shell around the sans-IO ``mtproto``
package.

    async with Client(ClientConfig(server_keys=pem, port=4430)) as client:
        config = await client.invoke(api.functions.help.GetConfig())

Everything protocol-shaped happens in ``mtproto``: framing (``ClientTransport``), the auth-key handshake
(``mtproto.handshake``), msg_ids, seq_nos, salts, containers, acks and resends (``ClientSession``). This module
owns only what needs an event loop: the socket (a TCP stream, or a WebSocket from ``websocket.py`` when the
config asks for one), three tasks per connection, and the waiting callers.

Tasks, all in task groups (no task outlives the ``async with``):

    client task group
      supervisor          connects, creates or reuses the auth key, replaces a lost connection
        connection task group (one per connection)
          reader          next_frame -> ClientSession.receive -> resolve the waiting invoke() / queue updates
          writer          woken by invoke(): ClientSession.data_to_send (everything queued, one container)
          pinger          ping_delay_disconnect every ping_interval; no pong in time = a dead connection
      updates             (after start_updates) the ordered stream's engine (mtlab.client.updates)

Each connection starts a fresh session (see ``session_file`` for why the session id is not resumed) whose first
message is ``invokeWithLayer(LAYER, initConnection(..., help.getConfig))``, as stock clients send; the client
counts as connected once its answer is in (``server_config``). Calls made while no connection is up wait;
on a new connection the calls still waiting are sent again, first in line after initConnection, and get new
msg_ids from the new session (core.telegram.org/mtproto/description: never resend under an old msg_id).

Cancellation: cancelling ``invoke`` forgets the call (a late answer is dropped); leaving the ``async with``
cancels every task and closes the socket, and calls still waiting raise ``ConnectionLost``.

Updates come two ways. ``updates()`` is the raw inbox, as pushed. ``ordered_updates()`` (after
``start_updates()``, once signed in) is what applications want: every update once, in pts order, gaps filled with
getDifference (``updates.UpdateEngine``, a fourth task, around the sans-IO ``update_state.UpdateState``). The
engine is told of new_session_created and reconnects here, and of the answers to the application's own calls
(``invoke``), which move pts too.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, TypeVar, cast

import anyio
from anyio.abc import ByteStream, TaskGroup

from mtlab.client import session_file, websocket
from mtlab.client.config import ClientConfig
from mtlab.client.errors import BadMessageError, ConnectionLost, RpcError
from mtlab.client.link import Link, create_auth_key
from mtlab.client.update_state import Event as UpdateEvent
from mtlab.client.update_state import SavedState, UpdateState
from mtlab.client.updates import UpdateEngine, UpdateQueue
from mtproto.errors import RemoteProtocolError, TransportErrorCode
from mtproto.handshake import CreatedKey
from mtproto.session import AuthKey, ClientSession, Request
from mtproto.session.client import (
    Event,
    RequestFailed,
    Result,
    RpcErrorReceived,
    SessionCreated,
    UpdateReceived,
)
from mtproto.tl import LAYER, api, mt
from mtproto.tl.runtime import TLFunction
from mtproto.transport import ClientTransport

log = logging.getLogger("mtlab.client")

R = TypeVar("R")
RandBytes = Callable[[int], bytes]
Clock = Callable[[], float]


@dataclass(slots=True)
class ClientStats:
    """What happened on the wire, for ``mtlab chat -v``, load tests and the tests."""

    connections: int = 0  # connections that got as far as the initConnection answer
    reconnects: int = 0  # of those, how many replaced a lost one
    handshakes: int = 0  # auth keys created
    keys_forgotten: int = 0  # keys the gateway did not know (-404)
    frames_sent: int = 0
    frames_received: int = 0
    rpc_calls: int = 0  # invoke() calls
    rpc_errors: int = 0
    resent: int = 0  # messages the session layer sent again (bad_server_salt, bad_msg 16/17/20/32/33)
    salt_changes: int = 0
    time_corrections: int = 0
    new_sessions: int = 0  # new_session_created from the server
    updates_received: int = 0
    updates_dropped: int = 0  # dropped because nobody read them in time (see mtlab.client.updates)
    differences: int = 0  # getDifference and getChannelDifference calls of the ordered stream


class _Call:
    """One query waiting for its answer. ``request`` is its handle in the current session, if it has one."""

    __slots__ = ("done", "error", "query", "request", "value")

    def __init__(self, query: TLFunction[Any]) -> None:
        self.query = query
        self.request: Request | None = None
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        if not self.done.is_set():
            self.value = value
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass(frozen=True, slots=True)
class _Ended:
    """How one connection ended."""

    error: ConnectionLost
    established: bool  # it got as far as the initConnection answer
    key_rejected: bool  # the gateway answered our encrypted messages with -404: it does not know the key


class Client:
    """An MTProto client connection to one gateway, used as ``async with Client(config) as client``.

    ``randbytes`` and ``clock`` are injected for the same reason ``mtproto`` takes them: a test can pin them.
    """

    def __init__(self, config: ClientConfig, *, randbytes: RandBytes = os.urandom, clock: Clock = time.time) -> None:
        self.config = config
        self._randbytes = randbytes
        self._clock = clock
        self.server_config: api.types.TypeConfig | None = None  # help.getConfig's answer on this connection
        self._key: AuthKey | None = None
        self._salt = 0
        self._time_offset = 0
        self._calls: dict[_Call, None] = {}  # callers waiting, in order of arrival
        self._link: Link | None = None  # the current connection, while one is up
        self._link_calls: dict[Request, _Call] = {}  # the current session's requests -> their callers
        self._stats = ClientStats()
        self._tg: TaskGroup | None = None
        self._ready: anyio.Event | None = None
        self._updates: UpdateQueue | None = None
        self._closing = False
        self._closed = False
        self._failure: ConnectionLost | None = None  # why the client ended, if not by leaving `async with`
        self._engine: UpdateEngine | None = None  # the ordered stream, once started
        self._engine_lock = anyio.Lock()
        self._raw_taken = False  # someone reads updates(): the engine cannot have the inbox
        self._stored_updates: tuple[int, SavedState] | None = None  # (user id, state) from the session file
        self._self_id: int | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._tg is not None:
            raise RuntimeError("a Client is entered once; make a new one to connect again")
        await self._load_session()
        self._ready = anyio.Event()
        self._updates = UpdateQueue(self.config.updates_buffer)
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._supervise, name="mtlab.client supervisor")
        try:
            await self._ready.wait()
        except BaseException as exc:  # cancelled from outside, or the supervisor crashed (a bug): end it all
            tg.cancel_scope.cancel()
            self._updates.close()
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if self._closed:  # could not connect
            try:
                await tg.__aexit__(None, None, None)  # raises what the supervisor crashed with, if it did
            finally:
                self._updates.close()
            raise self._failure.copy() if self._failure is not None else ConnectionLost("could not connect")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg = self._tg
        if tg is None or self._updates is None:
            return None
        self._closing = True
        with anyio.CancelScope(shield=True):
            await self._save_session()
        tg.cancel_scope.cancel()
        try:
            # Only a cancellation goes into the task group: anyio would wrap any other exception of the body
            # (an RpcError the caller let escape) in an ExceptionGroup, and the caller expects it as it was.
            if exc is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
                return await tg.__aexit__(exc_type, exc, tb)
            await tg.__aexit__(None, None, None)  # (on trio this returns True: "no error here", not ours to say)
            return None
        finally:
            self._updates.close()

    # -- the API ----------------------------------------------------------------------------------------

    async def invoke(self, query: TLFunction[R]) -> R:
        """Send ``query`` and return its answer; raises RpcError, ConnectionLost or BadMessageError.

        Any number of tasks may invoke at once: queries queued together leave in one container. There is no
        timeout here: wrap the call in ``anyio.fail_after`` (cancelling forgets the call).
        """
        call = self._submit(query)
        self._stats.rpc_calls += 1
        try:
            await call.done.wait()
        finally:
            self._forget_call(call)
        if call.error is not None:
            if isinstance(call.error, RpcError):
                self._stats.rpc_errors += 1
            raise call.error
        if self._engine is not None:
            self._engine.own_result(query, call.value)  # sendMessage, deleteMessages...: pts moved
        return cast(R, call.value)

    async def ping(self) -> float:
        """Round-trip time of one ``ping`` in seconds."""
        started = anyio.current_time()
        await self.invoke(mt.functions.Ping(ping_id=self._random_long()))
        return anyio.current_time() - started

    def updates(self) -> AsyncIterator[UpdateReceived]:
        """The updates the server pushes, oldest first (the inbox keeps ``updates_buffer``; see ``updates``).

        The iteration ends when the client is closed, and raises ConnectionLost when the connection is lost
        for good. Meant for one consumer: two loops would each get part of the updates.
        """
        if self._updates is None:
            raise RuntimeError("updates() needs an open client: use `async with Client(...)` first")
        if self._engine is not None:
            raise RuntimeError("the ordered stream reads the raw updates: use ordered_updates()")
        self._raw_taken = True
        return _UpdateIterator(self, self._updates)

    async def start_updates(self) -> None:
        """Start the ordered stream (signed in: it asks who you are and updates.getState); returns once the state
        is known, so the answers to calls made from here on are accounted. Idempotent.

        With a session file that holds this user's state, it continues from there with updates.getDifference,
        so what arrived while the client was not running comes first, exactly once. Raises RpcError (401 when
        not signed in) or ConnectionLost.
        """
        if self._updates is None or self._tg is None:
            raise RuntimeError("start_updates() needs an open client: use `async with Client(...)` first")
        async with self._engine_lock:
            if self._engine is None:
                if self._raw_taken:
                    raise RuntimeError("updates() is being read: the ordered stream needs the raw updates itself")
                [me] = await self.invoke(api.functions.users.GetUsers(id=[api.types.InputUserSelf()]))
                stored = self._stored_updates
                saved = stored[1] if stored is not None and stored[0] == me.id else None
                state = UpdateState(gap_timeout=self.config.updates_gap_timeout,
                                    silence=self.config.updates_silence, self_id=me.id)
                state.start(anyio.current_time(), saved)
                self._self_id = me.id
                engine = UpdateEngine(state, self._updates, self.invoke, buffer=self.config.updates_buffer)
                self._tg.start_soon(engine.run, name="mtlab.client updates")
                self._engine = engine
                log.info("ordered updates started for user %d %s", me.id,
                         "from the saved state" if saved is not None else "with updates.getState")
        engine = self._engine
        await engine.ready.wait()
        if engine.failure is not None:
            raise engine.failure
        if engine.ended:
            raise self._failure.copy() if self._failure is not None else ConnectionLost("the client was closed")

    def ordered_updates(self) -> AsyncIterator[UpdateEvent]:
        """The application's stream: ``Update`` (every update once, in pts order per box, with the users and
        chats it came with) and ``Reset`` (too far behind: reload your chats, or one channel). Starts the stream
        on the first step if ``start_updates`` was not called. Ends when the client is closed; raises
        ConnectionLost when the connection is lost for good, RpcError when the account was signed out."""
        if self._updates is None:
            raise RuntimeError("ordered_updates() needs an open client: use `async with Client(...)` first")
        return _OrderedIterator(self)

    @property
    def update_state(self) -> UpdateState | None:
        """The ordered stream's state machine (pts, qts, channels; ``track_channel``), once started."""
        return None if self._engine is None else self._engine.state

    @property
    def connected(self) -> bool:
        """True while a connection is up and has answered initConnection."""
        return self._link is not None and self.server_config is not None and not self._closed

    @property
    def auth_key_id(self) -> bytes | None:
        return None if self._key is None else self._key.id

    @property
    def session_id(self) -> int | None:
        link = self._link
        return None if link is None or link.session is None else link.session.session_id

    @property
    def in_flight(self) -> int:
        """Calls waiting for their answer (a cancelled call is no longer one)."""
        return len(self._calls)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters, the current connection's included."""
        snapshot = ClientStats(**{f.name: getattr(self._stats, f.name) for f in fields(ClientStats)})
        link = self._link
        if link is not None:
            snapshot.frames_sent += link.frames_sent
            snapshot.frames_received += link.frames_received
            if link.session is not None:
                snapshot.resent += link.session.counters.resent
                snapshot.salt_changes += link.session.counters.salt_changes
                snapshot.time_corrections += link.session.counters.time_corrections
        if self._updates is not None:
            snapshot.updates_received = self._updates.received
            snapshot.updates_dropped = self._updates.dropped
        if self._engine is not None:
            snapshot.differences = self._engine.differences
        return snapshot

    # -- calls ------------------------------------------------------------------------------------------

    def _submit(self, query: TLFunction[Any]) -> _Call:
        if self._closed or self._tg is None:
            raise self._failure.copy() if self._failure is not None else ConnectionLost("the client is not open")
        call = _Call(query)
        self._calls[call] = None
        link = self._link
        if link is not None and link.session is not None:
            self._attach(link.session, call)
            link.kick()
        # else: no connection right now; the supervisor sends it on the next one
        return call

    def _attach(self, session: ClientSession, call: _Call) -> None:
        call.request = session.invoke(call.query)
        self._link_calls[call.request] = call

    def _forget_call(self, call: _Call) -> None:
        self._calls.pop(call, None)
        if call.request is not None:
            self._link_calls.pop(call.request, None)
            link = self._link
            if link is not None and link.session is not None and not call.done.is_set():
                link.session.forget(call.request)  # a cancelled call: not resent, a late answer ignored

    def _internal_call(self, link: Link, query: TLFunction[Any]) -> _Call:
        """A call of the client's own (initConnection, pings): tied to this connection, never sent again."""
        if link.session is None:
            raise RuntimeError("no session on this link")  # unreachable: called after the session is made
        call = _Call(query)
        self._attach(link.session, call)
        link.kick()
        return call

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, UpdateReceived):
                if self._updates is not None:
                    self._updates.push(event)
                continue
            if isinstance(event, SessionCreated):
                self._stats.new_sessions += 1
                log.debug("new session created, first msg_id %d", event.first_msg_id)
                if self._engine is not None:
                    self._engine.need_difference()  # pushes meant for the old session may be lost
                continue
            call = self._link_calls.pop(event.request, None)
            if call is None:
                continue  # its caller was cancelled: the answer has nobody to go to
            self._calls.pop(call, None)  # answered: it must not be sent again on a new connection
            if isinstance(event, Result):
                call.resolve(event.value)
            elif isinstance(event, RpcErrorReceived):
                call.fail(RpcError(event.code, event.message, method=event.request.query.TL_NAME))
            elif isinstance(event, RequestFailed):
                call.fail(BadMessageError(event.code, method=event.request.query.TL_NAME))

    # -- connections ------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Keep a connection up (or give up), then fail whatever still waits."""
        failure: ConnectionLost | None = None
        try:
            failure = await self._connect_loop()
        finally:
            self._closed = True
            self._failure = failure
            for call in list(self._calls):
                call.fail(failure.copy() if failure is not None else ConnectionLost("the client was closed"))
            self._calls.clear()
            if self._updates is not None:
                self._updates.end()
            if self._ready is not None:
                self._ready.set()

    async def _connect_loop(self) -> ConnectionLost | None:
        """Connections one after another; returns why it gave up, or None when the client is closing."""
        cfg = self.config
        failures = 0  # connection attempts in a row that ended without being replaced by a good one
        key_retry = True  # one immediate retry with a new key after a -404, per good connection
        established_once = False
        while True:
            ended = await self._run_connection(reconnecting=established_once)
            if self._closing:
                return None
            log.info("connection to %s:%d ended: %s", cfg.host, cfg.port, ended.error)
            if ended.established:
                established_once = True
                failures = 0
                key_retry = True
            if ended.key_rejected:
                await self._forget_key()
                if key_retry:
                    key_retry = False
                    continue  # the gateway forgot the key (a restart): a new one, at once
            failures += 1
            if not cfg.reconnect or failures > cfg.reconnect_attempts:
                return ended.error
            delay = min(cfg.reconnect_max_delay, cfg.reconnect_delay * 2 ** (failures - 1))
            delay *= 0.5 + 0.5 * int.from_bytes(self._randbytes(2), "little") / 65535  # jitter: no herd
            log.info("reconnecting in %.2fs (attempt %d of %d)", delay, failures, cfg.reconnect_attempts)
            await anyio.sleep(delay)

    async def _run_connection(self, *, reconnecting: bool) -> _Ended:
        """One connection (TCP or WebSocket) from connect to loss; never raises for a network or protocol failure."""
        cfg = self.config
        port = cfg.ws_port if cfg.websocket else cfg.port
        stream: ByteStream
        try:
            with anyio.fail_after(cfg.connect_timeout):
                if cfg.websocket:
                    stream = await websocket.connect(cfg.host, port)
                else:
                    stream = await anyio.connect_tcp(cfg.host, port)
        except (OSError, TimeoutError) as exc:
            return _Ended(ConnectionLost(f"cannot connect to {cfg.host}:{port}: {exc}"), False, False)
        except ConnectionLost as exc:
            return _Ended(exc, False, False)
        transport = ClientTransport(cfg.transport, obfuscated=cfg.obfuscated, randbytes=self._randbytes,
                                    dc_id=cfg.dc_id)
        link = Link(stream, transport)
        established = False
        lost: list[ConnectionLost] = []
        try:
            async with stream, anyio.create_task_group() as tg:

                def lose(error: ConnectionLost) -> None:
                    lost.append(error)
                    tg.cancel_scope.cancel()

                try:
                    with anyio.fail_after(cfg.connect_timeout):
                        if self._key is None:
                            await self._adopt_key(await create_auth_key(
                                link, cfg.rsa_keys, dc_id=cfg.dc_id, legacy_rsa=cfg.legacy_rsa,
                                randbytes=self._randbytes, clock=self._clock,
                            ))
                except ConnectionLost as exc:
                    return _Ended(exc, False, False)
                except TimeoutError:
                    return _Ended(ConnectionLost(f"no auth key within {cfg.connect_timeout}s"), False, False)
                init = self._open_session(link)
                tg.start_soon(self._reader, link, lose, name="mtlab.client reader")
                tg.start_soon(self._writer, link, lose, name="mtlab.client writer")
                with anyio.move_on_after(cfg.connect_timeout):
                    await init.done.wait()
                if not init.done.is_set():
                    lose(ConnectionLost(f"no answer to initConnection within {cfg.connect_timeout}s"))
                elif init.error is not None:
                    lose(ConnectionLost(f"initConnection failed: {init.error}"))
                else:
                    established = True
                    self.server_config = cast(api.types.TypeConfig, init.value)
                    self._stats.connections += 1
                    self._stats.reconnects += reconnecting
                    if reconnecting and self._engine is not None:
                        self._engine.need_difference()  # what was pushed while we were away is lost
                    log.info("connected to %s:%d (%s%s%s), session %x", cfg.host, port, cfg.transport.value,
                             "+obfuscated" if cfg.obfuscated else "", " over WebSocket" if cfg.websocket else "",
                             link.session.session_id if link.session else 0)
                    if self._ready is not None:
                        self._ready.set()
                    if cfg.ping_interval is not None:
                        tg.start_soon(self._pinger, link, cfg.ping_interval, lose, name="mtlab.client pinger")
                    await anyio.sleep_forever()
        finally:
            self._close_session(link)
        error = lost[0] if lost else ConnectionLost("the client was closed")
        key_rejected = error.transport_error == TransportErrorCode.NOT_FOUND
        return _Ended(error, established, key_rejected)

    def _open_session(self, link: Link) -> _Call:
        """A fresh session on ``link``: initConnection first, then every call still waiting, in order."""
        if self._key is None:
            raise RuntimeError("a session needs an auth key")  # unreachable: _run_connection made one
        link.session = ClientSession(self._key, session_id=self._random_long(), salt=self._salt,
                                     randbytes=self._randbytes, time_offset=self._time_offset)
        cfg = self.config
        init = self._internal_call(link, api.functions.InvokeWithLayer(
            layer=LAYER,
            query=api.functions.InitConnection(
                api_id=cfg.api_id, device_model=cfg.device_model, system_version=cfg.system_version,
                app_version=cfg.app_version, system_lang_code=cfg.lang_code, lang_pack="",
                lang_code=cfg.lang_code, query=api.functions.help.GetConfig(),
            ),
        ))
        for call in self._calls:
            self._attach(link.session, call)
        self._link = link
        return init

    def _close_session(self, link: Link) -> None:
        """The connection is gone: keep what the session learned, detach the waiting calls from it."""
        self._link = None
        self._link_calls.clear()
        for call in self._calls:
            call.request = None
        s = self._stats
        s.frames_sent += link.frames_sent
        s.frames_received += link.frames_received
        session = link.session
        if session is not None:
            self._salt, self._time_offset = session.salt, session.time_offset
            s.resent += session.counters.resent
            s.salt_changes += session.counters.salt_changes
            s.time_corrections += session.counters.time_corrections
        link.close()

    # -- the connection's tasks -------------------------------------------------------------------------

    async def _reader(self, link: Link, lose: Callable[[ConnectionLost], None]) -> None:
        session = link.session
        if session is None:
            return
        try:
            while True:
                payload = await link.next_frame()
                try:
                    events = session.receive(payload, self._clock(), padded=link.padded)
                except RemoteProtocolError as exc:
                    raise ConnectionLost(f"the gateway sent a message we cannot accept: {exc}") from exc
                self._dispatch(events)
                if link.ack_deadline is None:
                    # What we just received may need an ack: it rides on our next message, or goes alone soon.
                    link.ack_deadline = anyio.current_time() + self.config.ack_delay
                    link.kick()
        except ConnectionLost as exc:
            lose(exc)

    async def _writer(self, link: Link, lose: Callable[[ConnectionLost], None]) -> None:
        session = link.session
        if session is None:
            return
        try:
            while True:
                deadline = link.ack_deadline
                if deadline is None:
                    await link.wait_for_kick()
                else:
                    with anyio.move_on_at(deadline):
                        await link.wait_for_kick()
                due = link.ack_deadline is not None and anyio.current_time() >= link.ack_deadline
                # Everything queued since the last round leaves now, in one container, pending acks in front.
                payloads = session.data_to_send(self._clock(), flush_acks=due)
                if payloads or due:
                    link.ack_deadline = None
                if payloads:
                    await link.send(payloads)
        except ConnectionLost as exc:
            lose(exc)

    async def _pinger(self, link: Link, interval: float, lose: Callable[[ConnectionLost], None]) -> None:
        """ping_delay_disconnect every ``interval``: keeps NATs open, lets the gateway drop us if we vanish,
        and tells us when the gateway vanished (no pong within the interval)."""
        delay = self.config.disconnect_delay
        while True:
            await anyio.sleep(interval)
            call = self._internal_call(link, mt.functions.PingDelayDisconnect(
                ping_id=self._random_long(), disconnect_delay=delay))
            try:
                with anyio.move_on_after(interval):
                    await call.done.wait()
            finally:
                self._forget_call(call)
            if not call.done.is_set():
                lose(ConnectionLost(f"no pong within {interval}s"))
                return

    # -- keys and the session file ----------------------------------------------------------------------

    async def _adopt_key(self, created: CreatedKey) -> None:
        self._key = AuthKey.from_bytes(created.auth_key)
        self._salt = created.server_salt
        self._time_offset = created.time_offset
        self._stats.handshakes += 1
        log.info("created auth key %s", created.auth_key_id.hex())
        await self._save_session()  # before the key is used: a crash must not lose a key the server has

    async def _forget_key(self) -> None:
        if self._key is not None:
            log.info("the gateway does not know auth key %s: forgetting it", self._key.id.hex())
            self._stats.keys_forgotten += 1
        self._key = None
        self._salt = 0
        self._stored_updates = None
        path = self.config.session_file
        if path is not None:
            await anyio.to_thread.run_sync(session_file.delete, path)

    async def _load_session(self) -> None:
        path = self.config.session_file
        if path is None:
            return
        stored = await anyio.to_thread.run_sync(session_file.load, path)
        if stored is None:
            return
        if stored.dc_id != self.config.dc_id:
            log.info("session file %s is for DC %d, not %d: ignoring it", path, stored.dc_id, self.config.dc_id)
            return
        self._key, self._salt, self._time_offset = stored.auth_key, stored.server_salt, stored.time_offset
        self._stored_updates = stored.updates
        log.info("reusing auth key %s from %s", stored.auth_key.id.hex(), path)

    async def _save_session(self) -> None:
        path, key = self.config.session_file, self._key
        if path is None or key is None:
            return
        link = self._link
        if link is not None and link.session is not None:
            self._salt, self._time_offset = link.session.salt, link.session.time_offset
        engine = self._engine
        if engine is not None and self._self_id is not None:
            saved = engine.saved()
            if saved is not None:
                self._stored_updates = (self._self_id, saved)
        stored = session_file.StoredSession(self.config.dc_id, key, self._salt, self._time_offset,
                                            self._stored_updates)
        await anyio.to_thread.run_sync(session_file.save, path, stored, self._randbytes(8).hex())

    def _random_long(self) -> int:
        value: int = struct.unpack("<q", self._randbytes(8))[0]
        return value


class _UpdateIterator:
    """``async for update in client.updates()``."""

    def __init__(self, client: Client, queue: UpdateQueue) -> None:
        self._client = client
        self._queue = queue

    def __aiter__(self) -> _UpdateIterator:
        return self

    async def __anext__(self) -> UpdateReceived:
        try:
            while (update := await self._queue.get()) is None:
                pass  # a wake-up meant for the ordered stream's engine
            return update
        except anyio.EndOfStream:
            failure = self._client._failure
            if failure is not None:
                raise failure.copy() from None
            raise StopAsyncIteration from None


class _OrderedIterator:
    """``async for event in client.ordered_updates()``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __aiter__(self) -> _OrderedIterator:
        return self

    async def __anext__(self) -> UpdateEvent:
        client = self._client
        if client._engine is None:
            await client.start_updates()
        engine = client._engine
        if engine is None:  # unreachable: start_updates made it or raised
            raise RuntimeError("the ordered stream did not start")
        try:
            return await engine.next_event()
        except anyio.EndOfStream:
            if engine.failure is not None:
                raise engine.failure from None
            failure = client._failure
            if failure is not None:
                raise failure.copy() from None
            raise StopAsyncIteration from None
