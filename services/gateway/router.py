"""What the gateway does with one query: peel the wrappers, then answer at the edge or route by method.

core.telegram.org/api/invoking: any call may be wrapped in invokeWithLayer, initConnection,
invokeWithoutUpdates and invokeAfterMsg(s), in any nesting. The gateway handles them at the edge: it reads
the wrappers' own fields (the layer, the client's device and app) and keeps the inner query as raw bytes,
which it routes by constructor id without decoding.

What the gateway answers itself (``answer_at_edge``), in this order:
1. a query it cannot even name: ``400 INPUT_METHOD_INVALID``;
2. ping and ping_delay_disconnect inside a wrapper: pong;
3. anything but auth.bindTempAuthKey, help.getConfig and help.getNearestDc from a temporary key that is not bound
   to a permanent one: ``401 AUTH_KEY_PERM_EMPTY`` (core.telegram.org/api/pfs);
4. a method outside auth./help./langpack. from a key that is not signed in: ``401 AUTH_KEY_UNREGISTERED``, or
   ``401 SESSION_REVOKED`` when another device ended its authorization (core.telegram.org/api/auth); when the
   key's state cannot be known (the auth service is down): ``500 SERVICE_UNAVAILABLE``. A bound temporary key
   is signed in exactly when its permanent key is (the key record carries the permanent key's user);
5. a method no service owns: ``400 INPUT_METHOD_INVALID_<NAME>`` (the hex id for methods outside the schema).
Everything else goes to its owning service (``SERVICE_BY_NAMESPACE``, ``SERVICE_BY_METHOD``) over internal RPC
(``forward``), whose answer or rpc_error goes back as it came. When the service cannot be reached the client gets
``500 SERVICE_UNAVAILABLE``, and ``500 RPC_TIMEOUT`` when it does not answer within the gateway's timeout: as for
any 500, stock clients wait and try again (Telethon after 2 s), and the next call after the service returns goes
through.

A gateway started without services (its own tests) answers help.getConfig itself with the auth service's
answer (``services.auth.dc``), so a client can still connect; nobody can sign in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import anyio

from mtproto.tl import api, mt
from mtproto.tl.internal.types import rpc
from mtproto.tl.runtime import Reader, TLDecodeError, class_for_id
from services.auth import dc
from services.common.rpc import RpcClient, RpcError, ServiceUnavailable

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

#: Which service owns which methods: the updates service answers from the logs the message service writes.
SERVICE_BY_NAMESPACE = {"auth": "auth", "account": "auth", "users": "auth", "help": "auth",
                        "messages": "messages", "channels": "messages", "contacts": "messages", "upload": "media"}
SERVICE_BY_METHOD = {"updates.getState": "updates", "updates.getDifference": "updates",
                     "updates.getChannelDifference": "updates",
                     # presence and typing are ephemeral: the updates service keeps them in Redis and relays them
                     "account.updateStatus": "updates", "messages.setTyping": "updates"}

#: Where a method goes when its owner is not part of this stack (a gateway started with fewer services, as some
#: tests do): the first of these that is.
FALLBACK = {"updates.getState": ("messages", "auth"), "updates.getDifference": ("auth",)}

#: What a temporary key may call before it is bound to a permanent key (core.telegram.org/api/pfs).
UNBOUND_TEMP_KEY_METHODS = frozenset({"auth.bindTempAuthKey", "help.getConfig", "help.getNearestDc"})

#: Methods that change the calling key's own sign-in state: the gateway drops its cached record when one
#: answers, so the key's next request sees the change even before keys.watch reports it.
CHANGES_OWN_KEY = frozenset({"auth.signIn", "auth.signUp", "auth.logOut", "auth.bindTempAuthKey"})


def needs_authorization(name: str) -> bool:
    return not name.startswith(NO_AUTH_NAMESPACES)


def service_for(name: str, available: Collection[str] | None = None) -> str | None:
    """The service that answers ``name``; with ``available``, its fallback when the owner is not among them."""
    if name in SERVICE_BY_METHOD:
        owner = SERVICE_BY_METHOD[name]
        if available is not None and owner not in available:
            return next((s for s in FALLBACK.get(name, ()) if s in available), owner)
        return owner
    namespace, dot, _ = name.partition(".")
    return SERVICE_BY_NAMESPACE.get(namespace) if dot else None


def _unknown(name: str) -> Answer:
    return error(400, f"INPUT_METHOD_INVALID_{name.upper().replace('.', '_')}")


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the gateway knows about the calling key's sign-in state."""

    known: bool = True  # False: the auth service could not be asked (the record may be stale)
    user_id: int | None = None
    revoked: bool = False
    unbound_temporary: bool = False  # a temporary key not (yet) bound to a permanent one


def answer_at_edge(query: bytes, msg_id: int, key: KeyState, *, routed: bool, dc_id: int, port: int,
                   now: int) -> Answer | None:
    """The gateway's own answer to ``query``, or None when it must go to its service (see the module docs).

    ``routed``: services are configured; without them, help.getConfig is answered here and nothing is routed.
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
    if key.unbound_temporary and name not in UNBOUND_TEMP_KEY_METHODS:
        return error(401, "AUTH_KEY_PERM_EMPTY")
    if needs_authorization(name):
        if not key.known:
            return error(500, "SERVICE_UNAVAILABLE")
        if key.user_id is None:
            return error(401, "SESSION_REVOKED" if key.revoked else "AUTH_KEY_UNREGISTERED")
    if not routed:
        if name == "help.getConfig":
            return Answer(dc.config(dc_id, "127.0.0.1", port, now).to_bytes())
        return _unknown(name)
    if service_for(name) is None:
        return _unknown(name)
    return None


class Router:
    """The internal RPC clients of the services this gateway routes to (none: the gateway runs alone)."""

    def __init__(self, services: Mapping[str, RpcClient], *, timeout: float) -> None:
        self.services = dict(services)
        self.timeout = timeout

    @property
    def routed(self) -> bool:
        return bool(self.services)

    async def forward(self, service: str, query: bytes, ctx: rpc.Context) -> Answer:
        """The service's answer to ``query``: its result or rpc_error, or the gateway's 500 when it fails."""
        client = self.services.get(service)
        if client is None:
            return error(500, "SERVICE_UNAVAILABLE")
        try:
            with anyio.fail_after(self.timeout):
                return Answer(await client.call(query, ctx))
        except ServiceUnavailable:
            return error(500, "SERVICE_UNAVAILABLE")
        except RpcError as exc:
            return error(exc.code, exc.message)
        except TimeoutError:
            return error(500, "RPC_TIMEOUT")
