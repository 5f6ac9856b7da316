"""The server's side of one MTProto session: decrypted messages in, events out, encrypted payloads out.

core.telegram.org/mtproto/description (sessions, msg_id, seq_no, salts), /mtproto/service_messages and
/mtproto/service_messages_about_messages. One ``ServerSession`` is one (auth key, session_id) pair; the
gateway keeps them, feeds each ``Plain`` that ``open_message`` returned to ``receive``, acts on the events,
and writes what ``data_to_send`` returns. Service messages the session layer can answer itself (ping,
get_future_salts, msgs_state_req, msg_resend_req, rpc_drop_answer) are answered here; everything else that is
content-related reaches the gateway as an ``RpcCall`` with the query's raw bytes, since the gateway routes a
query without decoding it.

The order of checks for each message follows the security guidelines: msg_id low bits, then time window,
duplicate and "too old", then salt, then seq_no. A message that fails one is answered with
bad_msg_notification (or bad_server_salt) and not processed; nothing here closes the connection except a
failed decryption, which happens before a session is involved.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from mtproto.errors import RemoteProtocolError
from mtproto.session.common import (
    GZIP_PACKED_ID,
    MAX_ACK_IDS,
    MSG_CONTAINER_ID,
    Inner,
    InvalidContainer,
    SeqCounter,
    batches,
    constructor_of,
    pack_container,
    pack_msgs_ack,
    pack_rpc_result,
    parse_container,
    seq_parity_problem,
)
from mtproto.session.envelope import AuthKey, Plain, seal
from mtproto.session.msgid import BadMsgCode, MsgIdGenerator, MsgIdWindow, time_problem
from mtproto.session.salts import SaltPolicy
from mtproto.tl import mt
from mtproto.tl.runtime import Reader, TLDecodeError, TLObject

RandBytes = Callable[[int], bytes]


class _Skip(Enum):
    """A verdict that is not an error: a duplicate is dropped without a notification."""

    DUPLICATE = "duplicate"

#: Outgoing content-related messages kept for msg_resend_req until the client acks them: at most this many, and
#: at most ``RESEND_BYTES`` of them, so that answers of a megabyte each (file chunks, which the client would
#: rather ask for again: upload.getFile is idempotent) cannot pile up to 256 MiB in one session.
RESEND_MEMORY = 256
RESEND_BYTES = 1024 * 1024


# -- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A query for the gateway to route. ``body`` is the boxed query, wrappers included."""

    msg_id: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Acked:
    msg_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DisconnectAfter:
    """ping_delay_disconnect: close the connection if nothing arrives for ``seconds``."""

    seconds: int


@dataclass(frozen=True, slots=True)
class DestroySessionRequested:
    """destroy_session for another session of this key; answer with ``answer_destroy_session``."""

    msg_id: int
    session_id: int


@dataclass(frozen=True, slots=True)
class RpcDropped:
    """rpc_drop_answer: the client no longer wants the answer to ``req_msg_id`` (already answered unknown)."""

    req_msg_id: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message was refused with a bad_msg_notification (for logs and metrics)."""

    msg_id: int
    code: BadMsgCode


Event = RpcCall | Acked | DisconnectAfter | DestroySessionRequested | RpcDropped | Rejected


@dataclass(slots=True)
class _Out:
    body: bytes
    content_related: bool
    response: bool  # server msg_id 1 mod 4 when answering a client message, 3 otherwise


class ServerSession:
    def __init__(
        self,
        key: AuthKey,
        session_id: int,
        *,
        salts: SaltPolicy,
        randbytes: RandBytes,
        handshake_salt: int | None = None,
        handshake_salt_until: float = 0.0,
        min_msg_id: int = 0,
    ) -> None:
        self.key = key
        self.session_id = session_id
        self._salts = salts
        self._randbytes = randbytes
        self._handshake_salt = handshake_salt
        self._handshake_salt_until = handshake_salt_until
        self._ids = MsgIdGenerator()
        self._seq = SeqCounter()
        # ``min_msg_id``: the highest id a forgotten earlier incarnation of this session saw. Without it, a
        # message captured before the gateway dropped the session could be replayed into a fresh one.
        self._window = MsgIdWindow(floor=min_msg_id)
        self._queue: list[_Out] = []
        self._acks: list[int] = []
        self._unacked: OrderedDict[int, bytes] = OrderedDict()  # our msg_id -> body, for msg_resend_req
        self._unacked_bytes = 0
        self._announced = False

    # -- input ------------------------------------------------------------------------------------------

    def receive(self, msg: Plain, now: float) -> list[Event]:
        """Handle one decrypted message of this session."""
        if msg.session_id != self.session_id:
            raise RemoteProtocolError("message for another session handed to this one")
        events: list[Event] = []
        if not self._announced:
            # The first message of a session we did not know: tell the client, so it refetches what it may
            # have missed (core.telegram.org/mtproto/service_messages, "New Session Creation Notification").
            self._announced = True
            created = mt.types.NewSessionCreated(
                first_msg_id=msg.msg_id,
                unique_id=struct.unpack("<q", self._randbytes(8))[0],
                server_salt=self._salts.current(self.key.id, now),
            )
            self._queue.append(_Out(created.to_bytes(), True, False))
        is_container = constructor_of(msg.body) == MSG_CONTAINER_ID
        code = self._check(msg.msg_id, msg.seq_no, msg.body, now, msg.salt, container=is_container)
        if code is not None:
            return self._reject(msg.msg_id, msg.seq_no, code, now, events)
        if not is_container:
            self._window.add(msg.msg_id, msg.seq_no)
            self._dispatch(msg.msg_id, msg.seq_no, msg.body, now, events)
            return events
        try:
            inner = parse_container(msg.body, msg.msg_id)
        except InvalidContainer:
            return self._reject(msg.msg_id, msg.seq_no, BadMsgCode.INVALID_CONTAINER, now, events)
        self._window.add(msg.msg_id, msg.seq_no)
        for m in inner:
            # No time check inside a container: an old message may be resent "in a container with a higher
            # identifier" (core.telegram.org/mtproto/description), and the container's own id was checked.
            inner_code = self._check(m.msg_id, m.seq_no, m.body, None, None)
            if inner_code is not None:
                self._reject(m.msg_id, m.seq_no, inner_code, now, events)
                continue
            self._window.add(m.msg_id, m.seq_no)
            self._dispatch(m.msg_id, m.seq_no, m.body, now, events)
        return events

    def _check(
        self, msg_id: int, seq_no: int, body: bytes, now: float | None, salt: int | None, *, container: bool = False
    ) -> BadMsgCode | _Skip | None:
        """The verdict on one message; ``now`` None skips the time window (messages inside a container)."""
        if msg_id & 3:
            return BadMsgCode.MSG_ID_BAD_LOW_BITS
        problem = time_problem(msg_id, now) if now is not None else None
        if problem is not None:
            return problem
        known_seq = self._window.seq_of(msg_id)
        if known_seq is not None:
            # An exact replay is dropped silently; a container taking the id of a content message is code 19.
            return BadMsgCode.CONTAINER_MSG_ID_REUSED if container and known_seq & 1 else _Skip.DUPLICATE
        if self._window.too_old(msg_id):
            return BadMsgCode.MSG_ID_TOO_OLD
        if salt is not None and now is not None and not self._salt_ok(salt, now):
            return BadMsgCode.BAD_SERVER_SALT
        parity = seq_parity_problem(body, seq_no)
        if parity is not None:
            return BadMsgCode(parity)
        return self._window.seq_problem(msg_id, seq_no)

    def _salt_ok(self, salt: int, now: float) -> bool:
        if self._salts.is_valid(self.key.id, salt, now):
            return True
        return salt == self._handshake_salt and now < self._handshake_salt_until

    def _reject(
        self, msg_id: int, seq_no: int, code: BadMsgCode | _Skip, now: float, events: list[Event]
    ) -> list[Event]:
        if code is _Skip.DUPLICATE:
            # A duplicate is dropped silently; if it needed an ack, the first ack may have been lost.
            if seq_no & 1:
                self._acks.append(msg_id)
            return events
        notice: TLObject
        if code == BadMsgCode.BAD_SERVER_SALT:
            notice = mt.types.BadServerSalt(
                bad_msg_id=msg_id, bad_msg_seqno=seq_no, error_code=int(code),
                new_server_salt=self._salts.current(self.key.id, now),
            )
        else:
            notice = mt.types.BadMsgNotification(bad_msg_id=msg_id, bad_msg_seqno=seq_no, error_code=int(code))
        # Not content-related, so the client need not ack it; its msg_id carries our clock (codes 16/17).
        self._queue.append(_Out(notice.to_bytes(), False, True))
        events.append(Rejected(msg_id, code))
        return events

    def _dispatch(self, msg_id: int, seq_no: int, body: bytes, now: float, events: list[Event]) -> None:
        cid = constructor_of(body)
        if cid == GZIP_PACKED_ID:
            try:
                body = Reader(body, 4).read_unpacked()
            except TLDecodeError:
                self._reject(msg_id, seq_no, BadMsgCode.INVALID_CONTAINER, now, events)
                return
            cid = constructor_of(body)
        if seq_no & 1:  # the sender marked it content-related: it must be acknowledged
            self._acks.append(msg_id)
        handler = _SERVICE_HANDLERS.get(cid)
        if handler is None:
            events.append(RpcCall(msg_id, body))
            return
        try:
            obj = Reader(body).read_object()
        except TLDecodeError:
            events.append(RpcCall(msg_id, body))  # let the router answer a malformed query with rpc_error
            return
        handler(self, msg_id, obj, now, events)

    # -- service messages answered by the session -------------------------------------------------------

    def _on_ack(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        if isinstance(obj, mt.types.MsgsAck):
            ids = obj.msg_ids[:MAX_ACK_IDS]
            for acked in ids:
                self._forget(acked)
            events.append(Acked(tuple(ids)))

    def _on_ping(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        if isinstance(obj, (mt.functions.Ping, mt.functions.PingDelayDisconnect)):
            # "These messages do not require acknowledgments" (service_messages, Ping Messages).
            self._queue.append(_Out(mt.types.Pong(msg_id=msg_id, ping_id=obj.ping_id).to_bytes(), False, True))
        if isinstance(obj, mt.functions.PingDelayDisconnect):
            events.append(DisconnectAfter(obj.disconnect_delay))

    def _on_future_salts(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        if isinstance(obj, mt.functions.GetFutureSalts):
            count = max(1, min(obj.num, 64))
            salts = [
                mt.types.FutureSalt(valid_since=since, valid_until=until, salt=salt)
                for since, until, salt in self._salts.future(self.key.id, now, count)
            ]
            answer = mt.types.FutureSalts(req_msg_id=msg_id, now=int(now), salts=salts)
            self._queue.append(_Out(answer.to_bytes(), False, True))  # "does not require an acknowledgment"

    def _on_state_req(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        if not isinstance(obj, (mt.types.MsgsStateReq, mt.types.MsgResendReq)):
            return
        ids = obj.msg_ids[:MAX_ACK_IDS]
        if isinstance(obj, mt.types.MsgResendReq) and all(i in self._unacked for i in ids):
            for wanted in ids:  # resent under new msg_ids, never the old ones
                self._queue.append(_Out(self._forget(wanted), True, True))
            return
        # msgs_state_req, or a resend request for something forgotten: the state of every id asked about,
        # as a plain message (it acknowledges the request by itself and needs no ack).
        answer = mt.types.MsgsStateInfo(req_msg_id=msg_id, info=bytes(self._state_of(i, now) for i in ids))
        self._queue.append(_Out(answer.to_bytes(), False, True))

    def _state_of(self, msg_id: int, now: float) -> int:
        """The status byte of core.telegram.org/mtproto/service_messages_about_messages."""
        seq_no = self._window.seq_of(msg_id)
        if seq_no is not None:
            return 4 if seq_no & 1 else 4 | 16  # received; +16 when no ack was needed
        problem = time_problem(msg_id, now)
        if problem == BadMsgCode.MSG_ID_TOO_HIGH:
            return 3  # not received, msg_id too high
        if problem == BadMsgCode.MSG_ID_TOO_LOW or self._window.too_old(msg_id):
            return 1  # nothing is known about the message: too old
        return 2  # not received: within the range of stored identifiers

    def _on_drop_answer(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        if isinstance(obj, mt.functions.RpcDropAnswer):
            self.send_result(msg_id, mt.types.RpcAnswerUnknown().to_bytes())
            events.append(RpcDropped(obj.req_msg_id))

    def _on_destroy_session(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        if isinstance(obj, mt.functions.DestroySession):
            events.append(DestroySessionRequested(msg_id, obj.session_id))

    def _on_ignored(self, msg_id: int, obj: TLObject, now: float, events: list[Event]) -> None:
        """http_wait and the informational messages need nothing from a TCP server."""

    # -- output -----------------------------------------------------------------------------------------

    def send_result(self, req_msg_id: int, result: bytes) -> None:
        """Queue rpc_result for ``req_msg_id``; ``result`` is the serialized boxed answer."""
        self._queue.append(_Out(pack_rpc_result(req_msg_id, result), True, True))

    def send_error(self, req_msg_id: int, code: int, message: str) -> None:
        self.send_result(req_msg_id, mt.types.RpcError(error_code=code, error_message=message).to_bytes())

    def send_update(self, body: bytes) -> None:
        """Queue a message the client did not ask for (an update), msg_id 3 mod 4."""
        self._queue.append(_Out(body, True, False))

    def answer_destroy_session(self, msg_id: int, session_id: int, existed: bool) -> None:
        answer: TLObject = (
            mt.types.DestroySessionOk(session_id=session_id) if existed
            else mt.types.DestroySessionNone(session_id=session_id)
        )
        self.send_result(msg_id, answer.to_bytes())

    @property
    def highest_msg_id(self) -> int:
        """The highest client msg_id this session accepted (the replay floor if it is forgotten)."""
        return self._window.highest

    @property
    def pending_acks(self) -> int:
        return len(self._acks)

    def data_to_send(self, now: float, *, flush_acks: bool = False) -> list[bytes]:
        """Encrypt everything queued (with pending acks) into transport payloads, containers where useful.

        Acks alone are sent only with ``flush_acks``: they ride along with the next answer otherwise, which
        halves the messages of a request/response exchange.
        """
        if not self._queue and not (flush_acks and self._acks):
            return []
        out = self._queue
        self._queue = []
        if self._acks:
            while self._acks:
                chunk, self._acks = self._acks[:MAX_ACK_IDS], self._acks[MAX_ACK_IDS:]
                out.insert(0, _Out(pack_msgs_ack(chunk), False, True))
        salt = self._salts.current(self.key.id, now)
        payloads: list[bytes] = []
        for group in batches([o.body for o in out]):
            messages = [self._number(out[i], now) for i in group]
            if len(messages) == 1:
                m = messages[0]
            else:
                response = any(out[i].response for i in group)
                m = Inner(self._ids.next(now, 1 if response else 3), self._seq.next(False), pack_container(messages))
            plain = Plain(salt, self.session_id, m.msg_id, m.seq_no, m.body)
            payloads.append(seal(self.key, plain, self._randbytes, from_client=False))
        return payloads

    def _number(self, o: _Out, now: float) -> Inner:
        msg_id = self._ids.next(now, 1 if o.response else 3)
        if o.content_related:
            self._unacked[msg_id] = o.body
            self._unacked_bytes += len(o.body)
            while len(self._unacked) > RESEND_MEMORY or self._unacked_bytes > RESEND_BYTES:
                self._unacked_bytes -= len(self._unacked.popitem(last=False)[1])
        return Inner(msg_id, self._seq.next(o.content_related), o.body)

    def _forget(self, msg_id: int) -> bytes:
        body = self._unacked.pop(msg_id, b"")
        self._unacked_bytes -= len(body)
        return body


_Handler = Callable[[ServerSession, int, TLObject, float, list[Event]], None]
_SERVICE_HANDLERS: dict[int, _Handler] = {
    mt.types.MsgsAck.CONSTRUCTOR_ID: ServerSession._on_ack,
    mt.functions.Ping.CONSTRUCTOR_ID: ServerSession._on_ping,
    mt.functions.PingDelayDisconnect.CONSTRUCTOR_ID: ServerSession._on_ping,
    mt.functions.GetFutureSalts.CONSTRUCTOR_ID: ServerSession._on_future_salts,
    mt.types.MsgsStateReq.CONSTRUCTOR_ID: ServerSession._on_state_req,
    mt.types.MsgResendReq.CONSTRUCTOR_ID: ServerSession._on_state_req,
    mt.functions.RpcDropAnswer.CONSTRUCTOR_ID: ServerSession._on_drop_answer,
    mt.functions.DestroySession.CONSTRUCTOR_ID: ServerSession._on_destroy_session,
    mt.types.HttpWait.CONSTRUCTOR_ID: ServerSession._on_ignored,
    mt.types.MsgsAllInfo.CONSTRUCTOR_ID: ServerSession._on_ignored,
    mt.types.MsgDetailedInfo.CONSTRUCTOR_ID: ServerSession._on_ignored,
    mt.types.MsgNewDetailedInfo.CONSTRUCTOR_ID: ServerSession._on_ignored,
}
