"""The gateway's side of live push: which signed-in sessions it holds, and the stream the updates service feeds.

A session subscribes by making a call (not wrapped in ``invokeWithoutUpdates``) with a signed-in key: from then on
the updates service's pushes for that user are encrypted in that session and written to the connection that
carried its last call (a client that reconnects moves its session to the new connection with its next call).
Signing in or out drops the key's subscriptions (its next call subscribes again, as the new user); a connection
that closes drops its own.

Towards the updates service (``services/updates/push.py``) the gateway keeps one ``push.attach`` stream with a
random ``gateway_id``. Once the service answers ``push.ok`` on it, the gateway registers every user it holds
(``push.online``, with the pts it last delivered to each, so a restarted updates service pushes what it missed),
then only changes, batched. While the updates service is away the gateway keeps serving: clients get no pushes
and catch up with ``updates.getDifference``; the stream is attached again as soon as the service is back. A
gateway that dies takes its stream with it, and the service forgets its registrations.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import Protocol

import trio

from mtproto.session import ServerSession
from mtproto.tl.internal.functions import push as push_fn
from mtproto.tl.internal.types import push
from mtproto.tl.runtime import Reader, TLDecodeError
from services.common.rpc import RpcClient, RpcError, context
from services.gateway import metrics
from services.gateway.keys import key_id_int

log = logging.getLogger("mtlab.gateway.push")

YIELD_EVERY = 200  # users a push is encrypted for between two checkpoints
SessionKey = tuple[bytes, int]  # (auth key id, session id), as Gateway.sessions is keyed


class Pushable(Protocol):
    """A connection a push can be written to (services/gateway/server.py's ``Connection``)."""

    def push(self, session: ServerSession) -> None: ...


class Push:
    def __init__(self, sessions: dict[SessionKey, ServerSession], client: RpcClient | None = None, *,
                 retry: float = 0.2) -> None:
        self.sessions = sessions
        self.client = client
        self.retry = retry
        self.gateway_id = secrets.randbits(63)
        self.bound: dict[SessionKey, tuple[int, Pushable]] = {}  # session -> (user, connection)
        self.by_user: dict[int, dict[SessionKey, None]] = {}
        self.by_connection: dict[Pushable, set[SessionKey]] = {}
        self.delivered: dict[int, int] = {}  # user -> the highest pts a push for them named
        self.attached = trio.Event()
        self._changed: dict[int, None] = {}
        self._wake = trio.Event()

    # -- subscriptions ------------------------------------------------------------------------------------

    def bind(self, user_id: int, key: SessionKey, connection: Pushable) -> None:
        """``key``'s session, signed in as ``user_id``, now gets pushes on ``connection``."""
        current = self.bound.get(key)
        if current is not None:
            if current[0] == user_id and current[1] is connection:
                return
            self.unbind(key)
        self.bound[key] = (user_id, connection)
        self.by_connection.setdefault(connection, set()).add(key)
        sessions = self.by_user.setdefault(user_id, {})
        if not sessions:
            self._change(user_id)
        sessions[key] = None
        metrics.PUSH_SESSIONS.set(len(self.bound))

    def unbind(self, key: SessionKey) -> None:
        bound = self.bound.pop(key, None)
        if bound is None:
            return
        user_id, connection = bound
        keys = self.by_connection.get(connection)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_connection[connection]
        sessions = self.by_user.get(user_id)
        if sessions is not None:
            sessions.pop(key, None)
            if not sessions:
                del self.by_user[user_id]
                self.delivered.pop(user_id, None)
                self._change(user_id)
        metrics.PUSH_SESSIONS.set(len(self.bound))

    def unbind_key(self, auth_key_id: bytes) -> None:
        """The key signed in or out: its sessions subscribe again with their next call."""
        for key in [k for k in self.bound if k[0] == auth_key_id]:
            self.unbind(key)

    def drop_connection(self, connection: Pushable) -> None:
        for key in list(self.by_connection.get(connection, ())):
            self.unbind(key)

    def _change(self, user_id: int) -> None:
        self._changed[user_id] = None
        self._wake.set()

    # -- delivery -----------------------------------------------------------------------------------------

    async def deliver(self, d: push.Deliver) -> int:
        """Encrypt ``d.updates`` in every subscribed session it is for; how many got it.

        A channel post may be for thousands of sessions: every ``YIELD_EVERY`` of them the other tasks run (the
        connections' writers send what is ready, other clients' calls go on), instead of all waiting for the last
        encryption."""
        sent = 0
        for n, user_id in enumerate(d.user_ids):
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await trio.sleep(0)
            sessions = self.by_user.get(user_id)
            if not sessions:
                continue
            for key in list(sessions):
                if d.auth_key_id is not None and key_id_int(key[0]) != d.auth_key_id:
                    continue
                session = self.sessions.get(key)
                if session is None:  # the gateway forgot the session (too many): so does push
                    self.unbind(key)
                    continue
                session.send_update(d.updates)
                self.bound[key][1].push(session)
                sent += 1
            if d.pts is not None and d.pts > self.delivered.get(user_id, 0):
                self.delivered[user_id] = d.pts
        metrics.PUSHES.inc(sent)
        return sent

    # -- the stream ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the push stream attached for as long as the gateway runs."""
        if self.client is None:
            return
        while True:
            await self.client.wait_connected()
            try:
                async with trio.open_nursery() as nursery:
                    try:
                        await self._attach(nursery)
                    except RpcError as exc:  # the service went away (or ended the stream): attach again
                        log.info("push stream ended: %s", exc.message)
                    nursery.cancel_scope.cancel()
            except Exception:  # a bug here must cost pushes, never the gateway and its connections
                log.exception("push stream failed; attaching again")
            self.attached = trio.Event()
            metrics.PUSH_ATTACHED.set(0)
            await trio.sleep(self.retry)

    async def _attach(self, nursery: trio.Nursery) -> None:
        assert self.client is not None  # noqa: S101 - run() checked
        query = push_fn.Attach(gateway_id=self.gateway_id).to_bytes()
        async with contextlib.aclosing(self.client.stream(query, context())) as items:
            async for item in items:
                try:
                    obj = Reader(item).read_object()
                except (TLDecodeError, ValueError):
                    log.warning("a push item that is not TL: ignored")
                    continue
                if isinstance(obj, push.Deliver):
                    await self.deliver(obj)
                elif isinstance(obj, push.Ok):
                    log.info("push stream attached to the updates service (gateway %x)", self.gateway_id)
                    metrics.PUSH_ATTACHED.set(1)
                    self.attached.set()
                    nursery.start_soon(self._register)

    async def _register(self) -> None:
        """Every user first, then the changes as they come (batched while a call is on its way)."""
        assert self.client is not None  # noqa: S101 - run() checked
        self._changed = dict.fromkeys(self.by_user)
        while True:
            if not self._changed:
                self._wake = trio.Event()
                await self._wake.wait()
            changed, self._changed = list(self._changed), {}
            online = [u for u in changed if u in self.by_user]
            offline = [u for u in changed if u not in self.by_user]
            try:
                for i in range(0, len(online), 10_000):
                    part = online[i:i + 10_000]
                    await self.client.call(push_fn.Online(gateway_id=self.gateway_id, user_ids=part, pts=[
                        self.delivered.get(u, 0) for u in part]).to_bytes(), context())
                for i in range(0, len(offline), 10_000):
                    await self.client.call(push_fn.Offline(gateway_id=self.gateway_id,
                                                           user_ids=offline[i:i + 10_000]).to_bytes(), context())
            except RpcError as exc:  # if the service went away the stream ends too, and run() starts over
                log.info("push registration failed (%s); again shortly", exc.message)
                for u in changed:
                    self._changed.setdefault(u, None)
                await trio.sleep(self.retry)
