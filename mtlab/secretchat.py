"""Secret chats in `mtlab chat`: the commands, and what the chat prints when a secret chat's update arrives.

The end-to-end work is mtlab.client.secret's (``SecretChats``); this module only turns lines into its calls and
its events into lines. A secret chat belongs to this device and this run: its key is in memory only, so it ends
with the session (as a secret chat on a phone is lost with the phone).

    /secret NAME|PHONE   ask someone for a secret chat (their devices are told; one accepts)
    /accept ID           accept a request that arrived here
    /s TEXT              send TEXT to the current secret chat (the last one opened or accepted)
    /sfile PATH          send the file at PATH to the current secret chat, encrypted end to end
    /close [ID]          close a secret chat (the current one by default)
    /secrets             the secret chats of this session, after looking for what arrived

A file that arrives in a secret chat is downloaded, decrypted and saved at once into the chat's downloads folder
(``mtlab chat --downloads DIR``; by default ``downloads/`` in the stack's data directory, ``.mtlab/downloads``),
under the name the sender gave (made safe: no directories, nothing hidden), never over an existing file (``name
(1).ext`` then; demo.py's ``safe_name`` and ``new_file``, which `/save` in an ordinary chat uses too); the line that
says so names the path.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from mtlab.client import RpcError
from mtlab.client.secret import (
    Action,
    ChatClosed,
    ChatReady,
    ChatRequested,
    Dropped,
    Event,
    FileMessage,
    Message,
    SecretChatError,
    SecretChats,
)
from mtlab.demo import new_file, safe_name
from mtproto.tl import api

if TYPE_CHECKING:
    from mtlab.chat import Chat


class SecretSide:
    """One chat session's secret chats: the engine, and the chat plain ``/s`` lines go to."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.engine = SecretChats(chat.client)
        self.current: int | None = None

    async def say_events(self, events: list[Event]) -> None:
        for e in events:
            text = await self.save(e) if isinstance(e, FileMessage) else self.describe(e)
            if text:
                self.chat.console.notice(text)

    async def save(self, e: FileMessage) -> str:
        """Download, decrypt and save a file that arrived: the line that says where (or why not)."""
        sender = self.chat.name(e.chat.peer_id)
        folder = self.chat.downloads
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path, out = new_file(folder, safe_name(e.name) or ("photo.jpg" if e.mime_type == "image/jpeg" else
                                                                f"file-{e.random_id & 0xFFFFFFFF:08x}"))
        except OSError as exc:
            return f"(secret chat {e.chat.id}: a file from {sender} could not be saved in {folder}: {exc})"
        try:
            with out:
                await self.engine.download(e, out)
        except (SecretChatError, RpcError, OSError) as exc:
            path.unlink(missing_ok=True)
            return f"(secret chat {e.chat.id}: a file from {sender} could not be saved: {exc})"
        caption = f" {e.caption}" if e.caption else ""
        return f"[secret {sender}] file {path.name} ({e.size} bytes) saved to {path}{caption}"

    def describe(self, e: Event) -> str | None:
        if isinstance(e, ChatRequested):
            return f"({self.chat.name(e.chat.peer_id)} asks for a secret chat: /accept {e.chat.id})"
        if isinstance(e, ChatReady):
            self.current = e.chat.id
            return f"(secret chat {e.chat.id} with {self.chat.name(e.chat.peer_id)} is open: /s TEXT writes to it)"
        if isinstance(e, ChatClosed):
            if self.current == e.chat.id:
                self.current = None
            return f"(secret chat {e.chat.id} is closed: {e.reason})"
        if isinstance(e, Message):
            return f"[secret {self.chat.name(e.chat.peer_id)}] {e.text}"
        if isinstance(e, Dropped):
            return f"(secret chat {e.chat_id}: a message was dropped: {e.reason})"
        if isinstance(e, Action):
            return None  # layer notices and the like: the engine's business
        return None


_sides: WeakKeyDictionary[Any, SecretSide] = WeakKeyDictionary()


def side(chat: Chat) -> SecretSide:
    found = _sides.get(chat)
    if found is None:
        found = _sides[chat] = SecretSide(chat)
    return found


async def on_update(chat: Chat, update: api.types.TypeUpdate) -> None:
    """An update of the ordered stream: a secret chat's is handled and said; any other is left alone."""
    if isinstance(update, (api.types.UpdateEncryption, api.types.UpdateNewEncryptedMessage)):
        s = side(chat)
        try:
            await s.say_events(await s.engine.handle(update))
        except SecretChatError as exc:
            chat.console.notice(f"(secret chat: {exc})")


async def _secret(chat: Chat, arg: str) -> None:
    if not arg:
        chat.say("usage: /secret NAME|PHONE")
        return
    user = chat.by_phone(arg.lstrip("+")) if arg.lstrip("+").isdigit() else None
    if user is None:
        await chat.refresh()
        matches = [chat.by_phone(arg.lstrip("+"))] if arg.lstrip("+").isdigit() else chat.by_name(arg)
        user = next((u for u in matches if u is not None), None)
    if user is None or user.access_hash is None:
        chat.say(f"nobody called {arg!r} among your contacts and chats")
        return
    s = side(chat)
    c = await s.engine.request(api.types.InputUser(user_id=user.id, access_hash=user.access_hash))
    chat.say(f"asked {chat.name(user.id)} for secret chat {c.id}; it opens when one of their devices accepts")


async def _accept(chat: Chat, arg: str) -> None:
    s = side(chat)
    if not arg.isdigit():
        chat.say("usage: /accept ID (the number the request showed)")
        return
    try:
        c = await s.engine.accept(int(arg))
    except SecretChatError as exc:
        chat.say(str(exc))
        return
    s.current = c.id
    chat.say(f"secret chat {c.id} with {chat.name(c.peer_id)} is open on this device: /s TEXT writes to it")


def _writable(chat: Chat, arg: str, usage: str) -> int | None:
    """The open secret chat a command writes to, or None (having said why: none open, or nothing to send)."""
    current = side(chat).current
    if current is None:
        chat.say("no secret chat open: /secret NAME asks for one, /accept ID takes one")
    elif not arg:
        chat.say(f"usage: {usage}")
    else:
        return current
    return None


async def _send(chat: Chat, arg: str) -> None:
    current = _writable(chat, arg, "/s TEXT")
    if current is None:
        return
    try:
        await side(chat).engine.send(current, arg)
    except SecretChatError as exc:
        chat.say(str(exc))
        return
    chat.say(f"sent to secret chat {current} (end-to-end encrypted)")


async def _send_file(chat: Chat, arg: str) -> None:
    current = _writable(chat, arg, "/sfile PATH")
    if current is None:
        return
    path = Path(arg).expanduser()
    if not path.is_file():
        chat.say(f"no file at {path}")
        return
    mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    try:
        sent = await side(chat).engine.send_file(current, path, mime_type=mime_type)
    except (SecretChatError, OSError) as exc:
        chat.say(f"not sent: {exc}")
        return
    chat.say(f"sent {path.name} ({sent.media.size} bytes) to secret chat {current} (end-to-end encrypted: the "
             f"server stores {sent.file.size} bytes of ciphertext)")


async def _close(chat: Chat, arg: str) -> None:
    s = side(chat)
    chat_id = int(arg) if arg.isdigit() else s.current
    if chat_id is None:
        chat.say("usage: /close [ID]")
        return
    await s.engine.close(chat_id)
    if s.current == chat_id:
        s.current = None
    chat.say(f"secret chat {chat_id} closed")


async def _secrets(chat: Chat, _arg: str) -> None:
    s = side(chat)
    await s.say_events(await s.engine.catch_up())
    if not s.engine.chats:
        chat.say("no secret chats in this session")
    for c in s.engine.chats.values():
        mark = " (current)" if c.id == s.current else ""
        chat.say(f"  {c.id}  {chat.name(c.peer_id)}  {c.state}{mark}")


COMMANDS: dict[str, Callable[[Chat, str], Awaitable[None]]] = {
    "/secret": _secret, "/accept": _accept, "/s": _send, "/sfile": _send_file, "/close": _close, "/secrets": _secrets,
}
