"""An MTProto client written out by hand, for tests that need what the SDK (mtlab.client) does not offer: a
temporary auth key, and queries whose bytes depend on the msg_id they are sent under (auth.bindTempAuthKey's
binding message names that msg_id, so it can only be built once the id is chosen).

Built from the sans-IO core only: ``mtproto.handshake`` for the key, ``mtproto.session.seal`` / ``open_message``
for each message, ``ClientTransport`` for the framing. One call at a time, each its own message (no containers,
no acks sent); a bad_server_salt makes it build the query again for a new msg_id, as a real client must.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.abc import SocketStream

from mtproto import handshake
from mtproto.crypto import rsa
from mtproto.session import AuthKey, MsgIdGenerator, Plain, open_message, seal
from mtproto.session.common import MSG_CONTAINER_ID, RPC_ERROR_ID, RPC_RESULT_ID, constructor_of, parse_container
from mtproto.tl import mt
from mtproto.tl.runtime import GZIP_PACKED_ID, Reader, TLFunction, TLObject
from mtproto.transport import NEED_DATA, ClientTransport, Frame, TransportError, TransportKind

R = TypeVar("R")


class CallFailed(Exception):
    """The server answered rpc_error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class Closed(Exception):
    """The gateway closed the connection (``code``: the transport error it sent first, if any)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed ({code})")
        self.code = code


@dataclass
class RawClient:
    stream: SocketStream
    transport: ClientTransport
    key: AuthKey
    salt: int
    session_id: int
    ids: MsgIdGenerator
    expires_at: int | None  # a temporary key: when it expires (our clock + expires_in)
    sent: int = 0  # content-related messages sent: the next seq_no is 2 * sent + 1

    @property
    def key_id(self) -> int:
        return self.key.id_int

    async def call(self, query: TLFunction[R] | Callable[[int], TLFunction[R]]) -> R:
        """Send ``query`` (or ``query(msg_id)``, built for the msg_id it goes under) and return its answer."""
        for _ in range(3):
            msg_id = self.ids.next(time.time())
            built = query if isinstance(query, TLFunction) else query(msg_id)
            plain = Plain(self.salt, self.session_id, msg_id, 2 * self.sent + 1, built.to_bytes())
            self.sent += 1
            await self.stream.send(self.transport.send_frame(seal(self.key, plain, os.urandom, from_client=True)))
            answered, value = await self._answer(msg_id, built)
            if answered:
                return value  # type: ignore[no-any-return]
        raise AssertionError("the server kept refusing our salt")

    async def _answer(self, msg_id: int, query: TLFunction[Any]) -> tuple[bool, Any]:
        """(True, the result) or (False, None) when the message must be sent again (under a new msg_id)."""
        while True:
            msg = open_message(self.key, await self._frame(), from_client=False)
            bodies = (
                [m.body for m in parse_container(msg.body, msg.msg_id)]
                if constructor_of(msg.body) == MSG_CONTAINER_ID else [msg.body]
            )
            for body in bodies:
                if constructor_of(body) == GZIP_PACKED_ID:
                    body = Reader(body, 4).read_unpacked()
                if constructor_of(body) == RPC_RESULT_ID:
                    r = Reader(body, 4)
                    if r.read_long() != msg_id:
                        continue
                    if constructor_of(body[r.pos : r.pos + 4]) == RPC_ERROR_ID:
                        error = r.read_object()
                        assert isinstance(error, mt.types.RpcError)
                        raise CallFailed(error.error_code, error.error_message)
                    return True, r.read_result(query.read_result)
                obj = Reader(body).read_object()
                if isinstance(obj, mt.types.BadServerSalt) and obj.bad_msg_id == msg_id:
                    self.salt = obj.new_server_salt
                    return False, None
                if isinstance(obj, mt.types.BadMsgNotification) and obj.bad_msg_id == msg_id:
                    raise AssertionError(f"bad_msg_notification {obj.error_code}")
                # new_session_created, msgs_ack and the like: nothing to do for one call at a time

    async def _frame(self) -> bytes:
        while True:
            event = self.transport.next_event()
            if isinstance(event, Frame):
                return event.payload
            if isinstance(event, TransportError):
                raise Closed(int(event.code))
            if event is NEED_DATA:
                try:
                    self.transport.receive_data(await self.stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                    raise Closed(None) from exc


def server_keys(gw: Any) -> dict[int, tuple[int, int]]:
    key = rsa.load_private_pem((gw.data_dir / "gateway_rsa.pem").read_bytes())
    return {rsa.fingerprint(key.n, key.e): (key.n, key.e)}


async def _handshake(stream: SocketStream, transport: ClientTransport, server_keys: dict[int, tuple[int, int]],
                     expires_in: int | None) -> handshake.CreatedKey:
    ids = MsgIdGenerator()

    async def ask(query: TLObject) -> TLObject:
        await stream.send(transport.send_frame(handshake.pack_plain(ids.next(time.time()), query.to_bytes())))
        while True:
            event = transport.next_event()
            if isinstance(event, Frame):
                return handshake.read_plain_object(handshake.unpack_plain(event.payload)[1])
            if isinstance(event, TransportError):
                raise Closed(int(event.code))
            transport.receive_data(await stream.receive())

    req_pq, step1 = handshake.client_start(os.urandom)
    req_dh, step2 = handshake.client_req_dh(step1, await ask(req_pq), server_keys, os.urandom, dc_id=2,
                                            expires_in=expires_in)
    set_dh, step3 = handshake.client_set_dh(step2, await ask(req_dh), os.urandom, int(time.time()))
    created = handshake.client_finish(step3, await ask(set_dh), os.urandom)
    assert isinstance(created, handshake.CreatedKey), "dh_gen_retry: a 2^-64 key id collision"
    return created


@asynccontextmanager
async def raw_client(gw: Any, *, expires_in: int | None = None,
                     key: tuple[AuthKey, int] | None = None) -> AsyncIterator[RawClient]:
    """A connection to ``gw`` with a new key (temporary when ``expires_in`` is given) or with ``key`` (the key and
    the salt to start with), in a new session."""
    with anyio.fail_after(30):
        stream = await anyio.connect_tcp("127.0.0.1", gw.port)
    async with stream:
        transport = ClientTransport(TransportKind.INTERMEDIATE, obfuscated=False, randbytes=os.urandom)
        if key is None:
            with anyio.fail_after(30):
                created = await _handshake(stream, transport, server_keys(gw), expires_in)
            auth_key, salt = AuthKey.from_bytes(created.auth_key), created.server_salt
            offset = created.time_offset
        else:
            (auth_key, salt), offset = key, 0
        expires_at = int(time.time()) + expires_in if expires_in is not None else None
        session_id: int = struct.unpack("<q", os.urandom(8))[0]
        yield RawClient(stream, transport, auth_key, salt, session_id, MsgIdGenerator(offset), expires_at)
