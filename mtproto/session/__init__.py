"""The encrypted session layer of MTProto 2.0, both roles (core.telegram.org/mtproto/description).

- ``envelope``: the decrypted message layout, ``seal`` and ``open_message`` (all checks, one uniform failure).
- ``msgid``: msg_id generation, the window of seen ids, bad_msg_notification codes.
- ``salts``: server salts derived from a secret, with rotation and grace.
- ``common``: seq_no, containers, acks.
- ``server``: ``ServerSession``, one (auth key, session) on the gateway.
- ``client``: ``ClientSession``, the same from the client's side.
"""

from mtproto.session.client import ClientSession, Request
from mtproto.session.envelope import AuthKey, Plain, open_message, seal
from mtproto.session.msgid import BadMsgCode, MsgIdGenerator, MsgIdWindow
from mtproto.session.salts import SaltPolicy
from mtproto.session.server import ServerSession

__all__ = [
    "AuthKey",
    "BadMsgCode",
    "ClientSession",
    "MsgIdGenerator",
    "MsgIdWindow",
    "Plain",
    "Request",
    "SaltPolicy",
    "ServerSession",
    "open_message",
    "seal",
]
