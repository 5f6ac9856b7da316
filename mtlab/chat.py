"""`mtlab chat`: an interactive client of the running stack, one line at a time.

It signs in (the code from ``--code`` or typed on stdin), then reads commands: ``/me``, ``/sessions``,
``/revoke HASH``, ``/config``, ``/ping``, ``/help``, ``/quit``. Any other line would be a message, and messaging
arrives with issue #4, which is what it answers. It needs no terminal: lines come from stdin as they would from
a pipe, and the end of input ends the session like ``/quit``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

import anyio

from mtlab.client import Client, ClientError, RpcError, TransportKind
from mtlab.demo import ME, MESSAGING, client_config, describe_authorization, describe_user, sign_in, timed
from mtlab.stack import RunningStack
from mtproto.tl import api
from services.auth.codes import code_for_test_number

HELP = """commands:
  /me             who you are (users.getUsers [inputUserSelf])
  /sessions       your signed-in devices (account.getAuthorizations)
  /revoke HASH    sign out the device with this hash (account.resetAuthorization; see /sessions)
  /config         what help.getConfig says (the DC and its address)
  /ping           round-trip time of one MTProto ping
  /help           this list
  /quit           leave (so does the end of input)
anything else is a message: """ + MESSAGING


@dataclass(frozen=True)
class ChatOptions:
    phone: str | None
    code: str | None
    name: str | None  # "First [Last]" for a new account
    transport: TransportKind
    obfuscated: bool


class Console:
    """Prompts on ``out`` and lines from ``source`` (read in a worker thread: stdin may be a pipe, not a TTY)."""

    def __init__(self, source: TextIO, out: TextIO) -> None:
        self.source, self.out = source, out

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def ask(self, prompt: str) -> str | None:
        """The next line without its newline, or None at the end of input."""
        self.out.write(prompt)
        self.out.flush()
        line = await anyio.to_thread.run_sync(self.source.readline)
        if not line:
            self.say("")
            return None
        if not self.source.isatty():
            self.say(line.rstrip("\n"))  # echo piped input, so the transcript reads as a conversation
        return line.strip()


async def _me(client: Client, console: Console, _arg: str) -> None:
    [me], ms = await timed(client, ME)
    console.say(f"{describe_user(me)} ({ms:.0f} ms)")


async def _sessions(client: Client, console: Console, _arg: str) -> None:
    found, ms = await timed(client, api.functions.account.GetAuthorizations())
    console.say(f"{len(found.authorizations)} device(s) signed in ({ms:.0f} ms):")
    for authorization in found.authorizations:
        console.say(f"  {describe_authorization(authorization)}")


async def _revoke(client: Client, console: Console, arg: str) -> None:
    try:
        target = int(arg)
    except ValueError:
        console.say("usage: /revoke HASH (the hash /sessions shows)")
        return
    done, ms = await timed(client, api.functions.account.ResetAuthorization(hash=target))
    console.say(f"account.resetAuthorization -> {done} ({ms:.0f} ms)")


async def _config(client: Client, console: Console, _arg: str) -> None:
    config, ms = await timed(client, api.functions.help.GetConfig())
    options = ", ".join(f"DC {o.id} at {o.ip_address}:{o.port}" for o in config.dc_options)
    console.say(f"this DC {config.this_dc}; {options}; test mode {config.test_mode}; config expires in "
                f"{config.expires - config.date} s ({ms:.0f} ms)")


async def _ping(client: Client, console: Console, _arg: str) -> None:
    with anyio.fail_after(20):
        console.say(f"pong in {await client.ping() * 1000:.1f} ms")


async def _help(_client: Client, console: Console, _arg: str) -> None:
    console.say(HELP)


Command = Callable[[Client, Console, str], Awaitable[None]]
COMMANDS: dict[str, Command] = {"/me": _me, "/sessions": _sessions, "/revoke": _revoke, "/config": _config,
                                "/ping": _ping, "/help": _help}


async def run_command(client: Client, console: Console, line: str) -> None:
    """One line of the loop (not /quit): a command, or text, which cannot be sent yet."""
    word, _, arg = line.partition(" ")
    if not word.startswith("/"):
        console.say(MESSAGING)
        return
    command = COMMANDS.get(word)
    if command is None:
        console.say(f"unknown command {word}: /help lists them")
        return
    try:
        await command(client, console, arg.strip())
    except RpcError as exc:
        console.say(f"error: {exc.code} {exc.message}")


async def _sign_in(client: Client, console: Console, options: ChatOptions) -> bool:
    """Ask for what is missing and sign in; False when the input ended first."""
    phone = options.phone or await console.ask("phone number (test numbers 99966XYYYY get the code X five times): ")
    if not phone:
        return False
    phone = phone.lstrip("+")
    fixed = code_for_test_number(phone)
    if fixed and not options.code:
        console.say(f"+{phone} is a test number (99966XYYYY): its code is X five times, {fixed}")
    given = [options.code] if options.code else []

    async def get_code() -> str | None:
        if given:
            return given.pop()
        return await console.ask("login code (also in the stack's logs/auth.log, or `mtlab codes`): ") or None

    name = options.name or f"User {phone[-4:]}"
    first, _, last = name.partition(" ")
    return await sign_in(client, phone, get_code, first, last, lambda text: console.say(f"  {text}")) is not None


async def chat(stack: RunningStack, options: ChatOptions, console: Console) -> int:
    transport = f"{options.transport.value}{' + obfuscated2' if options.obfuscated else ''}"
    config = client_config(stack, options.transport, options.obfuscated, "mtlab chat")
    console.say(f"mtlab chat: connecting to {stack.gateway_host}:{stack.gateway_port} over {transport}")
    try:
        async with Client(config) as client:
            console.say(f"connected: auth key {(client.auth_key_id or b'').hex()}")
            if not await _sign_in(client, console, options):
                console.say("bye (end of input before signing in)")
                return 1
            console.say("signed in; /help lists the commands")
            while (line := await console.ask("> ")) is not None and line != "/quit":
                if line:
                    await run_command(client, console, line)
    except RpcError as exc:
        console.say(f"error: {exc.method or 'call'} answered {exc.code} {exc.message}")
        return 1
    except ClientError as exc:
        console.say(f"error: {type(exc).__name__}: {exc}")
        return 1
    console.say("bye")
    return 0


def run(stack: RunningStack, options: ChatOptions) -> int:
    return anyio.run(chat, stack, options, Console(sys.stdin, sys.stdout))
