"""The client SDK against a real gateway process over loopback TCP: every transport, on trio and on asyncio."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from mtlab.client import Client, ClientConfig, ConnectionLost, RpcError, TransportKind
from mtproto.tl import api, mt
from tests.helpers.client import (
    COMBINATION_IDS,
    COMBINATIONS,
    WEBSOCKET_KINDS,
    client_config,
    freeze,
    handshakes,
    thaw,
)
from tests.helpers.gateway import free_port

pytestmark = pytest.mark.anyio

combinations = pytest.mark.parametrize(("kind", "obfuscated"), COMBINATIONS, ids=COMBINATION_IDS)


@combinations
async def test_connect_get_config_ping_and_unauthorized(gateway: Any, kind: TransportKind, obfuscated: bool) -> None:
    with anyio.fail_after(20):
        async with Client(client_config(gateway, kind, obfuscated)) as client:
            assert client.connected and client.auth_key_id is not None
            # initConnection(help.getConfig) went first; its answer is kept
            assert client.server_config is not None and client.server_config.this_dc == 2

            config = await client.invoke(api.functions.help.GetConfig())
            assert isinstance(config, api.types.Config)
            assert config.this_dc == 2
            assert [(o.ip_address, o.port) for o in config.dc_options] == [("127.0.0.1", gateway.port)]

            pong = await client.invoke(mt.functions.Ping(ping_id=123456789))
            assert isinstance(pong, mt.types.Pong) and pong.ping_id == 123456789
            assert 0 < await client.ping() < 5

            with pytest.raises(RpcError) as caught:
                await client.invoke(api.functions.updates.GetState())
            assert (caught.value.code, caught.value.message) == (401, "AUTH_KEY_UNREGISTERED")
            assert caught.value.method == "updates.getState" and not caught.value.is_flood_wait

            assert client.in_flight == 0
            assert client.stats.handshakes == 1 and client.stats.rpc_errors == 1


@combinations
async def test_fifty_concurrent_invokes(gateway: Any, kind: TransportKind, obfuscated: bool) -> None:
    results: dict[int, object] = {}

    async def call(client: Client, i: int) -> None:
        if i % 10 == 3:
            try:
                await client.invoke(api.functions.updates.GetState())
            except RpcError as exc:
                results[i] = exc.message
        elif i % 10 == 7:
            results[i] = (await client.invoke(api.functions.help.GetConfig())).this_dc
        else:
            results[i] = (await client.invoke(mt.functions.Ping(ping_id=1000 + i))).ping_id

    with anyio.fail_after(20):
        async with Client(client_config(gateway, kind, obfuscated)) as client:
            sent_before = client.stats.frames_sent
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(call, client, i)
            assert client.in_flight == 0
            # queued together, they left together: far fewer frames than calls
            assert client.stats.frames_sent - sent_before <= 5

    expected = {i: "AUTH_KEY_UNREGISTERED" if i % 10 == 3 else 2 if i % 10 == 7 else 1000 + i for i in range(50)}
    assert results == expected


@combinations
async def test_the_session_file_is_reused(gateway: Any, tmp_path: Path, kind: TransportKind, obfuscated: bool) -> None:
    path = tmp_path / "sessions" / "me.session"
    config = client_config(gateway, kind, obfuscated, session_file=path)
    with anyio.fail_after(20):
        before = handshakes(gateway)
        async with Client(config) as first:
            await first.invoke(mt.functions.Ping(ping_id=1))
            key_id = first.auth_key_id
        assert handshakes(gateway) == before + 1
        assert path.stat().st_mode & 0o777 == 0o600
        assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left behind

        async with Client(config) as second:
            assert second.auth_key_id == key_id
            assert second.stats.handshakes == 0
            assert (await second.invoke(api.functions.help.GetConfig())).this_dc == 2
        assert handshakes(gateway) == before + 1  # the gateway made no new key


@combinations
async def test_a_cancelled_invoke_leaves_the_client_usable(gateway: Any, kind: TransportKind,
                                                           obfuscated: bool) -> None:
    with anyio.fail_after(20):
        async with Client(client_config(gateway, kind, obfuscated)) as client:
            freeze(gateway)  # the query reaches the gateway, the answer comes only after the caller gave up
            try:
                with anyio.move_on_after(0.1) as scope:
                    await client.invoke(mt.functions.Ping(ping_id=1))
                assert scope.cancelled_caught
                assert client.in_flight == 0
            finally:
                thaw(gateway)
            # the late answer to ping 1 goes nowhere; the next calls get their own answers
            assert (await client.invoke(mt.functions.Ping(ping_id=2))).ping_id == 2
            assert (await client.invoke(api.functions.help.GetConfig())).this_dc == 2
            assert client.in_flight == 0


@pytest.mark.parametrize("kind", WEBSOCKET_KINDS, ids=[k.value for k in WEBSOCKET_KINDS])
async def test_over_websocket(gateway: Any, kind: TransportKind) -> None:
    label = f"{kind.value}+obfuscated+ws"  # the gateway counts connections by transport and carrier
    before = gateway.metric("mtlab_gateway_connections_total", transport=label)
    with anyio.fail_after(20):
        async with Client(client_config(gateway, kind, True, websocket=True)) as client:
            assert client.server_config is not None and client.server_config.this_dc == 2
            results: dict[int, object] = {}

            async def call(i: int) -> None:
                results[i] = (await client.invoke(mt.functions.Ping(ping_id=i))).ping_id

            async with anyio.create_task_group() as tg:  # concurrent calls share one WebSocket
                for i in range(20):
                    tg.start_soon(call, i)
            assert results == {i: i for i in range(20)}
            with pytest.raises(RpcError, match="AUTH_KEY_UNREGISTERED"):
                await client.invoke(api.functions.updates.GetState())
    assert gateway.metric("mtlab_gateway_connections_total", transport=label) == before + 1


async def test_a_refused_websocket_upgrade_says_so(gateway: Any) -> None:
    # the metrics port speaks HTTP but serves no WebSocket: its 404 is what the client reports
    config = client_config(gateway, TransportKind.INTERMEDIATE, True, websocket=True, ws_port=gateway.metrics_port)
    with anyio.fail_after(10), pytest.raises(ConnectionLost, match=r"refused the WebSocket upgrade \(HTTP 404\)"):
        async with Client(config):
            pass
    with pytest.raises(ValueError, match="must be obfuscated"):
        client_config(gateway, websocket=True)


async def test_an_error_in_the_body_is_raised_as_it_is(gateway: Any) -> None:
    """Leaving ``async with`` by an exception gives the caller that exception, not an ExceptionGroup."""
    with anyio.fail_after(20):
        with pytest.raises(RpcError) as caught:
            async with Client(client_config(gateway)) as client:
                await client.invoke(api.functions.updates.GetState())
    assert caught.value.code == 401


async def test_a_closed_client_refuses_calls_and_ends_its_updates(gateway: Any) -> None:
    with anyio.fail_after(20):
        async with Client(client_config(gateway)) as client:
            updates = client.updates()
        assert not client.connected
        with pytest.raises(ConnectionLost):
            await client.invoke(mt.functions.Ping(ping_id=1))
        assert [u async for u in updates] == []


async def test_an_unknown_server_key_fails_the_handshake(gateway: Any) -> None:
    other = {1234: (0xC0FFEE * (1 << 2000) + 1, 65537)}  # a key the gateway does not offer
    with anyio.fail_after(20):
        with pytest.raises(ConnectionLost, match="no RSA key we know"):
            async with Client(client_config(gateway, server_keys=other)):
                pass


async def test_nothing_listening_fails_fast() -> None:
    port = free_port()  # nothing listens there
    with anyio.fail_after(10):
        with pytest.raises(ConnectionLost, match="cannot connect"):
            async with Client(ClientConfig(server_keys={1: (3, 5)}, port=port)):
                pass
        retrying = ClientConfig(server_keys={1: (3, 5)}, port=port, reconnect=True, reconnect_attempts=3,
                                reconnect_delay=0.01)
        with pytest.raises(ConnectionLost, match="cannot connect"):
            async with Client(retrying):
                pass


async def test_a_stale_salt_and_a_wrong_clock_are_corrected(gateway: Any, tmp_path: Path) -> None:
    """A kept key with a stale salt, then a machine whose clock is 1000 s ahead: the session layer learns the
    salt (bad_server_salt) and the clock (bad_msg_notification 17) from the gateway and resends."""
    path = tmp_path / "me.session"

    def forget_salt_and_clock() -> None:
        data = json.loads(path.read_text())
        data.update(server_salt=0, time_offset=0)
        path.write_text(json.dumps(data))

    with anyio.fail_after(20):
        async with Client(client_config(gateway, session_file=path)) as first:
            key_id = first.auth_key_id
        forget_salt_and_clock()
        async with Client(client_config(gateway, session_file=path)) as stale:
            assert stale.auth_key_id == key_id
            assert (await stale.invoke(mt.functions.Ping(ping_id=3))).ping_id == 3
            assert stale.stats.salt_changes >= 1 and stale.stats.resent >= 1
        assert json.loads(path.read_text())["server_salt"] != 0  # learned, and kept for next time

        forget_salt_and_clock()
        async with Client(client_config(gateway, session_file=path), clock=lambda: time.time() + 1000) as skewed:
            assert (await skewed.invoke(mt.functions.Ping(ping_id=4))).ping_id == 4
            assert skewed.stats.time_corrections >= 1 and skewed.stats.resent >= 1
        assert abs(json.loads(path.read_text())["time_offset"] + 1000) < 5
