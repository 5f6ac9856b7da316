"""One connection to the gateway: the byte stream, its transport codec, and the auth-key handshake over it.

``Link`` joins an anyio byte stream (a TCP socket, or ``websocket.WebSocketStream``) to
``mtproto.transport.ClientTransport`` (core.telegram.org/mtproto/mtproto-transports): ``send`` frames payloads,
``next_frame`` reads until a whole payload is decoded. Every way the connection can end (EOF, a reset, a
transport error such as -404, a WebSocket close, bytes the codec refuses) comes out as
one exception, ``ConnectionLost``, so the client above has a single thing to handle.

``create_auth_key`` drives the pure steps of ``mtproto.handshake`` (core.telegram.org/mtproto/auth_key) over a
link, with unencrypted messages; it supplies the clock and the randomness those steps take as parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteStream

from mtlab.client.errors import ConnectionLost
from mtproto import handshake
from mtproto.errors import LocalProtocolError, RemoteProtocolError
from mtproto.session.msgid import MsgIdGenerator
from mtproto.tl.runtime import TLObject
from mtproto.transport import NEED_DATA, ClientTransport, Frame, QuickAck, TransportError, TransportKind

if TYPE_CHECKING:
    from mtproto.session import ClientSession

RandBytes = Callable[[int], bytes]
Clock = Callable[[], float]

READ_SIZE = 256 * 1024
"""Bytes asked of the socket per read: as much as asyncio's transport reads at once, so a 1 MiB frame of a download
takes 4 awaits rather than 16 (the client's download CPU fell by a tenth, `mtlab bench media`); not 1 MiB: on trio
each call allocates a buffer of that size."""

MAX_DH_RETRIES = 5
"""dh_gen_retry only happens when a new key's id collides with a stored one (a 2^-64 event): a few suffice."""


class Link:
    """One connection: bytes framed out, frames read in, and the MTProto session riding on it (if any)."""

    def __init__(self, stream: ByteStream, transport: ClientTransport) -> None:
        self.stream = stream
        self.transport = transport
        self.session: ClientSession | None = None
        self.frames_sent = 0
        self.frames_received = 0
        self._kick_send, self._kick_receive = anyio.create_memory_object_stream[None](1)
        self.ack_deadline: float | None = None  # when acks waiting for a ride must be sent alone

    @property
    def padded(self) -> bool:
        return self.transport.kind is TransportKind.PADDED_INTERMEDIATE

    async def send(self, payloads: Sequence[bytes]) -> None:
        """Frame ``payloads`` and write them in one go."""
        try:
            data = b"".join(self.transport.send_frame(p) for p in payloads)
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"cannot write to the gateway: {exc!r}") from exc
        self.frames_sent += len(payloads)

    async def next_frame(self) -> bytes:
        """The next payload from the server. A transport error, EOF or undecodable bytes raise ConnectionLost."""
        while True:
            try:
                event = self.transport.next_event()
            except RemoteProtocolError as exc:
                raise ConnectionLost(f"the gateway sent bytes the transport refuses: {exc}") from exc
            if isinstance(event, Frame):
                self.frames_received += 1
                return event.payload
            if isinstance(event, TransportError):
                raise ConnectionLost("the gateway closed the connection", event.code)
            if isinstance(event, QuickAck):
                continue  # we never ask for quick acks; a stray one means nothing
            if event is NEED_DATA:
                await self._read()

    async def _read(self) -> None:
        try:
            data = await self.stream.receive(min(self.transport.receive_capacity, READ_SIZE))
        except anyio.EndOfStream:
            raise ConnectionLost("the gateway closed the connection") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"cannot read from the gateway: {exc!r}") from exc
        self.transport.receive_data(data)

    # -- waking the writer ------------------------------------------------------------------------------

    def kick(self) -> None:
        """Tell the writer there is something to send (kicks while it is busy coalesce into one)."""
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._kick_send.send_nowait(None)

    async def wait_for_kick(self) -> None:
        await self._kick_receive.receive()

    def close(self) -> None:
        self._kick_send.close()
        self._kick_receive.close()


async def create_auth_key(
    link: Link,
    server_keys: dict[int, tuple[int, int]],
    *,
    dc_id: int,
    legacy_rsa: bool,
    randbytes: RandBytes,
    clock: Clock,
) -> handshake.CreatedKey:
    """Run the auth-key handshake on ``link``; any failure raises ConnectionLost (the gateway closes anyway)."""
    ids = MsgIdGenerator()

    async def ask(query: TLObject) -> TLObject:
        await link.send([handshake.pack_plain(ids.next(clock()), query.to_bytes())])
        payload = await link.next_frame()
        _, body = handshake.unpack_plain(payload, padded=link.padded)
        return handshake.read_plain_object(body)

    try:
        req_pq, step1 = handshake.client_start(randbytes)
        req_dh, step2 = handshake.client_req_dh(
            step1, await ask(req_pq), server_keys, randbytes, dc_id=dc_id, legacy=legacy_rsa
        )
        set_dh, step3 = handshake.client_set_dh(step2, await ask(req_dh), randbytes, int(clock()))
        answer = await ask(set_dh)
        for _ in range(MAX_DH_RETRIES):
            finished = handshake.client_finish(step3, answer, randbytes)
            if isinstance(finished, handshake.CreatedKey):
                return finished
            set_dh, step3 = finished
            answer = await ask(set_dh)
    except (RemoteProtocolError, LocalProtocolError) as exc:
        # Remote: the server's answer failed a check. Local: the answer does not fit what we can send back
        # (e.g. no known RSA key); either way this server cannot give us a key.
        raise ConnectionLost(f"auth key handshake failed: {exc}") from exc
    raise ConnectionLost(f"auth key handshake failed: dh_gen_retry {MAX_DH_RETRIES} times")
