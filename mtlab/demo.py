"""`mtlab demo`: two users sign up (or in) against the running stack over two transports, with the SDK.

Each user connects (a fresh auth key), asks for a login code, signs in (or signs up when the number has no
account), reads itself back (users.getUsers [inputUserSelf]) and lists its devices (account.getAuthorizations).
The transcript says who did what, over which transport, what came back and how long it took. Messaging is not
served yet (issue #4), and the transcript says so instead of pretending.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from mtlab.client import Client, ClientConfig, RpcError, TransportKind
from mtlab.stack import RunningStack
from mtproto.tl import api
from services.auth.codes import code_for_test_number

MESSAGING = "messaging arrives with issue #4 (messages.sendMessage is not served yet)"
CALL_TIMEOUT = 20.0


@dataclass(frozen=True)
class DemoUser:
    name: str  # first name, also the transcript's label
    phone: str  # a test number 99966XYYYY: its code is X five times
    transport: TransportKind
    obfuscated: bool

    @property
    def transport_name(self) -> str:
        return f"{self.transport.value}{' + obfuscated2' if self.obfuscated else ''}"


USERS = (
    DemoUser("Alice", "9996610001", TransportKind.ABRIDGED, False),
    DemoUser("Bob", "9996620002", TransportKind.INTERMEDIATE, True),
)


def client_config(stack: RunningStack, transport: TransportKind, obfuscated: bool, device: str) -> ClientConfig:
    return ClientConfig(server_keys=stack.server_pem, host=stack.gateway_host, port=stack.gateway_port,
                        transport=transport, obfuscated=obfuscated, device_model=device, ping_interval=None)


def send_code(phone: str) -> api.functions.auth.SendCode:
    return api.functions.auth.SendCode(phone_number=phone, api_id=1, api_hash="lab",
                                       settings=api.types.CodeSettings())


ME = api.functions.users.GetUsers(id=[api.types.InputUserSelf()])


def describe_user(user: api.types.TypeUser) -> str:
    if not isinstance(user, api.types.User):
        return f"{type(user).__name__} (no such user)"
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return f"user {user.id} {name!r}, phone +{user.phone}{', self' if user.self else ''}"


def describe_authorization(a: api.types.TypeAuthorization) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(a.date_created))
    return (f"hash {a.hash}{' (this device)' if a.current else ''}: {a.device_model!r}, app {a.app_name!r} "
            f"{a.app_version}, from {a.ip or '?'}, created {when}")


class Transcript:
    """Lines prefixed with the time since the demo started."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.started = time.perf_counter()

    def line(self, who: str, text: str) -> None:
        self.say(f"[{time.perf_counter() - self.started:6.2f} s] {who:<6} {text}")


async def timed(client: Client, query: Any) -> tuple[Any, float]:
    """The answer to ``query`` and how long it took, in milliseconds."""
    started = time.perf_counter()
    with anyio.fail_after(CALL_TIMEOUT):
        result = await client.invoke(query)
    return result, (time.perf_counter() - started) * 1000


async def sign_in(client: Client, phone: str, get_code: Callable[[], Awaitable[str | None]], first_name: str,
                  last_name: str, note: Callable[[str], None], tries: int = 3) -> api.types.TypeUser | None:
    """auth.sendCode, then auth.signIn with the code ``get_code`` gives (again after a wrong one, up to ``tries``
    times), and auth.signUp when the number has no account; ``note`` hears each step. None: no code came."""
    sent, ms = await timed(client, send_code(phone))
    note(f"auth.sendCode +{phone} -> code sent (phone_code_hash {sent.phone_code_hash}), {ms:.0f} ms")
    for attempt in range(1, tries + 1):
        code = await get_code()
        if code is None:
            return None
        sign = api.functions.auth.SignIn(phone_number=phone, phone_code_hash=sent.phone_code_hash, phone_code=code)
        try:
            result, ms = await timed(client, sign)
            break
        except RpcError as exc:
            if exc.message != "PHONE_CODE_INVALID" or attempt == tries:
                raise
            note(f"auth.signIn code {code} -> 400 PHONE_CODE_INVALID (wrong code), try again")
    if isinstance(result, api.types.auth.AuthorizationSignUpRequired):
        note(f"auth.signIn code {code} -> no account yet (auth.authorizationSignUpRequired), {ms:.0f} ms")
        up = api.functions.auth.SignUp(phone_number=phone, phone_code_hash=sent.phone_code_hash,
                                       first_name=first_name, last_name=last_name)
        result, ms = await timed(client, up)
        note(f"auth.signUp {first_name!r} -> signed up: {describe_user(result.user)}, {ms:.0f} ms")
    else:
        note(f"auth.signIn code {code} -> signed in: {describe_user(result.user)}, {ms:.0f} ms")
    user: api.types.TypeUser = result.user
    return user


async def _fixed(code: str) -> str | None:
    return code


async def run_user(stack: RunningStack, user: DemoUser, transcript: Transcript) -> None:
    def note(text: str) -> None:
        transcript.line(user.name, text)

    started = time.perf_counter()
    config = client_config(stack, user.transport, user.obfuscated, f"mtlab demo ({user.name})")
    async with Client(config) as client:  # connect_timeout bounds the connection and handshake
        key = (client.auth_key_id or b"").hex()
        note(f"connected to {stack.gateway_host}:{stack.gateway_port} over {user.transport_name}: auth key {key} "
             f"created, initConnection + help.getConfig answered, {(time.perf_counter() - started) * 1000:.0f} ms")
        code = code_for_test_number(user.phone) or ""
        await sign_in(client, user.phone, lambda: _fixed(code), user.name, "Demo", note)
        [me], ms = await timed(client, ME)
        note(f"users.getUsers [inputUserSelf] -> {describe_user(me)}, {ms:.0f} ms")
        found, ms = await timed(client, api.functions.account.GetAuthorizations())
        note(f"account.getAuthorizations -> {len(found.authorizations)} device(s), {ms:.0f} ms")
        for authorization in found.authorizations:
            note(f"    {describe_authorization(authorization)}")
        note(MESSAGING)


async def demo(stack: RunningStack, say: Callable[[str], None] = print) -> int:
    say(f"mtlab demo: {len(USERS)} users against the gateway at {stack.gateway_host}:{stack.gateway_port} "
        f"(data in {stack.data_dir})")
    for user in USERS:
        say(f"  {user.name:<6} +{user.phone} (test number: code {code_for_test_number(user.phone)}) over "
            f"{user.transport_name}")
    transcript = Transcript(say)
    for user in USERS:
        try:
            await run_user(stack, user, transcript)
        except RpcError as exc:
            transcript.line(user.name, f"FAILED: {exc.method or 'call'} answered {exc.code} {exc.message}")
            if exc.is_flood_wait:
                say(f"  (too many codes for +{user.phone} lately: wait {exc.seconds} s, or see MTLAB_AUTH_* knobs)")
            return 1
        except Exception as exc:  # a demo reports what broke, in one line, and stops
            transcript.line(user.name, f"FAILED: {type(exc).__name__}: {exc}")
            return 1
    say(f"demo done in {time.perf_counter() - transcript.started:.2f} s: {len(USERS)} users signed in over "
        f"{' and '.join(u.transport_name for u in USERS)}; {MESSAGING}")
    return 0
