"""The client's updates: the inbox of what the server pushes, and the engine that turns it into the ordered stream
an application reads (core.telegram.org/api/updates).

``UpdateQueue`` is the inbox. Bounded, and when it is full the oldest update is dropped, never the connection's
reader blocked. A reader that waited for a slow consumer would stop reading the socket, and every ``invoke``
waiting for its answer behind that update would hang with it: one forgotten ``updates()`` loop would freeze the
whole client. Dropping is safe because pushed updates are best effort by design: the per-user update log is the
truth, and a client that sees a gap (``dropped`` grew, or pts jumped) catches up with ``updates.getDifference``.

``UpdateEngine`` is that catching up, the I/O around the sans-IO ``UpdateState`` (``update_state.py``): one
task that reads the inbox, feeds the state machine, makes the calls it asks for (getState, getDifference,
getChannelDifference) and queues what it applies for ``OrderedUpdates``, the application's iterator. The
application's own calls feed it too (``own_result``), and the client tells it when something may have been
missed (``need_difference``: new_session_created, a reconnect). When the application reads slower than updates
come, the engine waits for it and stops reading the inbox: the inbox then drops, and the engine recovers what
was dropped with getDifference once the application has caught up. Nothing the application is handed is lost
or doubled; only the inbox is lossy.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from mtlab.client.errors import ClientError, RpcError
from mtlab.client.update_state import Event, Outcome, SavedState, Update, UpdateState
from mtproto.session.client import UpdateReceived
from mtproto.tl import api
from mtproto.tl.runtime import TLFunction

log = logging.getLogger("mtlab.client")

Invoke = Callable[[TLFunction[Any]], Awaitable[Any]]
RETRY_MAX = 30.0  # seconds between two tries of a getDifference the server failed, at most


class UpdateQueue:
    """Updates waiting for ``Client.updates()`` or the engine; ``push`` never blocks, ``dropped`` counts what was
    lost. ``wake`` puts a ``None`` in line: the engine's reader wakes up to look at its state again."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[UpdateReceived | None](size)
        self.received = 0
        self.dropped = 0

    def push(self, update: UpdateReceived) -> None:
        self.received += 1
        self._put(update)

    def wake(self) -> None:
        self._put(None)

    def _put(self, item: UpdateReceived | None) -> None:
        while True:
            try:
                self._send.send_nowait(item)
                return
            except anyio.WouldBlock:
                try:
                    if self._receive.receive_nowait() is not None:  # make room: the oldest goes
                        self.dropped += 1
                except anyio.WouldBlock:  # a consumer took one in between: try again
                    pass
            except anyio.ClosedResourceError:  # ended: nobody will read it
                return

    async def get(self) -> UpdateReceived | None:
        """The oldest waiting update (None: a wake-up); raises ``anyio.EndOfStream`` once closed and empty."""
        try:
            return await self._receive.receive()
        except anyio.ClosedResourceError:
            raise anyio.EndOfStream from None

    def end(self) -> None:
        """No more updates will come: consumers get what is left, then the end."""
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class UpdateEngine:
    """Runs an ``UpdateState`` against the server: ``run`` is its task (in the client's task group)."""

    def __init__(self, state: UpdateState, inbox: UpdateQueue, invoke: Invoke, *, buffer: int) -> None:
        self.state = state
        self.inbox = inbox
        self.invoke = invoke
        self.buffer = buffer  # events the application has not read yet, at most (then the engine waits)
        self.ready = anyio.Event()  # the first state is in (or the engine ended)
        self.failure: BaseException | None = None  # why it ended, if not with the client
        self.ended = False
        self.delivered: SavedState | None = state.snapshot()  # the state as far as the application has read
        self._events: deque[Event | SavedState] = deque()  # a SavedState in line: the state after what is before it
        self._readable = anyio.Event()
        self._room = anyio.Event()
        self._dropped = inbox.dropped
        self.differences = 0  # getDifference / getChannelDifference calls made (for stats and tests)

    # -- told by the client -------------------------------------------------------------------------------

    def need_difference(self) -> None:
        """Something may have been missed: new_session_created, a reconnect."""
        self.state.need_difference()
        self.inbox.wake()

    def own_result(self, query: TLFunction[Any], result: Any) -> None:
        """The answer to one of the application's calls: it may move pts (and carry the update itself)."""
        now = anyio.current_time()
        if isinstance(result, api.types.TypeUpdates):
            self._emit(self.state.receive(result, now, request=query))
        elif isinstance(result, api.types.messages.AffectedMessages):
            self._emit(self.state.receive_affected(query, result.pts, result.pts_count, now))
        else:
            return
        self.inbox.wake()  # a gap it opened has a deadline the engine must wait for

    # -- the task -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                await self._calls()
                while len(self._events) >= self.buffer:  # the application is behind: let the inbox drop
                    self._room = anyio.Event()
                    await self._room.wait()
                deadline = self.state.deadline()
                item: UpdateReceived | None = None
                with anyio.move_on_at(math.inf if deadline is None else deadline):
                    item = await self.inbox.get()
                if self.inbox.dropped != self._dropped:
                    self._dropped = self.inbox.dropped
                    self.state.need_difference()
                if item is not None and isinstance(item.obj, api.types.TypeUpdates):
                    self._emit(self.state.receive(item.obj, anyio.current_time()))
        except anyio.EndOfStream:
            pass  # the client closed, or lost its connection for good (the iterator says which)
        except ClientError as exc:  # signed out (401), the connection lost for good: the stream ends with it
            self.failure = exc
        finally:
            self.ended = True
            self.ready.set()
            self._readable.set()

    async def _calls(self) -> None:
        """Every call the state asks for now, one after the other."""
        retry = 1.0
        while (request := self.state.next_request(anyio.current_time())) is not None:
            if isinstance(request, (api.functions.updates.GetDifference, api.functions.updates.GetChannelDifference)):
                self.differences += 1
            try:
                result = await self.invoke(request)
            except RpcError as exc:
                log.info("%s failed: %s", request.TL_NAME, exc)
                self._emit(self.state.failed(request, exc.message, anyio.current_time()))
                if exc.code in (401, 403) and not isinstance(request, api.functions.updates.GetChannelDifference):
                    raise  # signed out: nothing to catch up with
                if isinstance(request, api.functions.updates.GetChannelDifference) and exc.code == 400:
                    continue  # the state forgot that channel (a Reset is in line)
                await anyio.sleep(float(exc.seconds) if exc.seconds is not None else retry)
                retry = min(RETRY_MAX, retry * 2)
                continue
            self._emit(self.state.answer(request, result, anyio.current_time()))
            if self.state.initialized:
                self.ready.set()

    def _emit(self, outcome: Outcome) -> None:
        if outcome.apply:
            self._events.extend(outcome.apply)
        snapshot = self.state.snapshot()
        if snapshot is not None:
            self._events.append(snapshot)
        self._readable.set()

    # -- the application's side ---------------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next ordered event; raises ``anyio.EndOfStream`` when the engine has ended and all is read."""
        while True:
            while self._events:
                item = self._events.popleft()
                if len(self._events) < self.buffer:
                    self._room.set()
                if isinstance(item, SavedState):
                    self.delivered = item
                    continue
                if isinstance(item, Update) and item.entry is not None and item.pts and self.delivered is not None:
                    self.delivered = self.delivered.advanced(item.entry, item.pts)
                return item
            if self.ended:
                raise anyio.EndOfStream
            self._readable = anyio.Event()
            await self._readable.wait()

    def saved(self) -> SavedState | None:
        """What to keep for the next run: the state as far as the application has read (a restarted client asks
        getDifference from there, so what it had not read yet comes again, and nothing it read does)."""
        if not self._events:
            return self.state.snapshot() or self.delivered
        return self.delivered
