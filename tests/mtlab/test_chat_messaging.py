"""`mtlab chat` and `mtlab demo` send real messages, photos and files, against one detached stack (`mtlab up
--detach`: gateway, auth, messages, updates, media, Postgres with two shard databases, Redis).

Two `mtlab chat` processes talk to each other the way two people at two terminals would: each is driven through
its stdin (a pipe) and its output read as it comes, so "B sees A's message" means B's receiver printed it (pushed,
through the SDK's ordered update stream).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from PIL import Image

from mtlab.demo import safe_name
from tests.helpers.stack import REPO, Stack, running_stack

POLL = "0.2"  # any value but 0 shows incoming messages (they are pushed; the option is kept for scripts)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


class ChatProcess:
    """One `mtlab chat` subprocess: lines go in through stdin, its output is collected by a thread as it comes."""

    def __init__(self, stack: Stack, phone: str, name: str, *extra: str, env: dict[str, str] | None = None) -> None:
        code = phone[5] * 5  # test numbers 99966XYYYY: the code is X five times
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mtlab", "chat", "--data-dir", str(stack.data_dir), "--phone", phone, "--code",
             code, "--name", name, "--poll", POLL, *extra],
            cwd=REPO, env=stack.env | (env or {}), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self.mark = 0  # expect() looks from here on
        self._lock = threading.Lock()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, text: str, timeout: float = 20) -> str:
        """The first line from the mark on that contains ``text`` (waiting for it); the mark moves past it."""
        deadline = time.monotonic() + timeout
        while True:
            ended = self.proc.poll() is not None
            if ended:
                self._collector.join(timeout=5)  # everything it printed is in self.lines now
            with self._lock:
                for i in range(self.mark, len(self.lines)):
                    if text in self.lines[i]:
                        self.mark = i + 1
                        return self.lines[i]
            if ended or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not come within {timeout:.0f} s; the output:\n{self.output}")

    def run(self, line: str, until: str) -> list[str]:
        """Send ``line`` and return every line of output up to the one containing ``until``."""
        start = self.mark
        self.send(line)
        self.expect(until)
        with self._lock:
            return self.lines[start:self.mark]

    def quit(self) -> int:
        self.send("/quit")
        code = self.proc.wait(timeout=30)
        self._collector.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def two_chats(stack: Stack) -> Iterator[tuple[ChatProcess, ChatProcess]]:
    a = ChatProcess(stack, "9996641001", "Alice Chat")
    b = ChatProcess(stack, "9996652002", "Bob Chat")
    try:
        a.expect("signed in; /help")
        b.expect("signed in; /help")  # B has looked at its chats: what A sends from now on is new to it
        yield a, b
    finally:
        a.kill()
        b.kill()


def message_id(line: str) -> int:
    match = re.search(r"#(\d+)", line)
    assert match, line
    return int(match.group(1))


def position(lines: list[str], text: str) -> int:
    found = [i for i, line in enumerate(lines) if text in line]
    assert found, f"{text!r} not in:\n" + "\n".join(lines)
    return found[0]


def set_username(stack: Stack, user_id: int, username: str) -> None:
    """What account.updateUsername will do once the auth service serves it: the column contacts.resolveUsername
    reads, written in the stack's main database."""
    dsn = stack.endpoint("postgres")["dsn"]

    async def update() -> None:
        con = await asyncpg.connect(dsn)
        try:
            await con.execute("UPDATE users SET username = $1 WHERE id = $2", username, user_id)
        finally:
            await con.close()

    anyio.run(update)


def test_two_chats_talk_to_each_other(stack: Stack, two_chats: tuple[ChatProcess, ChatProcess]) -> None:
    a, b = two_chats
    a.run("Hi Bob", "nobody chosen to write to: /to PHONE|@username|NAME first")
    a.run("/add 9996699999", "nobody has the number +9996699999")
    found = a.run("/add 9996652002 Bob", "plain lines now go to Bob Chat")
    bob_id = int(next(line for line in found if "found Bob Chat" in line).split("(user ")[1].split(",")[0])
    sent = a.run("Hi Bob, this is Alice", "sent #")[-1]
    assert "to Bob Chat" in sent
    first = message_id(sent)

    # B's poller finds the message and prints it; B learns of A from its chat list, and picks her by name.
    b.expect("[Alice Chat] Hi Bob, this is Alice")
    b.run("/dialogs", "Alice Chat: 1 unread")
    b.run("/to alice", "plain lines now go to Alice Chat")
    b.run("Hello Alice!", "sent #")
    a.expect("[Bob Chat] Hello Alice!")

    history = a.run("/history", "Bob Chat: Hello Alice!")
    assert any("the last 2 of 2 message(s) with Bob Chat" in line for line in history)
    assert position(history, f"#{first} you: Hi Bob, this is Alice") < position(history, "Bob Chat: Hello Alice!")

    b.run("/read", "marked your chat with Alice Chat read")
    b.run("/dialogs", "Alice Chat: all read")
    b.run("/read", "nothing unread from Alice Chat")

    a.run(f"/edit {first} Hi Bob, it is Alice", f"edited #{first}")
    b.run("/history 5", "Alice Chat: Hi Bob, it is Alice (edited)")
    a.run("/edit 999999 nope", "error: 400 MESSAGE_ID_INVALID")
    found = a.run("/search alice", "message(s) contain 'alice'")
    a.expect("with Bob Chat: #")
    assert "2 message(s) contain 'alice'" in found[-1]

    a.run(f"/delete {first} --everyone", f"deleted 1 message(s) of #{first} for everyone")
    after = a.run("/history", "Bob Chat: Hello Alice!")
    assert not any("Hi Bob, it is Alice" in line for line in after)
    after = b.run("/history", "you: Hello Alice!")
    assert not any("Hi Bob, it is Alice" in line for line in after)
    a.run(f"/delete {first}", f"nothing deleted: no message #{first} in your box")

    # Other ways to name the peer: by number, by username.
    a.run("/to Nobody Such", "nobody called 'Nobody Such'")
    a.run("/to 9996652002", "plain lines now go to Bob Chat")
    a.run("/to @nobody_here", "nobody has the username @nobody_here")
    set_username(stack, bob_id, "bob_chat")
    a.run("/to @Bob_Chat", "plain lines now go to Bob Chat")
    a.run("/contacts", "Bob Chat  +9996652002")
    a.run("By username", "sent #")
    b.expect("[Alice Chat] By username")

    assert a.quit() == 0 and b.quit() == 0
    assert a.output.rstrip().endswith("bye") and b.output.rstrip().endswith("bye")
    # Nobody's own messages came back to them as incoming ones.
    assert "[Alice Chat]" not in a.output and "[Bob Chat]" not in b.output
    assert b.output.count("[Alice Chat] Hi Bob, this is Alice") == 1


def test_chat_help_lists_the_messaging_commands(stack: Stack) -> None:
    done = subprocess.run([sys.executable, "-m", "mtlab", "chat", "--data-dir", str(stack.data_dir), "--phone",
                           "9996663003", "--code", "66666", "--poll", "0"], cwd=REPO, env=stack.env,
                          input="/help\n/history\n/dialogs\n", capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for command in ("/add PHONE", "/contacts", "/to PHONE|@username|NAME", "/dialogs", "/history [N]",
                    "/edit ID TEXT", "/delete ID [--everyone]", "/read", "/search TEXT", "/photo PATH [caption]",
                    "/file PATH [caption]", "/save ID", "/secret NAME|PHONE", "/s TEXT", "/sfile PATH"):
        assert f"  {command}" in done.stdout
    assert "nobody chosen to write to" in done.stdout  # /history without a peer
    assert "no chats yet" in done.stdout


def test_demo_messages_between_alice_and_bob(stack: Stack) -> None:
    done = stack.mtlab("demo", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    expected = [
        "Alice  contacts.importContacts +9996620002 -> found Bob Demo",
        "Alice  messages.sendMessage to Bob Demo: 'Hi Bob! Lunch tomorrow?' -> #",
        "Alice  messages.sendMessage to Bob Demo: 'The usual place at noon' -> #",
        "Bob    messages.getDialogs -> Alice Demo: 2 unread",
        "Bob    messages.sendMessage to Alice Demo: 'Sounds good, see you there' -> #",
        "Bob    messages.readHistory with Alice Demo -> read",
        "Alice  messages.getDialogs -> Bob Demo: 1 unread, Bob has read both",
        "Alice  messages.editMessage #",
        "Bob    messages.getHistory with Alice Demo -> 3 messages",
        " Alice: Hi Bob! Lunch tomorrow?",
        " Alice: The usual place at 12:30 (edited)",
        " Bob: Sounds good, see you there",
        "demo done in ",
    ]
    at = [position(lines, text) for text in expected]
    assert at == sorted(at), done.stdout
    assert "exchanged 3 messages" in lines[-1]


def test_two_devices_each_live_and_a_secret_chat(stack: Stack) -> None:
    """The issue's "done when": two users in `mtlab chat` on two devices each see each other's messages live, and
    two of those devices open a secret chat whose messages (and a file) reach only the device that accepted it."""
    # Each user's second device starts once the first has signed up: two devices signing up one new number at
    # the same moment race on its login code (the second auth.sendCode replaces the first one's code, and the
    # first device's auth.signUp then gets PHONE_CODE_EXPIRED, as CI once saw).
    a1, b1 = ChatProcess(stack, "9996641101", "Alice Two"), ChatProcess(stack, "9996652102", "Bob Two")
    chats: tuple[ChatProcess, ...] = (a1, b1)
    try:
        for c in (a1, b1):
            c.expect("signed in; /help")
        a2, b2 = ChatProcess(stack, "9996641101", "Alice Two"), ChatProcess(stack, "9996652102", "Bob Two")
        chats = (a1, a2, b1, b2)
        for c in (a2, b2):
            c.expect("signed in; /help")
        a1.run("/add 9996652102 Bob", "plain lines now go to Bob Two")
        b1.run("/add 9996641101 Alice", "plain lines now go to Alice Two")
        a1.run("hello from Alice's first device", "sent #")
        for c in (b1, b2):
            c.expect("hello from Alice's first device")
        a2.expect("hello from Alice's first device")  # her own other device sees what she sent
        b1.run("and hello from Bob", "sent #")
        for c in (a1, a2, b2):
            c.expect("and hello from Bob")

        a1.run("/secret Bob", "asked Bob Two for secret chat")
        request = b2.expect("asks for a secret chat: /accept")
        b1.expect("asks for a secret chat: /accept")  # every device of Bob is asked
        chat_id = request.rsplit("/accept ", 1)[1].strip(" )")
        b2.run(f"/accept {chat_id}", f"secret chat {chat_id} with")
        a1.expect(f"secret chat {chat_id} with Bob Two is open")
        a1.run("/s whispered words", "sent to secret chat")
        b2.expect("[secret Alice Two] whispered words")
        b2.run("/s whispered back", "sent to secret chat")
        a1.expect("[secret Bob Two] whispered back")
        assert "whispered words" not in b1.output  # the device that did not accept is not in the chat

        report = stack.data_dir / "outgoing" / "report 1.txt"
        report.parent.mkdir(exist_ok=True)
        report.write_bytes(os.urandom(70_000))
        a1.run(f"/sfile {report}", "sent report 1.txt (70000 bytes) to secret chat")
        line = b2.expect("[secret Alice Two] file report 1.txt (70000 bytes) saved to ")
        saved = Path(line.split(" saved to ", 1)[1])
        assert saved.parent == stack.data_dir / "downloads"  # the default: downloads/ in the data directory
        assert saved.read_bytes() == report.read_bytes()
        assert "report 1.txt" not in b1.output
        for c in chats:
            assert c.quit() == 0
    finally:
        for c in chats:
            c.kill()


def saved_path(line: str) -> Path:
    """The file a `/save` line names: ``saved #12 (photo 900x600, 3 sizes, 1,234 bytes) in 5 ms: PATH``."""
    assert " ms: " in line, line
    return Path(line.split(" ms: ", 1)[1])


def test_photos_and_files_in_an_ordinary_chat(stack: Stack) -> None:
    """The issue's "done when": a photo sent in `mtlab chat` arrives (live) and downloads intact. The media service
    keeps the uploaded original as the photo's largest size (services/media/photos.py, assembly.py: thumbnails
    only when smaller in bytes, the sizes listed smallest first), so `/save` gives back the very bytes sent."""
    outgoing = stack.data_dir / "outgoing media"
    outgoing.mkdir()
    png = outgoing / "beach day.png"  # a space in the name: no quotes needed
    Image.frombytes("RGB", (900, 600), os.urandom(900 * 600 * 3)).save(png)  # noise: every thumbnail is smaller
    blob = outgoing / "blob.bin"
    blob.write_bytes(os.urandom(100_000))
    big = outgoing / "big.bin"
    big.write_bytes(os.urandom(300_000))
    downloads = stack.data_dir / "bob's downloads"
    a = ChatProcess(stack, "9996641301", "Alice Media")
    # Bob's environment says the media service takes 256 KiB at most: his chat refuses a larger file up front.
    b = ChatProcess(stack, "9996652302", "Bob Media", "--downloads", str(downloads),
                    env={"MTLAB_MEDIA_MAX_FILE_SIZE": str(256 * 1024)})
    try:
        a.expect("signed in; /help")
        b.expect("signed in; /help")
        a.run(f"/photo {png}", "nobody chosen to write to: /to PHONE|@username|NAME first")
        a.run("/add 9996652302 Bob", "plain lines now go to Bob Media")
        a.run("/photo", "usage: /photo PATH [caption]")
        a.run(f"/photo {stack.data_dir / 'missing.png'} hi", f"not sent: no file at {stack.data_dir / 'missing.png'}")
        a.run(f"/file {outgoing}", f"not sent: {outgoing} is not a file")

        sent = a.run(f"/photo {png} a day at the beach", "sent #")[-1]
        assert "to Bob Media: (photo 900x600, 3 sizes) a day at the beach" in sent, sent
        line = b.expect("[Alice Media] #")
        assert line.endswith(" (photo 900x600, 3 sizes) a day at the beach"), line
        photo_id = message_id(line)
        saved = saved_path(b.run(f"/save {photo_id}", "saved #")[-1])
        assert saved == downloads / f"photo_{photo_id}.png"
        assert saved.read_bytes() == png.read_bytes()
        again = saved_path(b.run(f"/save {photo_id}", "saved #")[-1])  # never over the first one
        assert again == downloads / f"photo_{photo_id} (1).png"
        assert again.read_bytes() == saved.read_bytes() == png.read_bytes()

        sent = a.run(f"/file {blob} raw bytes", "sent #")[-1]
        described = "(file blob.bin, 100,000 bytes, application/octet-stream) raw bytes"
        assert described in sent, sent
        line = b.expect("[Alice Media] #")
        assert line.endswith(described), line
        file_id = message_id(line)
        saved = saved_path(b.run(f"/save {file_id}", "saved #")[-1])
        assert saved == downloads / "blob.bin"
        assert saved.read_bytes() == blob.read_bytes()

        # History and search show what a message carries, with the id /save takes.
        b.run("/to Alice", "plain lines now go to Alice Media")
        history = b.run("/history", f"#{file_id} Alice Media: {described}")
        assert position(history, f"#{photo_id} Alice Media: (photo 900x600, 3 sizes) a day at the beach") < position(
            history, f"#{file_id} Alice Media: {described}")
        a.run("/search beach", "1 message(s) contain 'beach'")
        found = a.expect("with Bob Media: #")
        assert found.endswith(" you: (photo 900x600, 3 sizes) a day at the beach"), found

        # What cannot be saved or sent says why, and the chat goes on.
        text_id = message_id(b.run("thanks for the photo", "sent #")[-1])
        a.expect("[Bob Media] thanks for the photo")
        b.run(f"/save {text_id}", f"message #{text_id} carries no photo or file")
        b.run("/save 999999", "no message #999999 in your chats")
        b.run("/save last", "usage: /save ID")
        b.run(f"/file {big}", "not sent: big.bin is 300,000 bytes, more than the media service takes (262,144 bytes)")
        b.run(f"/photo '{outgoing / 'no such.png'}' a caption", f"not sent: no file at {outgoing / 'no such.png'}")
        b.run("/ping", "pong in")
        a.run(f"/photo {blob}", "could not decode it as a picture")  # not an image: it goes as a file
        b.expect("[Alice Media] #")

        assert a.quit() == 0 and b.quit() == 0
        # Alice's own sends came back to her neither as incoming nor as another device's.
        assert "[Alice Media]" not in a.output and "on another device" not in a.output
    finally:
        a.kill()
        b.kill()


def test_a_received_files_name_stays_in_the_downloads_folder() -> None:
    """The sender chooses the name inside the encrypted message: `mtlab chat` keeps only a plain name of it."""
    assert safe_name("report 1.txt") == "report 1.txt"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\evil.exe") == "evil.exe"
    assert safe_name("..") == "" and safe_name(".bashrc") == "bashrc"  # nothing hidden, no way up
    assert safe_name("line\nbreak\x1b[31m.txt") == "linebreak[31m.txt"
    assert safe_name("/") == "" and len(safe_name("x" * 500)) == 200
