"""What a ``Client`` needs to know before it connects: where, over which transport (on TCP or WebSocket), which
server keys to trust.

The server's RSA public keys are the client's only anchor of trust in the auth-key handshake
(core.telegram.org/mtproto/auth_key, step 4: the client encrypts ``p_q_inner_data`` to a key whose fingerprint
the server offered and the client knows). They are given either as ``{fingerprint: (n, e)}`` or as PEM text
(PKCS#1 ``RSA PUBLIC KEY`` or X.509 ``PUBLIC KEY`` blocks, several may follow each other), the form client
libraries embed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mtproto.crypto import rsa
from mtproto.errors import LocalProtocolError
from mtproto.transport import TransportKind

ServerKeys = dict[int, tuple[int, int]]
"""RSA public keys by fingerprint: ``{fingerprint: (n, e)}`` (``mtproto.crypto.rsa.fingerprint``)."""

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def keys_from_pem(text: str | bytes) -> ServerKeys:
    """Every RSA public key in ``text`` (one or more PEM blocks), by fingerprint."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    keys: ServerKeys = {}
    for block in _PEM_BLOCK.finditer(text):
        try:
            n, e = rsa.load_public_pem(block.group(0).encode("ascii"))
        except LocalProtocolError as exc:
            raise ValueError(f"server key: {exc}") from None
        keys[rsa.fingerprint(n, e)] = (n, e)
    if not keys:
        raise ValueError("server key: no PEM public key block found")
    return keys


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Everything a ``Client`` is told; every field but ``server_keys`` has a default that suits a local lab.

    ``reconnect``: a connection that cannot be made or is lost is tried again (``reconnect_attempts`` tries in a
    row, the first connection included; exponential backoff from ``reconnect_delay`` up to
    ``reconnect_max_delay``, with jitter), and the calls still waiting are sent again on the new one. Without it
    the first failure is final: entering the client, or waiting and later calls, raise ``ConnectionLost``. A
    -404 for a key we had (the server does not know it) is always answered by one immediate retry with a new
    key, reconnect or not.

    ``websocket``: connect to ``ws_port`` instead of ``port`` and carry the transport in binary WebSocket messages
    (path ``/apiws``, subprotocol ``binary``), as web clients do; the spec requires the obfuscated form there.

    ``connect_timeout`` bounds each connection attempt (TCP connect and WebSocket upgrade, handshake, the first
    answer); a client that retries in the background is the caller of those attempts, so the bound is its to set.
    ``ping_interval``: seconds between ``ping_delay_disconnect`` messages (``None``: no pings); a pong that
    takes longer than the interval counts as a dead connection. ``ack_delay``: how long acknowledgements may
    wait for an outgoing message to ride on before they are sent alone. ``updates_buffer``: how many
    unread updates are kept; when it is full the oldest is dropped (the durable update log is the truth:
    ``updates.getDifference`` recovers anything dropped); it also bounds the ordered events the application
    has not read yet. ``updates_gap_timeout``: how long a gap in pts may wait for its missing update before
    ``updates.getDifference`` (the spec's 0.5 s). ``updates_silence``: seconds without any update after which
    getDifference is asked anyway (15 minutes, as the spec suggests).
    """

    server_keys: Mapping[int, tuple[int, int]] | str | bytes
    host: str = "127.0.0.1"
    port: int = 4430
    transport: TransportKind = TransportKind.INTERMEDIATE
    obfuscated: bool = False
    websocket: bool = False  # MTProto over WebSocket to ws_port (path /apiws); needs obfuscated=True
    ws_port: int = 4440
    dc_id: int = 2
    session_file: Path | None = None
    legacy_rsa: bool = False  # the old SHA1 padding of req_DH_params, as Telethon sends it

    reconnect: bool = False
    reconnect_attempts: int = 5
    reconnect_delay: float = 0.25
    reconnect_max_delay: float = 8.0
    connect_timeout: float = 10.0
    ping_interval: float | None = 60.0
    ack_delay: float = 0.5
    updates_buffer: int = 1024
    updates_gap_timeout: float = 0.5
    updates_silence: float = 15 * 60.0

    # initConnection: how the app describes itself (the gateway keeps it per session)
    api_id: int = 1
    device_model: str = "mtlab"
    system_version: str = "mtlab"
    app_version: str = "0.1"
    lang_code: str = "en"

    _keys: ServerKeys = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = self.server_keys
        keys = keys_from_pem(given) if isinstance(given, (str, bytes)) else dict(given)
        if not keys:
            raise ValueError("server_keys is empty: the handshake needs the server's RSA public key")
        object.__setattr__(self, "_keys", keys)
        if self.obfuscated and self.transport is TransportKind.FULL:
            raise ValueError("the full transport has no obfuscated form (it has no protocol tag)")
        if self.websocket and not self.obfuscated:
            raise ValueError("MTProto over WebSocket must be obfuscated: set obfuscated=True")
        if self.reconnect_attempts < 1 or self.updates_buffer < 1:
            raise ValueError("reconnect_attempts and updates_buffer must be at least 1")
        if not 0 <= self.updates_gap_timeout < math.inf or not 0 < self.updates_silence < math.inf:
            raise ValueError("updates_gap_timeout must be >= 0 and updates_silence > 0, both finite")
        if self.ping_interval is not None and not 0 < self.ping_interval < math.inf:
            raise ValueError(f"ping_interval must be positive or None, got {self.ping_interval}")

    @property
    def rsa_keys(self) -> ServerKeys:
        """The server keys as ``{fingerprint: (n, e)}``, whichever form they were given in."""
        return dict(self._keys)

    @property
    def disconnect_delay(self) -> int:
        """The ``disconnect_delay`` of our pings: the server closes if the next ping is this late.

        The interval plus 15 s of slack, as stock clients do (60 s pings, 75 s delay).
        """
        return math.ceil(self.ping_interval or 60.0) + 15
