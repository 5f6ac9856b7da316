"""An MTProto client and server joined by an in-memory link: the self-check of `mtlab up` and of the tests.

Both ends are the real protocol stack of ``mtproto``: transport framing (any kind, obfuscated or not), the
auth-key handshake, the encrypted session layer. ``PairServer`` plays a one-connection gateway that answers a
few queries itself (help.getConfig behind invokeWithLayer/initConnection, ping); ``PairClient`` creates a key
and invokes. Their byte pumps run under anyio, so the same exchange runs on trio and on asyncio.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mtproto import handshake
from mtproto.crypto import rsa
from mtproto.errors import RemoteProtocolError
from mtproto.session import AuthKey, ClientSession, SaltPolicy, ServerSession, open_message
from mtproto.session.client import Result, RpcErrorReceived
from mtproto.session.server import RpcCall
from mtproto.tl import LAYER, api, mt
from mtproto.tl.runtime import Reader, TLDecodeError, TLFunction, TLObject
from mtproto.transport import NEED_DATA, ClientTransport, Frame, ServerTransport, TransportError, TransportKind
from services.auth import dc

RandBytes = Callable[[int], bytes]
Clock = Callable[[], float]


def _unwrap(query: TLObject) -> TLObject:
    """The query inside invokeWithLayer / initConnection / invokeWithoutUpdates / invokeAfterMsg(s)."""
    wrappers = (
        api.functions.InvokeWithLayer, api.functions.InitConnection, api.functions.InvokeWithoutUpdates,
        api.functions.InvokeAfterMsg, api.functions.InvokeAfterMsgs,
    )
    while isinstance(query, wrappers):
        query = query.query
    return query


@dataclass
class PairServer:
    """One server connection: bytes in, bytes out, with the keys it created kept in ``keys``."""

    config: handshake.ServerConfig
    salts: SaltPolicy
    randbytes: RandBytes
    keys: dict[bytes, AuthKey] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.transport = ServerTransport(randbytes=self.randbytes)
        self.handshake = handshake.ServerHandshake(self.config, self.randbytes)
        self.sessions: dict[tuple[bytes, int], ServerSession] = {}
        self._plain_ids = 0

    def feed(self, data: bytes, now: float) -> bytes:
        """Handle bytes from the client; return bytes for it. A RemoteProtocolError means: close."""
        out = bytearray()
        try:
            self.transport.receive_data(data)
            while (event := self.transport.next_event()) is not NEED_DATA:
                if isinstance(event, Frame):
                    for payload in self._frame(event.payload, now):
                        out += self.transport.send_frame(payload)
        except RemoteProtocolError as exc:
            self.log.append(f"server: closing with {exc.transport_error}: {exc}")
            if exc.transport_error is not None:
                out += self.transport.send_error(exc.transport_error)
            raise _Close(bytes(out)) from exc
        return bytes(out)

    def _frame(self, payload: bytes, now: float) -> list[bytes]:
        padded = self.transport.kind is TransportKind.PADDED_INTERMEDIATE
        if payload[:8] == bytes(8):
            _, body = handshake.unpack_plain(payload, padded=padded)
            answer = self.handshake.receive(body, int(now))
            name = Reader(answer).read_object().TL_NAME
            self.log.append(f"server: handshake -> {name}")
            if self.handshake.created is not None:
                created = self.handshake.created
                self.keys[created.auth_key_id] = AuthKey.from_bytes(created.auth_key)
                self.log.append(f"server: auth key {created.auth_key_id.hex()} created and stored")
                self.handshake.created = None
            self._plain_ids = max(self._plain_ids + 4, (int(now * 2**32) & ~3) | 1)
            return [handshake.pack_plain(self._plain_ids, answer)]
        key = self.keys.get(payload[:8])
        if key is None:
            raise RemoteProtocolError("unknown auth key")
        msg = open_message(key, payload, from_client=True, padded=padded)
        session = self.sessions.get((key.id, msg.session_id))
        if session is None:
            session = ServerSession(key, msg.session_id, salts=self.salts, randbytes=self.randbytes)
            self.sessions[(key.id, msg.session_id)] = session
        for event in session.receive(msg, now):
            if isinstance(event, RpcCall):
                self._call(session, event, now)
        return session.data_to_send(now, flush_acks=True)

    def _call(self, session: ServerSession, call: RpcCall, now: float) -> None:
        try:
            query = _unwrap(Reader(call.body).read_object())
        except TLDecodeError as exc:
            session.send_error(call.msg_id, 400, "INPUT_METHOD_INVALID")
            self.log.append(f"server: undecodable query: {exc}")
            return
        self.log.append(f"server: rpc {query.TL_NAME}")
        if isinstance(query, api.functions.help.GetConfig):
            config = dc.config(self.config.dc_id, "127.0.0.1", 4430, int(now))
            session.send_result(call.msg_id, config.to_bytes())
        else:
            session.send_error(call.msg_id, 400, "METHOD_NOT_IMPLEMENTED")


class _Close(Exception):
    """The server wants the connection closed after writing ``data``."""

    def __init__(self, data: bytes) -> None:
        super().__init__("close")
        self.data = data


@dataclass
class Transcript:
    kind: TransportKind
    obfuscated: bool
    auth_key_id: str = ""
    results: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0


class PairClient:
    """The client end: handshake, then a ClientSession; ``exchange`` drives it over an in-memory link."""

    def __init__(
        self,
        kind: TransportKind,
        obfuscated: bool,
        server_keys: dict[int, tuple[int, int]],
        randbytes: RandBytes,
        *,
        dc_id: int = 2,
        legacy_rsa: bool = False,
    ) -> None:
        self.transport = ClientTransport(kind, obfuscated=obfuscated, randbytes=randbytes, dc_id=dc_id)
        self.server_keys = server_keys
        self.randbytes = randbytes
        self.dc_id = dc_id
        self.legacy_rsa = legacy_rsa
        self._plain_ids = 0

    def plain(self, query: TLObject, now: float) -> bytes:
        self._plain_ids = max(self._plain_ids + 4, int(now * 2**32) & ~3)
        return self.transport.send_frame(handshake.pack_plain(self._plain_ids, query.to_bytes()))

    @property
    def padded(self) -> bool:
        return self.transport.kind is TransportKind.PADDED_INTERMEDIATE

    def plain_answer(self, frame: bytes) -> TLObject:
        return handshake.read_plain_object(handshake.unpack_plain(frame, padded=self.padded)[1])

    def frames(self, data: bytes) -> list[bytes]:
        self.transport.receive_data(data)
        out = []
        while (event := self.transport.next_event()) is not NEED_DATA:
            if isinstance(event, TransportError):
                raise RemoteProtocolError(f"server sent transport error {event.code}")
            if isinstance(event, Frame):
                out.append(event.payload)
        return out


async def _recv_frames(client: PairClient, inbox: ObjectReceiveStream[bytes]) -> list[bytes]:
    while True:
        frames = client.frames(await inbox.receive())
        if frames:
            return frames


async def run_client(
    client: PairClient,
    outbox: ObjectSendStream[bytes],
    inbox: ObjectReceiveStream[bytes],
    queries: list[TLFunction[Any]],
    clock: Clock,
    transcript: Transcript,
) -> None:
    """Create an auth key, then invoke ``queries`` in one batch and wait for every answer."""
    query: TLObject
    query, step1 = handshake.client_start(client.randbytes)
    await outbox.send(client.plain(query, clock()))
    [frame] = await _recv_frames(client, inbox)
    query, step2 = handshake.client_req_dh(
        step1, client.plain_answer(frame), client.server_keys,
        client.randbytes, dc_id=client.dc_id, legacy=client.legacy_rsa,
    )
    await outbox.send(client.plain(query, clock()))
    [frame] = await _recv_frames(client, inbox)
    query, step3 = handshake.client_set_dh(
        step2, client.plain_answer(frame), client.randbytes, int(clock())
    )
    await outbox.send(client.plain(query, clock()))
    [frame] = await _recv_frames(client, inbox)
    created = handshake.client_finish(step3, client.plain_answer(frame),
                                      client.randbytes)
    if not isinstance(created, handshake.CreatedKey):
        raise RemoteProtocolError("the server asked for a handshake retry")
    transcript.auth_key_id = created.auth_key_id.hex()
    transcript.log.append(f"client: auth key {transcript.auth_key_id} (salt {created.server_salt:#x})")

    # Start with salt 0, as common client libraries do: the server must answer bad_server_salt first.
    session_id = struct.unpack("<q", client.randbytes(8))[0]
    session = ClientSession(AuthKey.from_bytes(created.auth_key), session_id=session_id, salt=0,
                            randbytes=client.randbytes, time_offset=created.time_offset)
    requests = [session.invoke(q) for q in queries]
    pending = set(map(id, requests))
    for payload in session.data_to_send(clock()):
        await outbox.send(client.transport.send_frame(payload))
    while pending:
        for frame in await _recv_frames(client, inbox):
            for event in session.receive(frame, clock(), padded=client.padded):
                if isinstance(event, Result):
                    pending.discard(id(event.request))
                    transcript.results.append(f"{event.request.query.TL_NAME} -> {_describe(event.value)}")
                elif isinstance(event, RpcErrorReceived):
                    pending.discard(id(event.request))
                    transcript.results.append(f"{event.request.query.TL_NAME} -> rpc_error {event.code} "
                                              f"{event.message}")
                else:
                    transcript.log.append(f"client: {type(event).__name__}")
        for payload in session.data_to_send(clock(), flush_acks=not pending):
            await outbox.send(client.transport.send_frame(payload))
    transcript.log.append(f"client: salt learned {session.salt:#x}, resent {session.counters.resent}")


def _describe(value: object) -> str:
    if isinstance(value, api.types.Config):
        return f"config(this_dc={value.this_dc}, dc_options={len(value.dc_options)})"
    if isinstance(value, mt.types.Pong):
        return f"pong(ping_id={value.ping_id})"
    return type(value).__name__


async def run_server(
    server: PairServer, inbox: ObjectReceiveStream[bytes], outbox: ObjectSendStream[bytes], clock: Clock
) -> None:
    async with inbox, outbox:
        async for data in inbox:
            try:
                reply = server.feed(data, clock())
            except _Close as close:
                if close.data:
                    await outbox.send(close.data)
                return
            if reply:
                await outbox.send(reply)


async def exchange(
    kind: TransportKind,
    obfuscated: bool,
    *,
    rsa_key: rsa.RsaKey,
    randbytes: RandBytes = os.urandom,
    clock: Clock = time.time,
    legacy_rsa: bool = False,
    queries: list[TLFunction[Any]] | None = None,
) -> Transcript:
    """Handshake plus encrypted RPCs between an in-process client and server, on the running event loop."""
    transcript = Transcript(kind, obfuscated)
    config = handshake.ServerConfig(rsa_keys=(rsa_key,), dc_id=2)
    server = PairServer(config, SaltPolicy(randbytes(32)), randbytes, log=transcript.log)
    server_keys = {rsa.fingerprint(rsa_key.n, rsa_key.e): (rsa_key.n, rsa_key.e)}
    client = PairClient(kind, obfuscated, server_keys, randbytes, legacy_rsa=legacy_rsa)
    if queries is None:
        get_config: TLFunction[Any] = api.functions.InvokeWithLayer(
            layer=LAYER,
            query=api.functions.InitConnection(
                api_id=1, device_model="selfcheck", system_version="mtlab", app_version="0.1",
                system_lang_code="en", lang_pack="", lang_code="en", query=api.functions.help.GetConfig(),
            ),
        )
        queries = [get_config, mt.functions.Ping(ping_id=42)]
    up_send, up_recv = anyio.create_memory_object_stream[bytes](64)
    down_send, down_recv = anyio.create_memory_object_stream[bytes](64)

    class _Counting(ObjectSendStream[bytes]):
        def __init__(self, inner: ObjectSendStream[bytes], up: bool) -> None:
            self.inner, self.up = inner, up

        async def send(self, item: bytes) -> None:
            if self.up:
                transcript.bytes_up += len(item)
            else:
                transcript.bytes_down += len(item)
            await self.inner.send(item)

        async def aclose(self) -> None:
            await self.inner.aclose()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server, server, up_recv, _Counting(down_send, False), clock)
            async with up_send, down_recv:
                await run_client(client, _Counting(up_send, True), down_recv, queries, clock, transcript)
    return transcript
