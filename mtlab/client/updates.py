"""The client's inbox of updates: what the server sends without being asked (core.telegram.org/api/updates).

Bounded, and when it is full the oldest update is dropped, never the connection's reader blocked. A reader
that waited for a slow consumer would stop reading the socket, and every ``invoke`` waiting for its answer
behind that update would hang with it: one forgotten ``updates()`` loop would freeze the whole client.
Dropping is safe because pushed updates are best effort by design: the per-user update log is the truth, and
a client that sees a gap (``dropped`` grew, or pts jumped) catches up with ``updates.getDifference``.
"""

from __future__ import annotations

import anyio

from mtproto.session.client import UpdateReceived


class UpdateQueue:
    """Updates waiting for ``Client.updates()``; ``push`` never blocks, ``dropped`` counts what was lost."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[UpdateReceived](size)
        self.received = 0
        self.dropped = 0

    def push(self, update: UpdateReceived) -> None:
        self.received += 1
        while True:
            try:
                self._send.send_nowait(update)
                return
            except anyio.WouldBlock:
                try:
                    self._receive.receive_nowait()  # make room: the oldest goes
                    self.dropped += 1
                except anyio.WouldBlock:  # a consumer took one in between: try again
                    pass

    async def get(self) -> UpdateReceived:
        """The oldest waiting update; raises ``anyio.EndOfStream`` once the queue is closed and empty."""
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
