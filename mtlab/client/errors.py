"""What ``Client.invoke`` raises besides the answer (core.telegram.org/api/errors and /mtproto/mtproto-transports).

- ``RpcError``: the server answered the query with ``rpc_error code message``. The query reached the service
  that owns it; the message names what went wrong (``AUTH_KEY_UNREGISTERED``, ``FLOOD_WAIT_30``...).
- ``ConnectionLost``: the connection ended (EOF, a transport error such as -404 or -429, a dead peer) and the
  client will not, or could no longer, carry the call over to a new one. The call may or may not have run.
- ``BadMessageError``: the session layer refused the message with a bad_msg_notification that resending cannot
  fix (core.telegram.org/mtproto/service_messages_about_messages); a bug on one side.
- ``SessionFileError``: the session file exists but cannot be used.
"""

from __future__ import annotations

import re

_TRAILING_NUMBER = re.compile(r".*_(\d+)")
_WAIT = re.compile(r"[A-Z_]*_(?:WAIT|DELAY)_(\d+)")
_FLOOD_WAIT = re.compile(r"FLOOD_(?:PREMIUM_)?WAIT_\d+")


class ClientError(Exception):
    """Base class of everything ``mtlab.client`` raises on purpose."""


class RpcError(ClientError):
    """``rpc_error``: the server's answer to a query was an error.

    ``code`` is the HTTP-like class (400, 401, 403, 420 flood, 500...), ``message`` the Telegram-style name.
    Names ending in ``_X`` carry a number (``FLOOD_WAIT_30``, ``PHONE_MIGRATE_4``): ``value`` is that number,
    ``seconds`` the same when the name says how long to wait.
    """

    def __init__(self, code: int, message: str, *, method: str = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.method = method  # the TL name of the query that failed (for logs)

    def __str__(self) -> str:
        where = f" (from {self.method})" if self.method else ""
        return f"{self.code} {self.message}{where}"

    def __repr__(self) -> str:
        return f"RpcError({self.code!r}, {self.message!r})"

    @property
    def value(self) -> int | None:
        """The number at the end of the message (``FILE_MIGRATE_2`` -> 2), if any."""
        match = _TRAILING_NUMBER.fullmatch(self.message)
        return int(match.group(1)) if match else None

    @property
    def is_flood_wait(self) -> bool:
        """True for ``420 FLOOD_WAIT_X`` (and ``FLOOD_PREMIUM_WAIT_X``): retry after ``seconds``."""
        return self.code == 420 or _FLOOD_WAIT.fullmatch(self.message) is not None

    @property
    def seconds(self) -> int | None:
        """How long the server asks to wait (``FLOOD_WAIT_X``, ``SLOWMODE_WAIT_X``...), else ``None``."""
        match = _WAIT.fullmatch(self.message)
        return int(match.group(1)) if match else None


class ConnectionLost(ClientError):
    """The connection to the gateway ended and the call cannot be completed on it.

    ``transport_error`` is the negative code the server sent before closing (-404 unknown auth key or failed
    check, -429 too many connections or handshakes, -444 wrong DC), or ``None`` for a plain close or a
    network failure.
    """

    def __init__(self, reason: str, transport_error: int | None = None) -> None:
        super().__init__(reason, transport_error)
        self.reason = reason
        self.transport_error = transport_error

    def __str__(self) -> str:
        code = f" (transport error {self.transport_error})" if self.transport_error is not None else ""
        return f"{self.reason}{code}"

    def copy(self) -> ConnectionLost:
        """A new instance for another waiting call (one exception object must not be raised in two tasks)."""
        return ConnectionLost(self.reason, self.transport_error)


class BadMessageError(ClientError):
    """The server refused our message with a bad_msg_notification ``code`` that resending does not fix."""

    def __init__(self, code: int, *, method: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.method = method

    def __str__(self) -> str:
        return f"bad_msg_notification {self.code} for {self.method or 'a query'}"


class SessionFileError(ClientError):
    """The session file exists but is not a session file this client can read."""
