"""Losing the gateway: a restart (new process, keys forgotten), a frozen gateway, keep-alive pings.

Every await is bounded by ``anyio.fail_after``: a client that hangs instead of failing fails the test.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from mtlab.client import Client, ConnectionLost
from mtproto.tl import api, mt
from tests.helpers.client import COMBINATION_IDS, COMBINATIONS, client_config, freeze, handshakes

pytestmark = pytest.mark.anyio

FAST_RECONNECT = {"reconnect": True, "reconnect_attempts": 40, "reconnect_delay": 0.05, "reconnect_max_delay": 0.3}


async def test_a_gateway_restart_mid_session(gateway_factory: Any, tmp_path: Path) -> None:
    """Calls in flight when the gateway dies: with reconnect they are answered by the new gateway under a new
    key; without, they raise ConnectionLost and the client stays closed. One restart serves every transport."""
    gw = gateway_factory.start()
    outcome: dict[str, object] = {}

    async def call(name: str, client: Client, ping_id: int) -> None:
        try:
            outcome[name] = (await client.invoke(mt.functions.Ping(ping_id=ping_id))).ping_id
        except ConnectionLost as exc:
            outcome[name] = exc

    # The clients' task groups must nest inside the timeout, not the other way round: a Client entered inside a
    # cancel scope that is left first would be misnested (as any task group would).
    with anyio.fail_after(60):
        async with contextlib.AsyncExitStack() as stack:
            keep: dict[str, Client] = {}
            drop: dict[str, Client] = {}
            for (kind, obfuscated), name in zip(COMBINATIONS, COMBINATION_IDS, strict=True):
                keep[name] = await stack.enter_async_context(Client(client_config(
                    gw, kind, obfuscated, session_file=tmp_path / f"keep-{name}.session", **FAST_RECONNECT)))
                drop[name] = await stack.enter_async_context(Client(client_config(
                    gw, kind, obfuscated, session_file=tmp_path / f"drop-{name}.session")))
            old_keys = {name: client.auth_key_id for name, client in keep.items()}

            freeze(gw)  # the calls below reach the gateway and stay unanswered: in flight when it dies
            async with anyio.create_task_group() as tg:
                for i, name in enumerate(COMBINATION_IDS):
                    tg.start_soon(call, f"keep {name}", keep[name], 100 + i)
                    tg.start_soon(call, f"drop {name}", drop[name], 200 + i)
                await anyio.sleep(0.3)
                assert all(c.in_flight == 1 for c in [*keep.values(), *drop.values()])
                gw = gateway_factory.restart(gw)  # kills the frozen process, starts a new one

            for i, name in enumerate(COMBINATION_IDS):
                assert outcome[f"keep {name}"] == 100 + i, name  # resent on the new connection, answered
                assert isinstance(outcome[f"drop {name}"], ConnectionLost), name
                stats = keep[name].stats
                # one key at the start, one after the restart
                assert (stats.keys_forgotten, stats.handshakes, stats.reconnects) == (1, 2, 1), (name, stats)
                assert keep[name].auth_key_id not in (None, old_keys[name]), name
                assert not drop[name].connected
            assert handshakes(gw) == len(COMBINATIONS)  # each reconnecting client made one new key here

            for name in COMBINATION_IDS:
                assert (await keep[name].invoke(api.functions.help.GetConfig())).this_dc == 2
                with pytest.raises(ConnectionLost):  # a lost client refuses at once, it does not hang
                    await drop[name].invoke(mt.functions.Ping(ping_id=1))

    # The next run of a client that did not reconnect finds an old key in its session file: the gateway answers
    # -404, the client forgets the key and makes a new one, and goes on.
    name = COMBINATION_IDS[0]
    kind, obfuscated = COMBINATIONS[0]
    with anyio.fail_after(20):
        async with Client(client_config(gw, kind, obfuscated, session_file=tmp_path / f"drop-{name}.session")) as again:
            assert (await again.invoke(mt.functions.Ping(ping_id=7))).ping_id == 7
            assert (again.stats.keys_forgotten, again.stats.handshakes) == (1, 1)


async def test_without_reconnect_a_dead_gateway_fails_every_call(gateway_factory: Any) -> None:
    gw = gateway_factory.start()
    with anyio.fail_after(20):
        async with Client(client_config(gw)) as client:
            gw.proc.kill()
            with pytest.raises(ConnectionLost):
                await client.invoke(mt.functions.Ping(ping_id=1))
            with pytest.raises(ConnectionLost):
                async for _ in client.updates():
                    pass
            assert not client.connected


async def test_a_frozen_gateway_is_noticed_by_the_ping(gateway_factory: Any) -> None:
    """No pong within the ping interval: the connection counts as dead, the waiting call fails."""
    gw = gateway_factory.start()
    with anyio.fail_after(20):
        async with Client(client_config(gw, ping_interval=0.3)) as client:
            freeze(gw)
            with pytest.raises(ConnectionLost, match="no pong"):
                await client.invoke(mt.functions.Ping(ping_id=1))


async def test_pings_keep_an_idle_connection_open(gateway_factory: Any) -> None:
    # Margins wide enough for a loaded 2-core machine: a ping every 0.3 s against 2 s of allowed silence.
    gw = gateway_factory.start(MTLAB_GATEWAY_IDLE_TIMEOUT="2")
    with anyio.fail_after(30):
        async with (Client(client_config(gw, ping_interval=0.3)) as pinging,
                    Client(client_config(gw, ping_interval=None)) as silent):
            await anyio.sleep(4)  # well past the gateway's idle timeout
            assert pinging.connected and not silent.connected
            assert (await pinging.invoke(mt.functions.Ping(ping_id=5))).ping_id == 5
            with pytest.raises(ConnectionLost):
                await silent.invoke(mt.functions.Ping(ping_id=6))
