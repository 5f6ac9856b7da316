"""`mtlab chat`: an interactive client of the running stack, one line at a time.

It signs in (the code from ``--code`` or typed on stdin), then reads lines. A line starting with ``/`` is a command
(``/help`` lists them); any other line is a message to the current peer (messages.sendMessage). People are found
the ways core.telegram.org/api/contacts describes, each of which hands the client the user's access hash that every
later call naming them needs: by phone number (``/add``, contacts.importContacts), in the contact list
(``/contacts``), by public username (``/to @name``, contacts.resolveUsername), or in the chat list (``/dialogs``:
whoever wrote to you). ``/to`` picks who plain lines go to; ``/history``, ``/edit``, ``/delete``, ``/read`` and
``/search`` work on the message box. Message ids are the reader's own: each side of a private chat numbers its copies
itself, so ``/history`` shows the ids ``/edit`` and ``/delete`` take.

Incoming messages arrive live: the updates service pushes them, and the SDK's ordered stream
(``Client.ordered_updates``: pts order, gaps filled with updates.getDifference, core.telegram.org/api/updates) hands
each one over once. Incoming ones print as ``[Name] text`` (``[Name in Title] text`` in a group or a channel, or
``[Title] text`` for a post without an author); your own, sent here or from another device, do not.

Photos and files (core.telegram.org/api/files): ``/photo PATH`` and ``/file PATH`` upload the file in parts
(upload.saveFilePart, the SDK's ``files.upload``) and send it with messages.sendMedia (inputMediaUploadedPhoto, or
inputMediaUploadedDocument with the file's name and a MIME type guessed from it). A message that carries one shows
what it carries, in history, search and live lines alike: ``#13 Alice: (photo 900x600, 3 sizes) caption``, and live
``[Alice] #13 (file report.pdf, 12,345 bytes, application/pdf) caption`` (the id, which text lines leave out, is
what ``/save`` takes). ``/save ID`` downloads it (upload.getFile, the SDK's ``files.download``; for a photo its
largest size, which is the original the sender uploaded) into the ``--downloads`` folder, never over a file there.

It needs no terminal: lines come from stdin as they would from a pipe, read by a thread of their own while the
receiver runs, and the end of input ends the session like ``/quit``.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from mtlab import secretchat
from mtlab.client import Client, ClientError, Reset, RpcError, TransportKind, Update, files
from mtlab.demo import (
    CALL_TIMEOUT,
    GET_DIALOGS,
    ME,
    client_config,
    describe_authorization,
    describe_media,
    describe_message,
    describe_user,
    display_name,
    file_name,
    get_history,
    input_peer,
    message_text,
    new_file,
    random_id,
    safe_name,
    sign_in,
    timed,
)
from mtlab.stack import RunningStack
from mtproto.tl import api
from services.auth.codes import code_for_test_number
from services.common.config import ConfigError, MediaConfig, media_config

HELP = """commands:
  /add PHONE [First [Last]]  find who has this number and keep them as a contact (contacts.importContacts)
  /contacts                  your contacts (contacts.getContacts)
  /to PHONE|@username|NAME   who plain lines go to: a contact by number or by name, or a public username
  /dialogs                   your chats, newest first, with unread counts (messages.getDialogs)
  /history [N]               the last N messages (default 20) with the current peer, oldest first
  /edit ID TEXT              change the text of your message ID (messages.editMessage)
  /delete ID [--everyone]    delete message ID for you, or for both sides (messages.deleteMessages)
  /read                      mark your chat with the current peer read (messages.readHistory)
  /search TEXT               messages containing TEXT, in every chat (messages.search)
  /photo PATH [caption]      send the picture at PATH to the current peer (upload.saveFilePart, messages.sendMedia)
  /file PATH [caption]       send the file at PATH to the current peer as a document, with its name and type
  /save ID                   download what message ID carries (a photo's largest size) into the --downloads folder
  /me                        who you are (users.getUsers [inputUserSelf])
  /sessions                  your signed-in devices (account.getAuthorizations)
  /revoke HASH               sign out the device with this hash (account.resetAuthorization; see /sessions)
  /config                    what help.getConfig says (the DC and its address)
  /ping                      round-trip time of one MTProto ping
  /secret NAME|PHONE         ask for an end-to-end encrypted chat with this device (messages.requestEncryption)
  /accept ID                 accept secret chat ID someone asked you for (messages.acceptEncryption)
  /s TEXT                    send TEXT to the current secret chat, encrypted for their device only
  /sfile PATH                send the file at PATH to the current secret chat, encrypted end to end (a file that
                             arrives in a secret chat is saved in the --downloads folder: the line says where)
  /close [ID]                close a secret chat, the current one by default (messages.discardEncryption)
  /secrets                   the secret chats of this session (mtlab/secretchat.py)
  /help                      this list
  /quit                      leave (so does the end of input)
anything else is a message to the current peer (messages.sendMessage);
messages that arrive print as [Name] text, or [Name] #ID (photo WxH, N sizes) caption when they carry something
(/save ID downloads it); a PATH with spaces may be put in quotes, or not: the longest start of the line that names
a file is the path"""

NO_PEER = "nobody chosen to write to: /to PHONE|@username|NAME first (/add PHONE finds someone)"
HISTORY_DEFAULT, HISTORY_MAX = 20, 100

#: What the media service's refusal of an upload means to the sender (any other error is printed as it comes).
UPLOAD_REFUSED = {
    "FILE_PARTS_INVALID": "the media service takes no file this large",
    "MEDIA_QUOTA_EXCEEDED": "your space on the media service is used up (MTLAB_MEDIA_QUOTA_BYTES)",
}
#: A photo has no name of its own: its file name's suffix is the type upload.getFile says its bytes are.
PHOTO_SUFFIXES: dict[type[api.types.storage.TypeFileType], str] = {
    api.types.storage.FileJpeg: ".jpg", api.types.storage.FilePng: ".png", api.types.storage.FileGif: ".gif",
    api.types.storage.FileWebp: ".webp",
}
#: How much of a photo /save reads first to learn its type (upload.getFile's smallest aligned request).
PROBE = 4096


def live_text(m: api.types.Message) -> str:
    """What a line that arrives says of ``m``: its text; first its id and what it carries, when it carries a photo or
    a file (the id is what /save takes)."""
    return f"#{m.id} {message_text(m)}" if describe_media(m.media) else m.message


@dataclass(frozen=True)
class ChatOptions:
    phone: str | None
    code: str | None
    name: str | None  # "First [Last]" for a new account
    transport: TransportKind
    obfuscated: bool
    websocket: bool = False  # over the gateway's WebSocket port (obfuscated is then required)
    poll: float = 1.0  # 0: do not show incoming messages; any other value: show them as they arrive
    downloads: Path | None = None  # where files that arrive in secret chats go (None: <data dir>/downloads)


class Console:
    """Prompts and lines on ``out``; lines from ``source``, read by a daemon thread (stdin may be a pipe, not a TTY,
    and a thread blocked in ``readline`` must not keep the process alive once the chat is over)."""

    def __init__(self, source: TextIO, out: TextIO) -> None:
        self.source, self.out = source, out
        self._lines: MemoryObjectReceiveStream[str] | None = None
        self._prompt: str | None = None  # the prompt on screen, waiting for a line
        self._ended = False  # the input ended

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def notice(self, text: str) -> None:
        """A line that comes on its own (a message arrived): on a line of its own, then the prompt again."""
        prompt = self._prompt
        if prompt is not None:
            self.out.write("\n")
        self.say(text)
        if prompt is not None:
            self.out.write(prompt)
            self.out.flush()

    async def ask(self, prompt: str) -> str | None:
        """The next line without its newline, or None at the end of input."""
        if self._ended:
            return None
        if self._lines is None:
            self._lines = self._start_reader()
        self.out.write(prompt)
        self.out.flush()
        self._prompt = prompt
        try:
            line = await self._lines.receive()
        except BaseException:  # cancelled (the connection was lost): what follows gets a line of its own
            self.out.write("\n")
            raise
        finally:
            self._prompt = None
        if not line:
            self._ended = True
            self.say("")
            return None
        if not self.source.isatty():
            self.say(line.rstrip("\n"))  # echo piped input, so the transcript reads as a conversation
        return line.strip()

    def _start_reader(self) -> MemoryObjectReceiveStream[str]:
        send, receive = anyio.create_memory_object_stream[str]()  # unbuffered: the thread reads one line ahead
        token = anyio.lowlevel.current_token()

        def read() -> None:
            while True:
                line = self.source.readline()  # "" at the end of input, handed over like a line
                try:
                    anyio.from_thread.run(send.send, line, token=token)
                except BaseException:  # the loop is gone or cancelled the hand-over: the chat is over
                    return
                if not line:
                    return

        threading.Thread(target=read, name="mtlab chat stdin", daemon=True).start()
        return receive


class Chat:
    """One signed-in session: who you are, who plain lines go to, and the users answers have shown (each with the
    access hash a query naming them needs)."""

    def __init__(self, client: Client, console: Console, me: api.types.User, *,
                 downloads: Path = Path("downloads")) -> None:
        self.client, self.console, self.me = client, console, me
        self.downloads = downloads  # where /save and files that arrive in secret chats (secretchat.py) put files
        self.users: dict[int, api.types.User] = {me.id: me}
        self.phones: dict[int, str] = {}  # user id -> number, as contacts.* show it (other answers leave it out)
        self.peer: api.types.User | None = None
        self.failure: ClientError | None = None  # why the session ended, if the connection did it
        # (peer, text) of what this device is sending: the stream shows our own sends too (the SDK turns the
        # answer into an update), and only the ones from the user's other devices are news here.
        self.sending: list[tuple[int, str]] = []

    async def call(self, query: Any) -> Any:
        result, _ = await timed(self.client, query)
        return result

    def say(self, text: str) -> None:
        self.console.say(text)

    def learn(self, users: list[api.types.TypeUser]) -> None:
        for user in users:
            if isinstance(user, api.types.User):
                self.users[user.id] = user
                if user.phone:
                    self.phones[user.id] = user.phone

    def name(self, user_id: int) -> str:
        user = self.users.get(user_id)
        return display_name(user) if user is not None else f"user {user_id}"

    def author(self, m: api.types.Message) -> str:
        if m.out:
            return "you"
        return self.name(m.from_id.user_id) if isinstance(m.from_id, api.types.PeerUser) else "?"

    def current(self) -> api.types.User | None:
        if self.peer is None:
            self.say(NO_PEER)
        return self.peer

    def choose(self, user: api.types.User) -> None:
        self.peer = user
        self.say(f"plain lines now go to {display_name(user)}")

    # -- the loop -------------------------------------------------------------------------------------------

    async def run(self, live: bool) -> None:
        """Read lines until /quit or the end of input, showing what arrives meanwhile (``live``); raises what ended
        the connection."""
        async with anyio.create_task_group() as tg:
            if live:
                tg.start_soon(self._receive, tg.cancel_scope)
            while (line := await self.console.ask("> ")) is not None and line != "/quit":
                if line:
                    try:
                        await self.run_line(line)
                    except ClientError as exc:  # the connection is gone: nothing more can work
                        self.failure = exc
                        break
            tg.cancel_scope.cancel()
        if self.failure is not None:
            raise self.failure

    async def run_line(self, line: str) -> None:
        """One line that is not /quit: a command, or a message to the current peer."""
        word, _, arg = line.partition(" ")
        try:
            if not word.startswith("/"):
                await self.send(line)
                return
            command = COMMANDS.get(word)
            if command is None:
                self.say(f"unknown command {word}: /help lists them")
                return
            await command(self, arg.strip())
        except RpcError as exc:
            self.say(f"error: {exc.code} {exc.message}")
        except TimeoutError:
            self.say(f"error: no answer in {CALL_TIMEOUT:.0f} s")

    async def send(self, text: str) -> None:
        peer = self.current()
        if peer is None:
            return
        self.sending.append((peer.id, text))
        sent, ms = await timed(self.client, api.functions.messages.SendMessage(
            peer=input_peer(peer), message=text, random_id=random_id()))
        self.say(f"sent #{sent.id} to {display_name(peer)} ({ms:.0f} ms)")

    # -- incoming messages ----------------------------------------------------------------------------------

    async def show(self, event: Update | Reset) -> None:
        """One event of the ordered stream: an incoming message printed, a reset said."""
        if isinstance(event, Reset):
            what = "your chats" if event.channel_id is None else f"channel {event.channel_id}"
            self.console.notice(f"(too much happened in {what} to replay it: /dialogs and /history show where it "
                                "stands)")
            return
        self.learn(list(event.users.values()))
        update = event.update
        await secretchat.on_update(self, update)  # a secret chat's update: secretchat.py says what it means
        if not isinstance(update, (api.types.UpdateNewMessage, api.types.UpdateNewChannelMessage)):
            return
        m = update.message
        if not isinstance(m, api.types.Message):
            return
        if m.out:  # sent by this user: from this device (said already), or from another one (news)
            to = m.peer_id.user_id if isinstance(m.peer_id, api.types.PeerUser) else None
            if to is not None and (to, m.message) in self.sending:
                self.sending.remove((to, m.message))
            elif to is not None:
                self.console.notice(f"[you, on another device, to {self.name(to)}] {live_text(m)}")
            return
        forwarded = "(forwarded) " if m.fwd_from is not None else ""
        if isinstance(m.from_id, api.types.PeerUser) and m.from_id.user_id not in self.users:
            # updateShortMessage names the sender by id only: their name is in the chat list (so is the access
            # hash a reply needs)
            with contextlib.suppress(RpcError, TimeoutError):
                await self.refresh()
        sender = self.name(m.from_id.user_id) if isinstance(m.from_id, api.types.PeerUser) else None
        where = None
        if isinstance(m.peer_id, (api.types.PeerChat, api.types.PeerChannel)):
            chat_id = m.peer_id.chat_id if isinstance(m.peer_id, api.types.PeerChat) else m.peer_id.channel_id
            chat = event.chats.get(chat_id)
            where = getattr(chat, "title", None) or f"chat {chat_id}"
        label = where if sender is None else sender if where is None else f"{sender} in {where}"
        self.console.notice(f"[{label}] {forwarded}{live_text(m)}")

    async def _receive(self, scope: anyio.CancelScope) -> None:
        """Show the ordered stream as it comes; a lost connection (or signing out) ends the session."""
        try:
            async for event in self.client.ordered_updates():
                await self.show(event)
        except ClientError as exc:
            self.failure = exc
            scope.cancel()

    # -- finding people -------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Everyone in the contact list and the chat list, with their access hashes."""
        contacts = await self.call(api.functions.contacts.GetContacts(hash=0))
        self.learn(contacts.users)
        dialogs = await self.call(GET_DIALOGS)
        self.learn(dialogs.users)

    def by_phone(self, phone: str) -> api.types.User | None:
        return next((self.users[uid] for uid, known in self.phones.items() if known == phone and uid != self.me.id),
                    None)

    def by_name(self, name: str) -> list[api.types.User]:
        """The users whose name is ``name`` (any case); if none, whose first name is; then starts, then contains."""
        wanted = name.casefold()
        others = [u for u in self.users.values() if u.id != self.me.id]
        tests: list[Callable[[api.types.User], bool]] = [
            lambda u: display_name(u).casefold() == wanted,
            lambda u: (u.first_name or "").casefold() == wanted,
            lambda u: display_name(u).casefold().startswith(wanted),
            lambda u: wanted in display_name(u).casefold(),
        ]
        for test in tests:
            found = [u for u in others if test(u)]
            if found:
                return found
        return []


# -- commands -----------------------------------------------------------------------------------------------


async def _add(chat: Chat, arg: str) -> None:
    words = arg.split()
    if not words or not words[0].lstrip("+").isdigit():
        chat.say("usage: /add PHONE [First [Last]] (the number with its country code, digits only)")
        return
    phone = words[0].lstrip("+")
    if phone == chat.me.phone:
        chat.say(f"+{phone} is your own number")
        return
    first, last = (words[1] if len(words) > 1 else ""), " ".join(words[2:])
    contact = api.types.InputPhoneContact(client_id=random_id(), phone=phone, first_name=first, last_name=last)
    found, ms = await timed(chat.client, api.functions.contacts.ImportContacts(contacts=[contact]))
    chat.learn(found.users)
    if not found.imported:
        chat.say(f"nobody has the number +{phone} ({ms:.0f} ms)")
        return
    user = chat.users[found.imported[0].user_id]
    chat.say(f"found {display_name(user)} (user {user.id}, +{phone}): now one of your contacts ({ms:.0f} ms)")
    if chat.peer is None:
        chat.choose(user)


async def _contacts(chat: Chat, _arg: str) -> None:
    found, ms = await timed(chat.client, api.functions.contacts.GetContacts(hash=0))
    chat.learn(found.users)
    if not found.contacts:
        chat.say(f"no contacts yet: /add PHONE finds someone ({ms:.0f} ms)")
        return
    chat.say(f"{len(found.contacts)} contact(s) ({ms:.0f} ms):")
    for c in found.contacts:
        user = chat.users.get(c.user_id)
        if user is None:
            continue
        username = f"  @{user.username}" if user.username else ""
        phone = f"  +{user.phone}" if user.phone else ""
        chat.say(f"  {display_name(user)}{phone}{username}{'  (mutual)' if c.mutual else ''}")


async def _to(chat: Chat, arg: str) -> None:
    if not arg:
        if chat.peer is None:
            chat.say("usage: /to PHONE|@username|NAME")
        else:
            chat.say(f"plain lines go to {display_name(chat.peer)}")
        return
    if arg.startswith("@"):
        try:
            found = await chat.call(api.functions.contacts.ResolveUsername(username=arg[1:]))
        except RpcError as exc:
            if exc.message not in ("USERNAME_NOT_OCCUPIED", "USERNAME_INVALID"):
                raise
            chat.say(f"nobody has the username {arg}" if exc.message == "USERNAME_NOT_OCCUPIED"
                     else f"{arg} is not a username (5 to 32 letters, digits and _, a letter first)")
            return
        chat.learn(found.users)
        if isinstance(found.peer, api.types.PeerUser) and found.peer.user_id in chat.users:
            chat.choose(chat.users[found.peer.user_id])
        else:
            chat.say(f"{arg} is not a user")
        return
    if arg.lstrip("+").isdigit():
        phone = arg.lstrip("+")
        user = chat.by_phone(phone)
        if user is None:
            await chat.refresh()
            user = chat.by_phone(phone)
        if user is None:
            chat.say(f"none of your contacts has the number +{phone}: /add {phone} looks for them")
        else:
            chat.choose(user)
        return
    matches = chat.by_name(arg)
    if not matches:
        await chat.refresh()
        matches = chat.by_name(arg)
    if not matches:
        chat.say(f"nobody called {arg!r} among your contacts and chats (/contacts, /dialogs)")
    elif len(matches) > 1:
        names = ", ".join(f"{display_name(u)} (+{chat.phones[u.id]})" if u.id in chat.phones else display_name(u)
                          for u in matches)
        chat.say(f"{arg!r} could be {names}: say more of the name, or the number")
    else:
        chat.choose(matches[0])


async def _dialogs(chat: Chat, _arg: str) -> None:
    found, ms = await timed(chat.client, GET_DIALOGS)
    chat.learn(found.users)
    tops = {m.id: m for m in found.messages if isinstance(m, api.types.Message)}
    dialogs = [(d, d.peer.user_id) for d in found.dialogs
               if isinstance(d, api.types.Dialog) and isinstance(d.peer, api.types.PeerUser)]
    if not dialogs:
        chat.say(f"no chats yet ({ms:.0f} ms)")
        return
    chat.say(f"{len(dialogs)} chat(s), newest first ({ms:.0f} ms):")
    for d, peer_id in dialogs:
        mark = "*" if chat.peer is not None and chat.peer.id == peer_id else " "
        unread = f"{d.unread_count} unread" if d.unread_count else "all read"
        top = tops.get(d.top_message)
        last = f"  {describe_message(top, chat.author(top))}" if top is not None else ""
        chat.say(f" {mark}{chat.name(peer_id)}: {unread}{last}")


async def _history(chat: Chat, arg: str) -> None:
    try:
        limit = int(arg) if arg else HISTORY_DEFAULT
    except ValueError:
        limit = 0
    if not 1 <= limit <= HISTORY_MAX:
        chat.say(f"usage: /history [N] (1 to {HISTORY_MAX} messages, default {HISTORY_DEFAULT})")
        return
    peer = chat.current()
    if peer is None:
        return
    page, ms = await timed(chat.client, get_history(input_peer(peer), limit))
    chat.learn(page.users)
    shown = [m for m in reversed(page.messages) if isinstance(m, api.types.Message)]
    if not shown:
        chat.say(f"no messages with {display_name(peer)} yet ({ms:.0f} ms)")
        return
    total = getattr(page, "count", len(shown))
    chat.say(f"the last {len(shown)} of {total} message(s) with {display_name(peer)} ({ms:.0f} ms):")
    for m in shown:
        chat.say(f"  {describe_message(m, chat.author(m))}")


async def _edit(chat: Chat, arg: str) -> None:
    number, _, text = arg.partition(" ")
    if not number.isdigit() or not text.strip():
        chat.say("usage: /edit ID TEXT (ID as /history shows it)")
        return
    peer = chat.current()
    if peer is None:
        return
    _, ms = await timed(chat.client, api.functions.messages.EditMessage(peer=input_peer(peer), id=int(number),
                                                                         message=text.strip()))
    chat.say(f"edited #{number} ({ms:.0f} ms)")


async def _delete(chat: Chat, arg: str) -> None:
    words = arg.split()
    everyone = "--everyone" in words
    ids = [w for w in words if w != "--everyone"]
    if not ids or not all(w.isdigit() for w in ids):
        chat.say("usage: /delete ID [--everyone] (ID as /history shows it; --everyone: the other side's copy too)")
        return
    done, ms = await timed(chat.client, api.functions.messages.DeleteMessages(id=[int(w) for w in ids],
                                                                               revoke=everyone))
    names = ", ".join(f"#{w}" for w in ids)
    if not done.pts_count:
        chat.say(f"nothing deleted: no message {names} in your box ({ms:.0f} ms)")
    else:
        chat.say(f"deleted {done.pts_count} message(s) of {names} {'for everyone' if everyone else 'for you'} "
                 f"({ms:.0f} ms)")


async def _read(chat: Chat, _arg: str) -> None:
    peer = chat.current()
    if peer is None:
        return
    done, ms = await timed(chat.client, api.functions.messages.ReadHistory(peer=input_peer(peer), max_id=0))
    if done.pts_count:
        chat.say(f"marked your chat with {display_name(peer)} read ({ms:.0f} ms)")
    else:
        chat.say(f"nothing unread from {display_name(peer)} ({ms:.0f} ms)")


async def _search(chat: Chat, arg: str) -> None:
    if not arg:
        chat.say("usage: /search TEXT")
        return
    found, ms = await timed(chat.client, api.functions.messages.Search(
        peer=api.types.InputPeerEmpty(), q=arg, filter=api.types.InputMessagesFilterEmpty(), min_date=0,
        max_date=0, offset_id=0, add_offset=0, limit=HISTORY_DEFAULT, max_id=0, min_id=0, hash=0))
    chat.learn(found.users)
    shown = [m for m in reversed(found.messages) if isinstance(m, api.types.Message)]
    if not shown:
        chat.say(f"no message contains {arg!r} ({ms:.0f} ms)")
        return
    chat.say(f"{len(shown)} message(s) contain {arg!r} ({ms:.0f} ms):")
    for m in shown:
        where = chat.name(m.peer_id.user_id) if isinstance(m.peer_id, api.types.PeerUser) else "?"
        chat.say(f"  with {where}: {describe_message(m, chat.author(m))}")


# -- photos and files ---------------------------------------------------------------------------------------


def upload_limit() -> int:
    """The largest file the media service takes, as this environment configures it (MTLAB_MEDIA_MAX_FILE_SIZE, and
    MTLAB_MEDIA_MAX_PARTS of the SDK's 512 KiB parts: `mtlab up` run from the same environment reads the same
    knobs), so that a file it would refuse is not uploaded first; the service's own answer still decides."""
    try:
        config = media_config(os.environ)
    except ConfigError:  # the service would not start with that value: it runs with something else
        config = MediaConfig()
    return min(config.max_file_size, config.max_parts * files.PART)


def path_and_caption(arg: str) -> tuple[Path, str]:
    """``PATH [caption]``: the path is what is in quotes at the start (``"my photo.png" caption``), else the longest
    run of leading words that names something on disk (a name with spaces needs no quotes), else the first word; the
    rest is the caption."""
    quote = arg[:1]
    if quote in ("'", '"') and (end := arg.find(quote, 1)) > 0:
        return Path(arg[1:end]).expanduser(), arg[end + 1:].strip()
    words = arg.split(" ")
    for n in range(len(words), 0, -1):
        path = Path(" ".join(words[:n])).expanduser()
        if path.exists():
            return path, " ".join(words[n:]).strip()
    return Path(words[0]).expanduser(), " ".join(words[1:]).strip()


def unreadable(path: Path) -> str | None:
    """Why the file at ``path`` cannot be sent, or None when it can be read."""
    if not path.exists():
        return f"no file at {path}"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        path.open("rb").close()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


async def _send_media(chat: Chat, arg: str, *, photo: bool) -> None:
    """/photo and /file: upload the file in parts, then messages.sendMedia to the current peer."""
    if not arg:
        chat.say(f"usage: {'/photo' if photo else '/file'} PATH [caption]")
        return
    peer = chat.current()
    if peer is None:
        return
    path, caption = path_and_caption(arg)
    problem = unreadable(path)
    if problem is not None:
        chat.say(f"not sent: {problem}")
        return
    size, limit = path.stat().st_size, upload_limit()
    if size > limit:
        chat.say(f"not sent: {path.name} is {size:,} bytes, more than the media service takes ({limit:,} bytes)")
        return
    started = time.perf_counter()
    try:
        answer = await _upload_and_send(chat, peer, path, caption, photo=photo)
    except TimeoutError:  # an OSError too, but the server's silence, not the file's: run_line says it
        raise
    except OSError as exc:  # the file changed, or went, while it was read
        chat.say(f"not sent: cannot read {path}: {exc.strerror or exc}")
        return
    except RpcError as exc:
        if exc.message not in UPLOAD_REFUSED:
            raise  # run_line says it
        chat.say(f"not sent: {exc.code} {exc.message}: {UPLOAD_REFUSED[exc.message]}")
        return
    ms = (time.perf_counter() - started) * 1000
    sent = next((u.message for u in getattr(answer, "updates", []) if isinstance(u, api.types.UpdateNewMessage)
                 and isinstance(u.message, api.types.Message)), None)
    if sent is None:
        chat.say(f"sent {path.name} to {display_name(peer)} ({size:,} bytes, {ms:.0f} ms)")
        return
    as_file = isinstance(sent.media, api.types.MessageMediaDocument)  # its line says its size already
    note = ""
    if photo and as_file:
        note = "; the media service could not decode it as a picture (or it is over its photo size): sent as a file"
    chat.say(f"sent #{sent.id} to {display_name(peer)}: {message_text(sent)} "
             f"({'' if as_file else f'{size:,} bytes, '}{ms:.0f} ms{note})")


async def _upload_and_send(chat: Chat, peer: api.types.User, path: Path, caption: str, *,
                           photo: bool) -> api.types.TypeUpdates:
    """upload.saveFilePart for each part (every one a call under CALL_TIMEOUT), then messages.sendMedia."""
    chat.sending.append((peer.id, caption))  # the caption is the text of the message the stream shows us
    try:
        uploaded = await files.upload(chat.call, path)
        media: api.types.TypeInputMedia
        if photo:
            media = api.types.InputMediaUploadedPhoto(file=uploaded)
        else:
            mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            named = api.types.DocumentAttributeFilename(file_name=path.name)
            media = api.types.InputMediaUploadedDocument(file=uploaded, mime_type=mime_type, attributes=[named])
        answer: api.types.TypeUpdates = await chat.call(api.functions.messages.SendMedia(
            peer=input_peer(peer), media=media, message=caption, random_id=random_id()))
    except BaseException:
        chat.sending.remove((peer.id, caption))  # no message of ours is coming to be told apart
        raise
    return answer


async def _photo(chat: Chat, arg: str) -> None:
    await _send_media(chat, arg, photo=True)


async def _file(chat: Chat, arg: str) -> None:
    await _send_media(chat, arg, photo=False)


async def _save(chat: Chat, arg: str) -> None:
    """Download what message ID carries into the downloads folder, under a name no file there has."""
    if not arg.isdigit():
        chat.say("usage: /save ID (the id /history, or the line that showed the message, gives it)")
        return
    msg_id = int(arg)
    found = await chat.call(api.functions.messages.GetMessages(id=[api.types.InputMessageID(id=msg_id)]))
    chat.learn(found.users)
    m = next((m for m in found.messages
              if isinstance(m, (api.types.Message, api.types.MessageService)) and m.id == msg_id), None)
    if m is None:
        chat.say(f"no message #{msg_id} in your chats (/history shows their ids)")
        return
    media = m.media if isinstance(m, api.types.Message) else None
    photo = media.photo if isinstance(media, api.types.MessageMediaPhoto) else None
    document = media.document if isinstance(media, api.types.MessageMediaDocument) else None
    expected: int | None  # the size the message gives, which the download must match
    if isinstance(document, api.types.Document):
        where = files.location(media)
        expected = document.size
        name = safe_name(file_name(document)) or f"file_{msg_id}{mimetypes.guess_extension(document.mime_type) or ''}"
    elif isinstance(photo, api.types.Photo) and photo.sizes:
        where = files.location(media)  # the largest size: the original (services/media/photos.py)
        largest = photo.sizes[-1]
        expected = largest.size if isinstance(largest, api.types.PhotoSize) else None
        # A photo has no name: what upload.getFile says its first bytes are gives the suffix.
        first = await chat.call(api.functions.upload.GetFile(location=where, offset=0, limit=PROBE))
        name = f"photo_{msg_id}{PHOTO_SUFFIXES.get(type(first.type), '')}"
    else:
        chat.say(f"message #{msg_id} carries no photo or file")
        return
    folder = chat.downloads
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path, out = new_file(folder, name)
    except OSError as exc:
        chat.say(f"not saved: cannot write in {folder}: {exc}")
        return
    started, saved = time.perf_counter(), False
    try:  # an error of the download (an RpcError, a timeout) is said by run_line, once the partial file is gone
        with out:
            written = await files.download(chat.call, where, out)  # each chunk one call, under CALL_TIMEOUT
        if expected is not None and written != expected:
            chat.say(f"not saved: the download gave {written:,} of the {expected:,} bytes of #{msg_id}")
        else:
            saved = True
    except TimeoutError:  # an OSError too, but the server's silence: run_line says it
        raise
    except OSError as exc:
        chat.say(f"not saved: cannot write {path}: {exc}")
    finally:
        if not saved:
            path.unlink(missing_ok=True)
    if saved:
        ms = (time.perf_counter() - started) * 1000
        what = describe_media(media) if document is not None else f"{describe_media(media)}, {written:,} bytes"
        chat.say(f"saved #{msg_id} ({what}) in {ms:.0f} ms: {path}")


async def _me(chat: Chat, _arg: str) -> None:
    [me], ms = await timed(chat.client, ME)
    chat.say(f"{describe_user(me)} ({ms:.0f} ms)")


async def _sessions(chat: Chat, _arg: str) -> None:
    found, ms = await timed(chat.client, api.functions.account.GetAuthorizations())
    chat.say(f"{len(found.authorizations)} device(s) signed in ({ms:.0f} ms):")
    for authorization in found.authorizations:
        chat.say(f"  {describe_authorization(authorization)}")


async def _revoke(chat: Chat, arg: str) -> None:
    try:
        target = int(arg)
    except ValueError:
        chat.say("usage: /revoke HASH (the hash /sessions shows)")
        return
    done, ms = await timed(chat.client, api.functions.account.ResetAuthorization(hash=target))
    chat.say(f"account.resetAuthorization -> {done} ({ms:.0f} ms)")


async def _config(chat: Chat, _arg: str) -> None:
    config, ms = await timed(chat.client, api.functions.help.GetConfig())
    options = ", ".join(f"DC {o.id} at {o.ip_address}:{o.port}" for o in config.dc_options)
    chat.say(f"this DC {config.this_dc}; {options}; test mode {config.test_mode}; config expires in "
             f"{config.expires - config.date} s ({ms:.0f} ms)")


async def _ping(chat: Chat, _arg: str) -> None:
    with anyio.fail_after(CALL_TIMEOUT):
        chat.say(f"pong in {await chat.client.ping() * 1000:.1f} ms")


async def _help(chat: Chat, _arg: str) -> None:
    chat.say(HELP)


Command = Callable[[Chat, str], Awaitable[None]]
COMMANDS: dict[str, Command] = {
    "/add": _add, "/contacts": _contacts, "/to": _to, "/dialogs": _dialogs, "/history": _history, "/edit": _edit,
    "/delete": _delete, "/read": _read, "/search": _search, "/photo": _photo, "/file": _file, "/save": _save,
    "/me": _me, "/sessions": _sessions, "/revoke": _revoke, "/config": _config, "/ping": _ping, "/help": _help,
    **secretchat.COMMANDS,
}


async def _sign_in(client: Client, console: Console, options: ChatOptions) -> api.types.User | None:
    """Ask for what is missing and sign in: the account, or None when the input ended first."""
    phone = options.phone or await console.ask("phone number (test numbers 99966XYYYY get the code X five times): ")
    if not phone:
        return None
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
    user = await sign_in(client, phone, get_code, first, last, lambda text: console.say(f"  {text}"))
    return user if isinstance(user, api.types.User) else None


async def chat(stack: RunningStack, options: ChatOptions, console: Console) -> int:
    transport = f"{options.transport.value}{' + obfuscated2' if options.obfuscated else ''}"
    port = stack.gateway_port
    if options.websocket:
        transport, port = f"{transport} over WebSocket", stack.gateway_ws_port
    config = client_config(stack, options.transport, options.obfuscated, "mtlab chat", websocket=options.websocket)
    console.say(f"mtlab chat: connecting to {stack.gateway_host}:{port} over {transport}")
    try:
        async with Client(config) as client:
            console.say(f"connected: auth key {(client.auth_key_id or b'').hex()}")
            me = await _sign_in(client, console, options)
            if me is None:
                console.say("bye (end of input before signing in)")
                return 1
            session = Chat(client, console, me, downloads=options.downloads or stack.data_dir / "downloads")
            live = options.poll > 0
            if live:
                try:  # where the box stands now (updates.getState): what arrives from here on is shown
                    with anyio.fail_after(CALL_TIMEOUT):
                        await client.start_updates()
                except TimeoutError:
                    console.say("(the live updates did not start in time: incoming messages will not show)")
                    live = False
            console.say("signed in; /help lists the commands")
            await session.run(live)
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
