"""`mtlab demo`: two users sign up (or in) over two transports and talk to each other, with the SDK.

Alice and Bob each connect (a fresh auth key) and sign in (or sign up when the number has no account). Then the
private-chat flow of core.telegram.org/api/messages, one call a line: Alice finds Bob by his phone number
(contacts.importContacts, which gives her his access hash), sends him two messages (messages.sendMessage); Bob
finds them in his chat list (messages.getDialogs, which names Alice and gives her access hash to him), replies and
marks the chat read (messages.readHistory); Alice sees the reply and the read mark in hers, and edits a message
(messages.editMessage). Last, Bob's side of the conversation (messages.getHistory) is printed as a transcript: his
own copies, with his own message ids, the edit included. The transcript says who did what, over which transport,
what came back and how long it took. Run it again and the same two accounts talk again: the transcript shows only
this run's messages.

It also holds what `mtlab chat` (chat.py, secretchat.py) shares with the demo: signing in, naming peers, the lines
that describe users and messages (what a message carries included: ``describe_media``), and how a file that is
saved gets its name in the downloads folder without overwriting anything (``safe_name``, ``new_file``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from mtlab.client import Client, ClientConfig, RpcError, TransportKind
from mtlab.stack import RunningStack
from mtproto.tl import api
from services.auth.codes import code_for_test_number

CALL_TIMEOUT = 20.0
#: How long Bob waits for Alice's messages to reach his box (they normally do before her send is answered).
DELIVERY_TIMEOUT = 10.0


@dataclass(frozen=True)
class DemoUser:
    name: str  # first name, also the transcript's label
    phone: str  # a test number 99966XYYYY: its code is X five times
    transport: TransportKind
    obfuscated: bool

    @property
    def transport_name(self) -> str:
        return f"{self.transport.value}{' + obfuscated2' if self.obfuscated else ''}"


ALICE = DemoUser("Alice", "9996610001", TransportKind.ABRIDGED, False)
BOB = DemoUser("Bob", "9996620002", TransportKind.INTERMEDIATE, True)
USERS = (ALICE, BOB)

#: The conversation: Alice's two messages, Bob's reply, and what Alice changes her second message to.
ALICE_SAYS = ("Hi Bob! Lunch tomorrow?", "The usual place at noon")
BOB_SAYS = "Sounds good, see you there"
ALICE_EDITS_TO = "The usual place at 12:30"


def client_config(stack: RunningStack, transport: TransportKind, obfuscated: bool, device: str, *,
                  websocket: bool = False) -> ClientConfig:
    return ClientConfig(server_keys=stack.server_pem, host=stack.gateway_host, port=stack.gateway_port,
                        ws_port=stack.gateway_ws_port, websocket=websocket, transport=transport,
                        obfuscated=obfuscated, device_model=device, ping_interval=None)


def send_code(phone: str) -> api.functions.auth.SendCode:
    return api.functions.auth.SendCode(phone_number=phone, api_id=1, api_hash="lab",
                                       settings=api.types.CodeSettings())


ME = api.functions.users.GetUsers(id=[api.types.InputUserSelf()])
#: The newest 100 dialogs (the most one page may hold).
GET_DIALOGS = api.functions.messages.GetDialogs(offset_date=0, offset_id=0, offset_peer=api.types.InputPeerEmpty(),
                                                limit=100, hash=0)


def get_history(peer: api.types.TypeInputPeer, limit: int, min_id: int = 0) -> api.functions.messages.GetHistory:
    """The newest ``limit`` messages of a chat with ids above ``min_id``, newest first."""
    return api.functions.messages.GetHistory(peer=peer, offset_id=0, offset_date=0, add_offset=0, limit=limit,
                                             max_id=0, min_id=min_id, hash=0)


def random_id() -> int:
    """A message's random_id: the server answers a resend with the same id once (never 0)."""
    return int.from_bytes(os.urandom(8), "big", signed=True) or 1


def input_peer(user: api.types.User) -> api.types.TypeInputPeer:
    """How a query names ``user``: id and the access hash an answer showed us (core.telegram.org/api/peers)."""
    if user.self:
        return api.types.InputPeerSelf()
    return api.types.InputPeerUser(user_id=user.id, access_hash=user.access_hash or 0)


def display_name(user: api.types.TypeUser) -> str:
    if isinstance(user, api.types.User):
        name = " ".join(part for part in (user.first_name, user.last_name) if part)
        return name or (f"@{user.username}" if user.username else f"user {user.id}")
    return f"user {user.id}"


def describe_user(user: api.types.TypeUser) -> str:
    if not isinstance(user, api.types.User):
        return f"{type(user).__name__} (no such user)"
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return f"user {user.id} {name!r}, phone +{user.phone}{', self' if user.self else ''}"


def file_name(document: api.types.Document) -> str:
    """The name the sender gave a document (documentAttributeFilename), or ""."""
    return next((a.file_name for a in document.attributes if isinstance(a, api.types.DocumentAttributeFilename)), "")


def describe_media(media: api.types.TypeMessageMedia | None) -> str:
    """What a message carries: ``photo 900x600, 3 sizes`` (the largest size's dimensions: the original, which
    files.location downloads), ``file report.pdf, 12,345 bytes, application/pdf``; "" for nothing."""
    if media is None or isinstance(media, api.types.MessageMediaEmpty):
        return ""
    if isinstance(media, api.types.MessageMediaPhoto):
        photo = media.photo
        if not isinstance(photo, api.types.Photo) or not photo.sizes:
            return "photo, no longer available"
        largest = photo.sizes[-1]  # sizes come smallest first
        w, h = getattr(largest, "w", 0), getattr(largest, "h", 0)
        n = len(photo.sizes)
        return f"photo{f' {w}x{h}' if w and h else ''}, {n} size{'' if n == 1 else 's'}"
    if isinstance(media, api.types.MessageMediaDocument):
        d = media.document
        if not isinstance(d, api.types.Document):
            return "file, no longer available"
        name = file_name(d)
        return f"file{f' {name}' if name else ''}, {d.size:,} bytes, {d.mime_type}"
    return media.TL_NAME  # a kind of media mtlab does not make (geo, contact, poll...)


def message_text(m: api.types.Message) -> str:
    """The text of a message, after what it carries in brackets: ``(photo 900x600, 3 sizes) caption``."""
    carried = describe_media(m.media)
    return f"({carried}) {m.message}".rstrip() if carried else m.message


def describe_message(m: api.types.Message, who: str) -> str:
    """``#12 Alice: text (edited)``: the id (the reader's own, as /edit, /delete and /save take it), author, text
    (and what the message carries: ``#13 Alice: (photo 900x600, 3 sizes) caption``)."""
    forwarded = " (forwarded)" if m.fwd_from is not None else ""
    return f"#{m.id} {who}:{forwarded} {message_text(m)}{' (edited)' if m.edit_date else ''}"


def safe_name(name: str) -> str:
    """A sender's file name as a name in one folder: the last path component, no leading dots (nothing hidden,
    no ``..``), no control characters, at most 200 characters; "" when nothing is left."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:200]


def new_file(folder: Path, name: str) -> tuple[Path, BinaryIO]:
    """A file created for writing in ``folder``: ``name``, or ``stem (n)suffix`` when that exists already (never
    overwritten: opened with O_EXCL)."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(1000):
        path = folder / (name if n == 0 else f"{stem} ({n}){suffix}")
        try:
            return path, path.open("xb")
        except FileExistsError:
            continue
    raise OSError(f"too many files called {name!r} already")


def describe_authorization(a: api.types.TypeAuthorization) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(a.date_created))
    return (f"hash {a.hash}{' (this device)' if a.current else ''}: {a.device_model!r}, app {a.app_name!r} "
            f"{a.app_version}, from {a.ip or '?'}, created {when}")


class Transcript:
    """Lines prefixed with the time since the demo started; ``who`` is the last one to speak."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.started = time.perf_counter()
        self.who = ""

    def line(self, who: str, text: str) -> None:
        self.who = who
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


@dataclass
class Side:
    """One user of the demo, signed in: their client, their account, and their transcript label."""

    demo: DemoUser
    client: Client
    me: api.types.User
    transcript: Transcript

    def note(self, text: str) -> None:
        self.transcript.line(self.demo.name, text)

    async def call(self, query: Any) -> tuple[Any, float]:
        return await timed(self.client, query)

    async def dialog_with(self, user_id: int) -> tuple[api.types.Dialog | None, dict[int, api.types.User], float]:
        """This user's dialog with ``user_id`` (None: they never talked), the users the answer showed, the time."""
        found, ms = await self.call(GET_DIALOGS)
        users = {u.id: u for u in found.users if isinstance(u, api.types.User)}
        for d in found.dialogs:
            if isinstance(d, api.types.Dialog) and isinstance(d.peer, api.types.PeerUser) and d.peer.user_id == user_id:
                return d, users, ms
        return None, users, ms


async def signed_in(stack: RunningStack, client: Client, user: DemoUser, transcript: Transcript,
                    started: float) -> Side:
    def note(text: str) -> None:
        transcript.line(user.name, text)

    key = (client.auth_key_id or b"").hex()
    note(f"connected to {stack.gateway_host}:{stack.gateway_port} over {user.transport_name}: auth key {key} "
         f"created, initConnection + help.getConfig answered, {(time.perf_counter() - started) * 1000:.0f} ms")
    code = code_for_test_number(user.phone) or ""
    me = await sign_in(client, user.phone, lambda: _fixed(code), user.name, "Demo", note)
    if not isinstance(me, api.types.User):
        raise RuntimeError(f"signing in gave {me!r}")
    return Side(user, client, me, transcript)


async def converse(alice: Side, bob: Side) -> int:
    """The conversation; returns how many messages Bob's transcript shows."""
    # Where Bob's chat with Alice stands before this run (earlier runs left messages): the transcript starts after.
    before, _, _ = await bob.dialog_with(alice.me.id)
    bob_before = before.top_message if before is not None else 0

    contact = api.types.InputPhoneContact(client_id=random_id(), phone=bob.demo.phone, first_name=bob.demo.name,
                                          last_name="")
    found, ms = await alice.call(api.functions.contacts.ImportContacts(contacts=[contact]))
    hers = next((u for u in found.users if isinstance(u, api.types.User) and u.id == bob.me.id), None)
    if hers is None:
        raise RuntimeError(f"contacts.importContacts +{bob.demo.phone} found nobody")
    alice.note(f"contacts.importContacts +{bob.demo.phone} -> found {display_name(hers)} (user {hers.id}), "
               f"{ms:.0f} ms")
    sent: list[int] = []
    for text in ALICE_SAYS:
        done, ms = await alice.call(api.functions.messages.SendMessage(peer=input_peer(hers), message=text,
                                                                        random_id=random_id()))
        sent.append(done.id)
        alice.note(f"messages.sendMessage to {display_name(hers)}: {text!r} -> #{done.id}, {ms:.0f} ms")

    # Bob learns of Alice from his chat list: the dialog carries her user, access hash included.
    with anyio.fail_after(DELIVERY_TIMEOUT):
        while True:
            dialog, users, ms = await bob.dialog_with(alice.me.id)
            if dialog is not None and dialog.top_message > bob_before and alice.me.id in users:
                break
            await anyio.sleep(0.1)
    his = users[alice.me.id]
    bob.note(f"messages.getDialogs -> {display_name(his)}: {dialog.unread_count} unread, {ms:.0f} ms")
    done, ms = await bob.call(api.functions.messages.SendMessage(peer=input_peer(his), message=BOB_SAYS,
                                                                  random_id=random_id()))
    bob.note(f"messages.sendMessage to {display_name(his)}: {BOB_SAYS!r} -> #{done.id}, {ms:.0f} ms")
    read, ms = await bob.call(api.functions.messages.ReadHistory(peer=input_peer(his), max_id=0))
    bob.note(f"messages.readHistory with {display_name(his)} -> read, pts {read.pts}, {ms:.0f} ms")

    dialog, _, ms = await alice.dialog_with(bob.me.id)
    if dialog is not None:
        seen = "read both" if dialog.read_outbox_max_id >= sent[-1] else f"read up to #{dialog.read_outbox_max_id}"
        alice.note(f"messages.getDialogs -> {display_name(hers)}: {dialog.unread_count} unread, "
                   f"{bob.demo.name} has {seen}, {ms:.0f} ms")
    _, ms = await alice.call(api.functions.messages.EditMessage(peer=input_peer(hers), id=sent[-1],
                                                                message=ALICE_EDITS_TO))
    alice.note(f"messages.editMessage #{sent[-1]} -> {ALICE_EDITS_TO!r}, {ms:.0f} ms")

    page, ms = await bob.call(get_history(input_peer(his), 100, min_id=bob_before))
    shown = [m for m in reversed(page.messages) if isinstance(m, api.types.Message)]
    bob.note(f"messages.getHistory with {display_name(his)} -> {len(shown)} messages, {ms:.0f} ms; his side of "
             "the chat:")
    for m in shown:
        bob.note("    " + describe_message(m, bob.demo.name if m.out else alice.demo.name))
    return len(shown)


async def demo(stack: RunningStack, say: Callable[[str], None] = print) -> int:
    say(f"mtlab demo: {len(USERS)} users against the gateway at {stack.gateway_host}:{stack.gateway_port} "
        f"(data in {stack.data_dir})")
    for user in USERS:
        say(f"  {user.name:<6} +{user.phone} (test number: code {code_for_test_number(user.phone)}) over "
            f"{user.transport_name}")
    transcript = Transcript(say)
    sides: list[Side] = []
    try:
        started = time.perf_counter()
        transcript.who = ALICE.name
        async with Client(client_config(stack, ALICE.transport, ALICE.obfuscated, "mtlab demo (Alice)")) as a:
            sides.append(await signed_in(stack, a, ALICE, transcript, started))
            started = time.perf_counter()
            transcript.who = BOB.name
            async with Client(client_config(stack, BOB.transport, BOB.obfuscated, "mtlab demo (Bob)")) as b:
                sides.append(await signed_in(stack, b, BOB, transcript, started))
                shown = await converse(*sides)
    except RpcError as exc:
        transcript.line(transcript.who, f"FAILED: {exc.method or 'call'} answered {exc.code} {exc.message}")
        if exc.is_flood_wait:
            phone = next(u.phone for u in USERS if u.name == transcript.who)
            say(f"  (too many codes for +{phone} lately: wait {exc.seconds} s, or see MTLAB_AUTH_* knobs)")
        return 1
    except Exception as exc:  # a demo reports what broke, in one line, and stops
        transcript.line(transcript.who, f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    say(f"demo done in {time.perf_counter() - transcript.started:.2f} s: {len(USERS)} users signed in over "
        f"{' and '.join(u.transport_name for u in USERS)} and exchanged {shown} messages (one edited, all read)")
    return 0
