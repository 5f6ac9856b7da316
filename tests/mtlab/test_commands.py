"""`mtlab codes`, `mtlab demo` and `mtlab chat` as a user runs them, against a real detached stack.

The stack is the one `mtlab up --detach` starts (tests/mtlab/test_supervisor.py's ``new_stack``: its own data
directory, free ports, everything it started stopped by `mtlab down` and killed if that failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

from mtlab.client import Client
from mtlab.demo import client_config, send_code
from mtlab.stack import RunningStack, find
from mtproto.transport import TransportKind
from tests.helpers.stack import REPO, Stack, new_stack, running_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as s:
        yield s


def running(stack: Stack) -> RunningStack:
    found = find(stack.data_dir)
    assert isinstance(found, RunningStack), found
    return found


def chat(stack: Stack, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtlab", "chat", "--data-dir", str(stack.data_dir), *args],
                          cwd=REPO, env=stack.env, input=stdin, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("command", ["codes", "demo", "chat"])
def test_help_names_every_option(stack: Stack, command: str) -> None:
    done = stack.mtlab(command, "--help", timeout=30)
    assert done.returncode == 0 and f"usage: mtlab {command}" in done.stdout
    expected = {"codes": ["--json"], "demo": [], "chat": ["--phone", "--code", "--name", "--transport",
                                                         "--websocket"]}[command]
    assert all(option in done.stdout for option in ["--data-dir", *expected])


def test_codes_shows_a_code_after_send_code(stack: Stack) -> None:
    async def ask_for_code() -> None:
        config = client_config(running(stack), TransportKind.INTERMEDIATE, False, "pytest")
        with anyio.fail_after(30):
            async with Client(config) as client:
                await client.invoke(send_code("9996654321"))

    anyio.run(ask_for_code)
    done = stack.mtlab("codes", "--json", timeout=30)
    assert done.returncode == 0, done.stderr
    codes = {c["phone"]: c for c in json.loads(done.stdout)}
    assert codes["9996654321"]["code"] == "55555"
    assert codes["9996654321"]["attempts_left"] == 5 and 0 < codes["9996654321"]["expires_in"] <= 300
    table = stack.mtlab("codes", timeout=30)
    assert table.returncode == 0 and "+9996654321" in table.stdout and "55555" in table.stdout


def test_demo_signs_two_users_in_over_two_transports(stack: Stack) -> None:
    done = stack.mtlab("demo", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Alice" in out and "Bob" in out and "over abridged" in out and "over intermediate + obfuscated2" in out
    assert "Alice  auth.signUp 'Alice' -> signed up: user " in out and "Bob    auth.signUp 'Bob' -> signed up" in out
    assert "demo done in " in out  # the messages they exchange: tests/mtlab/test_chat_messaging.py


def test_chat_driven_through_a_pipe(stack: Stack) -> None:
    done = chat(stack, "--phone", "9996612345", "--name", "Grace Hopper",
                stdin="00000\n11111\n/me\n/sessions\nhello\n/ping\n/config\n/revoke nope\n/quit\n/me\n")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "its code is X five times, 11111" in out
    assert "PHONE_CODE_INVALID" in out  # the wrong code was refused and the code asked for again
    assert "user " in out and "'Grace Hopper', phone +9996612345, self" in out
    assert "(this device): 'mtlab chat'" in out
    assert "nobody chosen to write to" in out and "pong in " in out and "this DC 2" in out  # "hello": no peer yet
    assert "usage: /revoke HASH" in out
    assert out.rstrip().endswith("bye")  # /quit ended it: the /me after it was never run
    assert out.count("'Grace Hopper', phone") == 2  # the sign-up line and /me


def test_chat_over_websocket(stack: Stack) -> None:
    ws_port = running(stack).gateway_ws_port
    done = chat(stack, "--phone", "9996633333", "--code", "33333", "--transport", "abridged", "--websocket",
                stdin="/me\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"connecting to 127.0.0.1:{ws_port} over abridged + obfuscated2 over WebSocket" in done.stdout
    assert "phone +9996633333, self" in done.stdout and done.stdout.rstrip().endswith("bye")


def test_chat_revokes_another_device_and_ends_on_eof(stack: Stack) -> None:
    async def other_device() -> None:
        config = client_config(running(stack), TransportKind.ABRIDGED, False, "other device")
        async with Client(config) as client:
            from mtlab.demo import sign_in

            async def code() -> str:
                return "77777"

            await sign_in(client, "9996677777", code, "Other", "", lambda _: None)

    anyio.run(other_device)
    listed = chat(stack, "--phone", "9996677777", "--code", "77777", stdin="/sessions\n")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "'other device'" in line)
    target = line.split("hash ")[1].split(":")[0]
    done = chat(stack, "--phone", "9996677777", "--code", "77777", stdin=f"/revoke {target}\n/sessions\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "account.resetAuthorization -> True" in done.stdout
    assert "'other device'" not in done.stdout.split("/sessions")[-1]
    assert done.stdout.rstrip().endswith("bye")  # the end of input, without /quit


def test_commands_say_clearly_when_no_stack_runs() -> None:
    with new_stack() as idle:  # a data directory where nothing was started
        for command in ("codes", "demo", "chat"):
            done = idle.mtlab(command, timeout=30)
            assert done.returncode == 1
            assert "no mtlab stack is running" in done.stderr
