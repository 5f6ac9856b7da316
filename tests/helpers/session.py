"""A client and a server session joined directly, and the clock and randomness the session tests use."""

from __future__ import annotations

from dataclasses import dataclass

from mtproto.replay import seeded_randbytes
from mtproto.session import AuthKey, ClientSession, SaltPolicy, ServerSession, open_message

NOW = 1_700_000_000.0


drbg = seeded_randbytes


@dataclass
class Pair:
    """A client session and the server session it talks to, joined directly (no transport)."""

    key: AuthKey
    client: ClientSession
    server: ServerSession
    salts: SaltPolicy

    def up(self, now: float = NOW, flush_acks: bool = False) -> list[object]:
        """Client -> server: every payload the client has queued; returns the server's events."""
        events: list[object] = []
        for payload in self.client.data_to_send(now, flush_acks=flush_acks):
            events += self.server.receive(open_message(self.key, payload, from_client=True), now)
        return events

    def down(self, now: float = NOW, flush_acks: bool = True) -> list[object]:
        events: list[object] = []
        for payload in self.server.data_to_send(now, flush_acks=flush_acks):
            events += self.client.receive(payload, now)
        return events
