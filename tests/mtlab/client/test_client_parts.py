"""The client's parts that need no gateway: errors, configuration, the session file, the updates inbox."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from mtlab.client import (
    Client,
    ClientConfig,
    ConnectionLost,
    RpcError,
    SessionFileError,
    TransportKind,
    keys_from_pem,
)
from mtlab.client import session_file as sf
from mtlab.client.updates import UpdateQueue
from mtproto.crypto import rsa
from mtproto.session import AuthKey
from mtproto.session.client import UpdateReceived
from mtproto.tl import RawObject

KEY = rsa.load_private_pem((Path(__file__).parents[2] / "mtproto" / "data" / "test_rsa_key.pem").read_bytes())


# -- errors ---------------------------------------------------------------------------------------------------


def test_rpc_error_names_and_numbers() -> None:
    flood = RpcError(420, "FLOOD_WAIT_30", method="messages.sendMessage")
    assert (flood.code, flood.message, flood.seconds, flood.value) == (420, "FLOOD_WAIT_30", 30, 30)
    assert flood.is_flood_wait
    assert str(flood) == "420 FLOOD_WAIT_30 (from messages.sendMessage)"
    assert repr(flood) == "RpcError(420, 'FLOOD_WAIT_30')"

    assert RpcError(420, "FLOOD_PREMIUM_WAIT_5").seconds == 5
    assert RpcError(400, "SLOWMODE_WAIT_12").seconds == 12
    migrate = RpcError(303, "PHONE_MIGRATE_4")
    assert (migrate.value, migrate.seconds, migrate.is_flood_wait) == (4, None, False)
    unregistered = RpcError(401, "AUTH_KEY_UNREGISTERED")
    assert (unregistered.value, unregistered.seconds, unregistered.is_flood_wait) == (None, None, False)


def test_connection_lost_says_why() -> None:
    lost = ConnectionLost("the gateway closed the connection", -404)
    assert str(lost) == "the gateway closed the connection (transport error -404)"
    copy = lost.copy()
    assert copy is not lost and (copy.reason, copy.transport_error) == (lost.reason, -404)


# -- configuration --------------------------------------------------------------------------------------------


def test_server_keys_from_pem_or_numbers() -> None:
    other = rsa.generate_rsa_key()
    pem = rsa.public_pem_pkcs1(KEY).decode() + "\n" + rsa.public_pem_pkcs1(other).decode()
    expected = {rsa.fingerprint(k.n, k.e): (k.n, k.e) for k in (KEY, other)}
    assert keys_from_pem(pem) == expected
    assert ClientConfig(server_keys=pem).rsa_keys == expected
    assert ClientConfig(server_keys=pem.encode()).rsa_keys == expected
    assert ClientConfig(server_keys=expected).rsa_keys == expected
    with pytest.raises(ValueError, match="no PEM public key"):
        ClientConfig(server_keys="not a key")
    with pytest.raises(ValueError, match="empty"):
        ClientConfig(server_keys={})


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="no obfuscated form"):
        ClientConfig(server_keys={1: (3, 5)}, transport=TransportKind.FULL, obfuscated=True)
    with pytest.raises(ValueError, match="ping_interval"):
        ClientConfig(server_keys={1: (3, 5)}, ping_interval=0)
    assert ClientConfig(server_keys={1: (3, 5)}).disconnect_delay == 75  # 60 s pings, as stock clients


# -- the session file -----------------------------------------------------------------------------------------


def stored(dc_id: int = 2) -> sf.StoredSession:
    return sf.StoredSession(dc_id, AuthKey.from_bytes(os.urandom(256)), -12345, 7)


def test_session_file_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "me.session"
    assert sf.load(path) is None
    first = stored()
    sf.save(path, first, "a")
    assert sf.load(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data["auth_key_id"] == first.auth_key.id.hex() and "session_id" not in data

    second = stored()
    path.chmod(0o644)  # an old file readable by others is replaced by an owner-only one
    sf.save(path, second, "b")
    assert sf.load(path) == second
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["me.session"]

    sf.delete(path)
    assert sf.load(path) is None
    sf.delete(path)  # forgetting twice is fine


@pytest.mark.parametrize("content", ["", "{}", "[1]", '{"format": "mtlab-client-session", "version": 1}',
                                     '{"format": "mtlab-client-session", "version": 1, "dc_id": 2, '
                                     '"auth_key": "AAAA", "server_salt": 0, "time_offset": 0}'])
def test_a_broken_session_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "me.session"
    path.write_text(content)
    with pytest.raises(SessionFileError):
        sf.load(path)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_a_client_does_not_overwrite_a_broken_session_file(tmp_path: Path, anyio_backend: str) -> None:
    path = tmp_path / "me.session"
    path.write_text("my notes, not a session")
    with anyio.fail_after(5), pytest.raises(SessionFileError):
        async with Client(ClientConfig(server_keys={1: (3, 5)}, session_file=path)):
            pass
    assert path.read_text() == "my notes, not a session"


# -- the updates inbox ----------------------------------------------------------------------------------------


def update(i: int) -> UpdateReceived:
    return UpdateReceived(RawObject(i.to_bytes(4, "little")))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_a_full_inbox_drops_the_oldest_update(anyio_backend: str) -> None:
    queue = UpdateQueue(3)
    for i in range(5):
        queue.push(update(i))  # never blocks, whoever reads
    assert (queue.received, queue.dropped) == (5, 2)
    queue.end()
    got = []
    with anyio.fail_after(5):
        while True:
            try:
                got.append(await queue.get())
            except anyio.EndOfStream:
                break
    assert got == [update(2), update(3), update(4)]
    queue.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_a_waiting_consumer_gets_each_update(anyio_backend: str) -> None:
    queue = UpdateQueue(1)
    got: list[UpdateReceived] = []

    async def consume() -> None:
        while True:
            try:
                got.append(await queue.get())
            except anyio.EndOfStream:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for i in range(10):
                await anyio.sleep(0.001)  # the consumer is waiting before each push
                queue.push(update(i))
            queue.end()
    assert got == [update(i) for i in range(10)] and queue.dropped == 0
    queue.close()
