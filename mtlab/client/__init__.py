"""The mtlab client SDK: the "mobile app" stand-in, on anyio (runs on trio and asyncio).

Connect over any MTProto transport (abridged, intermediate, padded intermediate, full; obfuscated or not; on TCP,
or obfuscated on WebSocket),
create or reuse an auth key, invoke any TL function from any number of tasks, receive updates::

    from mtlab.client import Client, ClientConfig
    from mtproto.tl import api

    async with Client(ClientConfig(server_keys=pem_text, port=4430, session_file=Path("me.session"))) as client:
        config = await client.invoke(api.functions.help.GetConfig())
        await client.start_updates()                  # signed in: updates.getState (or catch up from the file)
        async for event in client.ordered_updates():  # Update (once, in pts order) or Reset (reload your chats)
            ...

Signing in is ``invoke(api.functions.auth.SendCode(...))`` and ``auth.SignIn`` once the auth service
answers them. Used by the ``mtlab`` CLI, the end-to-end tests and the locust user.

- ``client``: ``Client`` (connections, tasks, waiting callers) and ``ClientStats``.
- ``config``: ``ClientConfig``, server keys from PEM.
- ``files``: uploads and downloads in parts (``files.upload``, ``files.download``, ``files.location``).
- ``errors``: ``RpcError``, ``ConnectionLost``, ``BadMessageError``, ``SessionFileError``.
- ``link``: one connection and the auth-key handshake over it.
- ``secret``: secret chats' end-to-end side (keys, sealing, seq_no) and their files, encrypted and decrypted
  a chunk at a time (``SecretChats.send_file``, ``download``).
- ``session_file``: the auth key kept between runs (JSON, 0600, atomic writes).
- ``update_state``: the sans-IO update state machine: pts/qts/seq rules, gaps, differences.
- ``updates``: the bounded, drop-oldest inbox behind ``Client.updates()``, and the engine behind
  ``Client.ordered_updates()``.
- ``websocket``: MTProto over WebSocket (``/apiws``, subprotocol ``binary``), an anyio byte stream on wsproto.
"""

from mtlab.client.account import sign_in_or_up
from mtlab.client.client import Client, ClientStats
from mtlab.client.config import ClientConfig, ServerKeys, keys_from_pem
from mtlab.client.errors import BadMessageError, ClientError, ConnectionLost, RpcError, SessionFileError
from mtlab.client.update_state import Reset, SavedState, Update, UpdateState
from mtproto.session.client import UpdateReceived
from mtproto.transport import TransportKind

__all__ = [
    "BadMessageError",
    "Client",
    "ClientConfig",
    "ClientError",
    "ClientStats",
    "ConnectionLost",
    "Reset",
    "RpcError",
    "SavedState",
    "ServerKeys",
    "SessionFileError",
    "TransportKind",
    "Update",
    "UpdateReceived",
    "UpdateState",
    "keys_from_pem",
    "sign_in_or_up",
]
