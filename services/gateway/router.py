"""What the gateway does with one query: peel the wrappers, then answer or route by method.

core.telegram.org/api/invoking: any call may be wrapped in invokeWithLayer, initConnection,
invokeWithoutUpdates and invokeAfterMsg(s), in any nesting. The gateway handles them at the edge: it reads
the wrappers' own fields (the layer, the client's device and app) and keeps the inner query as raw bytes,
which it routes by constructor id without decoding. Methods the lab does not implement (yet) get a clear
``400 INPUT_METHOD_INVALID`` naming the method.

Until the services exist the gateway answers the few methods a client needs to connect itself:
help.getConfig, and updates.getState with ``401 AUTH_KEY_UNREGISTERED`` (no one can sign in yet, which is
exactly how a stock client learns it must sign in).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mtproto.tl import api, mt
from mtproto.tl.runtime import Reader, TLDecodeError, class_for_id

_INVOKE_WITH_LAYER = api.functions.InvokeWithLayer.CONSTRUCTOR_ID
_INIT_CONNECTION = api.functions.InitConnection.CONSTRUCTOR_ID
_WITHOUT_UPDATES = api.functions.InvokeWithoutUpdates.CONSTRUCTOR_ID
_AFTER_MSG = api.functions.InvokeAfterMsg.CONSTRUCTOR_ID
_AFTER_MSGS = api.functions.InvokeAfterMsgs.CONSTRUCTOR_ID


@dataclass(slots=True)
class CallContext:
    """What the wrappers said about a call (the gateway keeps layer and app per session)."""

    layer: int | None = None
    app: dict[str, str | int] = field(default_factory=dict)
    without_updates: bool = False
    after: tuple[int, ...] = ()


def peel(body: bytes) -> tuple[bytes, CallContext]:
    """The innermost query's bytes and what its wrappers said. Raises TLDecodeError on malformed wrappers."""
    ctx = CallContext()
    r = Reader(body)
    while True:
        start = r.pos
        cid = r.read_uint()
        if cid == _INVOKE_WITH_LAYER:
            ctx.layer = r.read_int()
        elif cid == _INIT_CONNECTION:
            flags = r.read_uint()
            ctx.app = {"api_id": r.read_int()}
            for name in ("device_model", "system_version", "app_version", "system_lang_code", "lang_pack", "lang_code"):
                ctx.app[name] = r.read_string()
            if flags & 1:
                r.read_object()  # proxy: not used by a lab DC
            if flags & 2:
                r.read_object()  # params (JSON): not used
        elif cid == _WITHOUT_UPDATES:
            ctx.without_updates = True
        elif cid == _AFTER_MSG:
            ctx.after = (r.read_long(),)
        elif cid == _AFTER_MSGS:
            ctx.after = tuple(r.read_vector(r.read_long, 8))
        else:
            return body[start:], ctx


def method_name(query: bytes) -> str:
    """The TL name of a query for logs and metrics, or its hex id when no schema knows it."""
    if len(query) < 4:
        return "malformed"
    cid = int.from_bytes(query[:4], "little")
    cls = class_for_id(cid)
    return cls.TL_NAME if cls is not None else f"0x{cid:08x}"


@dataclass(frozen=True, slots=True)
class Answer:
    """A serialized result, or an rpc_error."""

    result: bytes | None = None
    error_code: int = 0
    error_message: str = ""


def error(code: int, message: str) -> Answer:
    return Answer(None, code, message)


#: Namespaces whose methods may be called before signing in (core.telegram.org/api/auth): everything else
#: needs an authorized key, and that check comes before the method is even looked up.
NO_AUTH_NAMESPACES = ("auth.", "help.", "langpack.", "ping", "ping_delay_disconnect")


def needs_authorization(name: str) -> bool:
    return not name.startswith(NO_AUTH_NAMESPACES)


def answer_locally(
    query: bytes, msg_id: int, *, dc_id: int, port: int, authorized: bool = False, now: float | None = None
) -> Answer:
    """The gateway's own answers until the services own these methods.

    No key can be signed in before the auth service exists, so every method that needs authorization gets
    ``401 AUTH_KEY_UNREGISTERED``: that is how a stock client (which asks ``users.getUsers([inputUserSelf])``
    or ``updates.getState`` right after connecting) learns it must sign in.
    """
    name = method_name(query)
    if name == "malformed":
        return error(400, "INPUT_METHOD_INVALID")
    if name in ("ping", "ping_delay_disconnect"):
        # A ping inside a wrapper (Telethon sends invokeWithoutUpdates(ping)) reaches the router, not the
        # session layer; it is answered the same way, with the query's own msg_id.
        try:
            ping = Reader(query).read_object()
        except TLDecodeError:
            return error(400, "INPUT_METHOD_INVALID")
        if isinstance(ping, (mt.functions.Ping, mt.functions.PingDelayDisconnect)):
            return Answer(mt.types.Pong(msg_id=msg_id, ping_id=ping.ping_id).to_bytes())
    if needs_authorization(name) and not authorized:
        return error(401, "AUTH_KEY_UNREGISTERED")
    if name == "help.getConfig":
        return Answer(config(dc_id, port, int(now if now is not None else time.time())).to_bytes())
    return error(400, f"INPUT_METHOD_INVALID_{name.upper().replace('.', '_')}")


def config(dc_id: int, port: int, now: int) -> api.types.Config:
    return api.types.Config(
        date=now, expires=now + 3600, test_mode=True, this_dc=dc_id,
        dc_options=[api.types.DcOption(id=dc_id, ip_address="127.0.0.1", port=port)],
        dc_txt_domain_name="", chat_size_max=200, megagroup_size_max=200000, forwarded_count_max=100,
        online_update_period_ms=210000, offline_blur_timeout_ms=5000, offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000, notify_default_delay_ms=1500,
        push_chat_period_ms=60000, push_chat_limit=2, edit_time_limit=172800, revoke_time_limit=2147483647,
        revoke_pm_time_limit=2147483647, rating_e_decay=2419200, stickers_recent_limit=200,
        channels_read_media_period=604800, call_receive_timeout_ms=20000, call_ring_timeout_ms=90000,
        call_connect_timeout_ms=30000, call_packet_timeout_ms=10000, me_url_prefix="https://t.me/",
        caption_length_max=1024, message_length_max=4096, webfile_dc_id=dc_id,
    )
