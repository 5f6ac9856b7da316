"""The client's side of one MTProto session (core.telegram.org/mtproto/description and /service_messages).

``invoke`` queues a query and returns a ``Request`` handle; ``data_to_send`` seals the queue (with pending acks)
into transport payloads; ``receive`` opens one payload from the server and returns events: results matched to
their requests, errors, updates. The session reacts to the service messages itself, as a client must:

- bad_server_salt: take the new salt and resend the refused messages under new msg_ids;
- bad_msg_notification 16/17: correct the clock offset from the notification's own msg_id, resend;
  32/33: move the seq_no counter, resend; anything else fails the request (it is a client bug);
- new_session_created: take the salt, report it (the app should then fetch what it missed);
- pong and future_salts answer the ping / get_future_salts that asked for them.

A resent message never reuses its msg_id; the ``Request`` keeps pointing at whichever id is current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtproto.errors import RemoteProtocolError
from mtproto.session.common import (
    GZIP_PACKED_ID,
    MAX_ACK_IDS,
    MSG_CONTAINER_ID,
    RPC_ERROR_ID,
    RPC_RESULT_ID,
    Inner,
    InvalidContainer,
    SeqCounter,
    batches,
    constructor_of,
    pack_container,
    pack_msgs_ack,
    parse_container,
)
from mtproto.session.envelope import AuthKey, Plain, open_message, seal
from mtproto.session.msgid import BadMsgCode, MsgIdGenerator, MsgIdWindow
from mtproto.tl import mt
from mtproto.tl.runtime import RawObject, Reader, TLDecodeError, TLFunction, TLObject, UnknownConstructorError

RandBytes = Callable[[int], bytes]


@dataclass(eq=False, slots=True)
class Request:
    """One query in flight. ``msg_id`` changes when the session resends it."""

    query: TLFunction[Any]
    body: bytes
    msg_id: int = 0
    container_id: int = 0
    sent: bool = False


# -- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    request: Request
    value: Any


@dataclass(frozen=True, slots=True)
class RpcErrorReceived:
    request: Request
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The server refused the message with a bad_msg_notification the client cannot fix by resending."""

    request: Request
    code: int  # a BadMsgCode


@dataclass(frozen=True, slots=True)
class UpdateReceived:
    """A message the client did not ask for (updates). Unknown constructors arrive as ``RawObject``."""

    obj: TLObject


@dataclass(frozen=True, slots=True)
class SessionCreated:
    first_msg_id: int
    unique_id: int


Event = Result | RpcErrorReceived | RequestFailed | UpdateReceived | SessionCreated


@dataclass(slots=True)
class _Counters:
    """How often the session had to recover; a student watching a flaky link reads these."""

    resent: int = 0
    salt_changes: int = 0
    time_corrections: int = 0


class ClientSession:
    def __init__(
        self, key: AuthKey, *, session_id: int, salt: int, randbytes: RandBytes, time_offset: int = 0
    ) -> None:
        self.key = key
        self.session_id = session_id
        self.salt = salt
        self._randbytes = randbytes
        self._ids = MsgIdGenerator(time_offset)
        self._seq = SeqCounter()
        self._window = MsgIdWindow()
        self._queue: list[Request] = []
        self._in_flight: dict[int, Request] = {}  # current msg_id -> request
        self._containers: dict[int, list[int]] = {}  # container msg_id -> inner msg_ids
        self._acks: list[int] = []
        self.counters = _Counters()

    @property
    def time_offset(self) -> int:
        return self._ids.offset

    # -- output -----------------------------------------------------------------------------------------

    def invoke(self, query: TLFunction[Any]) -> Request:
        request = Request(query, query.to_bytes())
        self._queue.append(request)
        return request

    def data_to_send(self, now: float, *, flush_acks: bool = False) -> list[bytes]:
        if not self._queue and not (flush_acks and self._acks):
            return []
        bodies: list[bytes] = []
        owners: list[Request | None] = []
        while self._acks:
            chunk, self._acks = self._acks[:MAX_ACK_IDS], self._acks[MAX_ACK_IDS:]
            bodies.append(pack_msgs_ack(chunk))
            owners.append(None)
        for queued in self._queue:
            bodies.append(queued.body)
            owners.append(queued)
        self._queue = []
        payloads: list[bytes] = []
        for group in batches(bodies):
            inner: list[Inner] = []
            for i in group:
                content = owners[i] is not None
                m = Inner(self._ids.next(now), self._seq.next(content), bodies[i])
                inner.append(m)
                request = owners[i]
                if request is not None:
                    request.msg_id, request.sent = m.msg_id, True
                    self._in_flight[m.msg_id] = request
            if len(inner) == 1:
                m = inner[0]
            else:
                m = Inner(self._ids.next(now), self._seq.next(False), pack_container(inner))
                self._containers[m.msg_id] = [x.msg_id for x in inner]
                for x in inner:
                    owner = self._in_flight.get(x.msg_id)
                    if owner is not None:
                        owner.container_id = m.msg_id
            plain = Plain(self.salt, self.session_id, m.msg_id, m.seq_no, m.body)
            payloads.append(seal(self.key, plain, self._randbytes, from_client=True))
        return payloads

    def forget(self, request: Request) -> None:
        """Stop tracking ``request`` (its caller gave up): it is not sent if still queued, not resent, and a late
        answer is ignored. The server may still run it."""
        if request in self._queue:
            self._queue.remove(request)
        if self._in_flight.get(request.msg_id) is request:
            del self._in_flight[request.msg_id]

    def _resend(self, bad_msg_id: int) -> list[Request]:
        """Queue again whatever was sent under ``bad_msg_id`` (a message or a whole container)."""
        ids = self._containers.pop(bad_msg_id, [bad_msg_id])
        again = [r for r in (self._in_flight.pop(i, None) for i in ids) if r is not None]
        for request in again:
            request.sent = False
            request.container_id = 0
        self._queue[:0] = again
        self.counters.resent += len(again)
        return again

    # -- input ------------------------------------------------------------------------------------------

    def receive(self, payload: bytes, now: float, *, padded: bool = False) -> list[Event]:
        """Open one payload from the server (``padded``: it came over padded intermediate)."""
        msg = open_message(self.key, payload, from_client=False, padded=padded)
        if msg.session_id != self.session_id:
            raise RemoteProtocolError(f"message for session {msg.session_id}, ours is {self.session_id}")
        if msg.msg_id & 3 not in (1, 3):
            raise RemoteProtocolError(f"server msg_id {msg.msg_id} is not 1 or 3 mod 4")
        events: list[Event] = []
        if constructor_of(msg.body) == MSG_CONTAINER_ID:
            try:
                messages = parse_container(msg.body, msg.msg_id)
            except InvalidContainer as exc:
                raise RemoteProtocolError(f"server sent an invalid container: {exc}") from None
        else:
            messages = [Inner(msg.msg_id, msg.seq_no, msg.body)]
        if len(messages) > 1 or messages[0].msg_id != msg.msg_id:
            if msg.msg_id in self._window:
                return events  # a replayed container
            self._window.add(msg.msg_id, msg.seq_no)
        for m in messages:
            if m.msg_id in self._window or self._window.too_old(m.msg_id):
                continue  # duplicates and ids below everything remembered are ignored
            self._window.add(m.msg_id, m.seq_no)
            if m.seq_no & 1:  # marked content-related by the server: acknowledge it
                self._acks.append(m.msg_id)
            self._dispatch(m.msg_id, m.body, now, events)
        return events

    def _dispatch(self, msg_id: int, body: bytes, now: float, events: list[Event]) -> None:
        cid = constructor_of(body)
        if cid == GZIP_PACKED_ID:
            body = Reader(body, 4).read_unpacked()
            cid = constructor_of(body)
        if cid == RPC_RESULT_ID:
            self._on_rpc_result(body, events)
            return
        try:
            obj = Reader(body).read_object()
        except UnknownConstructorError:
            events.append(UpdateReceived(RawObject(body)))
            return
        if isinstance(obj, mt.types.Pong):
            self._complete(obj.msg_id, obj, events)
        elif isinstance(obj, mt.types.FutureSalts):
            self._complete(obj.req_msg_id, obj, events)
        elif isinstance(obj, mt.types.BadServerSalt):
            # Only for a message we did send: anyone could otherwise push a salt on us.
            if obj.bad_msg_id in self._in_flight or obj.bad_msg_id in self._containers:
                self.salt = obj.new_server_salt
                self.counters.salt_changes += 1
                self._resend(obj.bad_msg_id)
        elif isinstance(obj, mt.types.BadMsgNotification):
            self._on_bad_msg(msg_id, obj, now, events)
        elif isinstance(obj, mt.types.NewSessionCreated):
            self.salt = obj.server_salt
            events.append(SessionCreated(obj.first_msg_id, obj.unique_id))
        elif isinstance(obj, mt.types.MsgsAck):
            pass  # our requests stay in flight until answered: an ack only says the server has them
        elif isinstance(obj, (mt.types.MsgDetailedInfo, mt.types.MsgNewDetailedInfo)):
            self._acks.append(obj.answer_msg_id)
        elif isinstance(obj, (mt.types.MsgsStateInfo, mt.types.MsgsAllInfo)):
            pass  # answers to state requests this session never makes: session-level, not updates for the app
        else:
            events.append(UpdateReceived(obj))

    def _on_rpc_result(self, body: bytes, events: list[Event]) -> None:
        r = Reader(body, 4)
        req_msg_id = r.read_long()
        request = self._in_flight.get(req_msg_id)
        if request is None:
            return  # an answer to something we no longer wait for (resent and answered twice)
        if r.remaining() >= 4 and constructor_of(body[r.pos : r.pos + 4]) == RPC_ERROR_ID:
            error = r.read_object()
            if isinstance(error, mt.types.RpcError):
                del self._in_flight[req_msg_id]
                events.append(RpcErrorReceived(request, error.error_code, error.error_message))
                return
        try:
            value = r.read_result(request.query.read_result)
        except TLDecodeError as exc:
            raise RemoteProtocolError(f"answer to {request.query.TL_NAME} does not parse: {exc}") from None
        self._complete(req_msg_id, value, events)

    def _complete(self, req_msg_id: int, value: Any, events: list[Event]) -> None:
        request = self._in_flight.pop(req_msg_id, None)
        if request is not None:
            events.append(Result(request, value))

    def _on_bad_msg(self, msg_id: int, obj: mt.types.BadMsgNotification, now: float, events: list[Event]) -> None:
        code = obj.error_code
        if code in (BadMsgCode.MSG_ID_TOO_LOW, BadMsgCode.MSG_ID_TOO_HIGH):
            # The notification's own msg_id carries the server's clock.
            self._ids.correct((msg_id >> 32) - int(now))
            self.counters.time_corrections += 1
            self._resend(obj.bad_msg_id)
        elif code == BadMsgCode.SEQ_NO_TOO_LOW:
            self._seq.content_count += 16
            self._resend(obj.bad_msg_id)
        elif code == BadMsgCode.SEQ_NO_TOO_HIGH:
            self._seq.content_count = max(0, self._seq.content_count - 8)
            self._resend(obj.bad_msg_id)
        elif code == BadMsgCode.MSG_ID_TOO_OLD:
            self._resend(obj.bad_msg_id)  # the server forgot what it had seen: a fresh id is all it needs
        else:
            ids = self._containers.pop(obj.bad_msg_id, [obj.bad_msg_id])
            for i in ids:
                request = self._in_flight.pop(i, None)
                if request is not None:
                    events.append(RequestFailed(request, code))

__all__ = [
    "ClientSession",
    "Event",
    "Request",
    "RequestFailed",
    "Result",
    "RpcErrorReceived",
    "SessionCreated",
    "UpdateReceived",
]
