"""`mtlab up`, `status`, `key` and `down` as a user runs them: real processes, a real Postgres and Redis started by
mtlab.servers, real MTProto over TCP. Nothing is mocked.

Every stack lives in its own data directory on free ports. The commands run with ``MTLAB_DATA_DIR`` set to that
directory, so every process of the stack (the supervisor, the gateway, Postgres and Redis, which inherit the
environment) carries it: "nothing is left running" is checked, and cleaned up whatever a test did, by looking for
that variable in ``/proc/*/environ``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mtlab import servers, supervisor
from mtlab.selfcheck import PairClient, Transcript, run_client
from mtlab.supervisor import alive
from mtproto.crypto import rsa
from mtproto.tl import LAYER, api, mt
from mtproto.transport import TransportKind
from tests.helpers.stack import REPO, Stack, closed, new_stack, processes_of, running_stack, wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One detached stack for the tests that leave it running."""
    with running_stack() as s:
        yield s


@pytest.fixture
def fresh() -> Iterator[Stack]:
    """A stack of its own (not started yet), for a test that stops or breaks it."""
    with new_stack() as s:
        yield s


def mtproto_exchange(stack: Stack) -> list[str]:
    key = rsa.load_private_pem((stack.data_dir / "gateway_rsa.pem").read_bytes())
    client = PairClient(TransportKind.INTERMEDIATE, True, {rsa.fingerprint(key.n, key.e): (key.n, key.e)}, os.urandom)
    transcript = Transcript(TransportKind.INTERMEDIATE, True)
    init = api.functions.InitConnection(
        api_id=1, device_model="pytest", system_version="x", app_version="1", system_lang_code="en",
        lang_pack="", lang_code="en", query=api.functions.help.GetConfig(),
    )
    queries: list[Any] = [api.functions.InvokeWithLayer(layer=LAYER, query=init), mt.functions.Ping(ping_id=7)]

    async def go() -> None:
        with anyio.fail_after(20):
            async with await anyio.connect_tcp("127.0.0.1", stack.port) as tcp:
                await run_client(client, tcp, tcp, queries, time.time, transcript)  # type: ignore[arg-type]

    anyio.run(go)
    return sorted(transcript.results)


# --- a running stack ------------------------------------------------------------------------------------------


def test_detached_up_reports_every_endpoint_healthy(stack: Stack) -> None:
    code, report = stack.status()
    assert code == 0, report
    assert report["running"] and report["healthy"] and report["supervisor"]["detached"]
    by_name = {e["name"]: e for e in report["endpoints"]}
    assert set(by_name) == {"auth", "messages", "updates", "media", "gateway", "postgres", "redis"}
    assert all(e["healthy"] and e["status"] == "healthy" for e in by_name.values())
    gateway = by_name["gateway"]
    assert gateway["address"] == f"127.0.0.1:{stack.port}"
    assert gateway["health_url"] == f"http://127.0.0.1:{stack.metrics_port}/healthz"
    assert gateway["log"] == str(stack.data_dir / "logs" / "gateway.log")
    for name in ("postgres", "redis"):  # started under the test's data dir, by the supervisor itself
        assert by_name[name]["managed"] and by_name[name]["started_by_supervisor"]
        assert not closed(int(by_name[name]["address"].rsplit(":", 1)[1]))

    ws_port = gateway["ports"]["ws_port"]  # MTLAB_GATEWAY_WS_PORT=0 here: the supervisor picked a free port
    assert gateway["addresses"] == [
        {"address": f"127.0.0.1:{stack.port}", "protocol": "MTProto", "knob": "port"},
        {"address": f"127.0.0.1:{ws_port}", "protocol": "MTProto over WebSocket", "knob": "ws_port"},
    ]
    assert not closed(ws_port)

    human = stack.mtlab("status")
    assert human.returncode == 0
    assert re.search(rf"gateway\s+127\.0\.0\.1:{stack.port} \(MTProto\)\s+http://127\.0\.0\.1:{stack.metrics_port}"
                     rf"/metrics\s+{gateway['pid']}\s+healthy\n\s+127\.0\.0\.1:{ws_port} \(MTProto over WebSocket\)\n",
                     human.stdout), human.stdout
    assert "all healthy" in human.stdout


def test_the_gateway_speaks_mtproto_on_its_port(stack: Stack) -> None:
    assert mtproto_exchange(stack) == ["invokeWithLayer -> config(this_dc=2, dc_options=1)", "ping -> pong(ping_id=7)"]


def test_key_prints_the_gateway_public_key_and_fingerprint(stack: Stack) -> None:
    private = rsa.load_private_pem((stack.data_dir / "gateway_rsa.pem").read_bytes())
    signed = rsa.fingerprint(private.n, private.e)

    done = stack.mtlab("key")
    assert done.returncode == 0, done.stderr
    pem = re.search(r"-----BEGIN RSA PUBLIC KEY-----\n.+?\n-----END RSA PUBLIC KEY-----\n", done.stdout, re.S)
    assert pem is not None, done.stdout
    assert rsa.load_public_pem(pem.group().encode()) == (private.n, private.e)
    assert f"{signed & (2**64 - 1):016x}" in done.stdout
    assert re.search(rf"^\s+{signed}\s", done.stdout, re.M)

    only = stack.mtlab("key", "--pem")
    assert only.stdout == pem.group()  # nothing but the PEM, ready for `> key.pem`


def test_a_killed_gateway_is_restarted(stack: Stack) -> None:
    before = stack.endpoint("gateway")
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        now = stack.endpoint("gateway")
        return now if now["pid"] not in (None, before["pid"]) and now["healthy"] else None

    after = wait_for("the gateway to be restarted", restarted)
    assert after["restarts"] == before["restarts"] + 1
    assert stack.status()[0] == 0
    log = (stack.data_dir / "logs" / "supervisor.log").read_text()
    assert re.search(r"gateway\s+exited \(killed by SIGKILL\).*restarting in", log), log
    assert mtproto_exchange(stack)[1] == "ping -> pong(ping_id=7)"  # a new process, the same key on disk


# --- stopping --------------------------------------------------------------------------------------------------


def test_down_stops_everything(fresh: Stack) -> None:
    done = fresh.up()
    assert done.returncode == 0, done.stdout + done.stderr
    _, report = fresh.status()
    pids = [fresh.state()["pid"]] + [e["pid"] for e in report["endpoints"]]
    ports = [fresh.port, fresh.metrics_port] + [int(e["address"].rsplit(":", 1)[1]) for e in report["endpoints"]]
    assert len(processes_of(fresh.data_dir)) >= 4  # supervisor, gateway, postgres (and its workers), redis

    down = fresh.mtlab("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "gateway   stopped (exit code 0" in down.stdout
    assert "mtlab down: stopped" in down.stdout
    assert processes_of(fresh.data_dir) == []
    assert all(closed(port) for port in ports)
    assert not any(alive(pid) for pid in pids)
    assert servers.status(fresh.data_dir) == []  # the Postgres and Redis it started are stopped
    assert not (fresh.data_dir / "supervisor.json").exists()

    code, report = fresh.status()
    assert code == 1 and not report["running"]


def test_foreground_up_stops_cleanly_on_ctrl_c(fresh: Stack) -> None:
    out = fresh.data_dir / "up.out"
    with out.open("w") as sink:
        # Its own process group, signalled as a whole: what a terminal does on Ctrl-C.
        proc = subprocess.Popen(
            [sys.executable, "-m", "mtlab", "up", "--data-dir", str(fresh.data_dir), "--gateway-port",
             str(fresh.port), "--gateway-metrics-port", str(fresh.metrics_port)],
            cwd=REPO, env=fresh.env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("the stack to run", lambda: "supervising" in out.read_text() or proc.poll() is not None, 120)
        assert proc.poll() is None, out.read_text()
        assert fresh.status()[0] == 0
        assert "Ctrl-C" in out.read_text()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert "stopping (SIGINT)" in text and "stopped; data kept" in text
    assert "restart" not in text.split("supervising")[1]  # the gateway was stopped, not crashed and restarted
    assert processes_of(fresh.data_dir) == []
    assert closed(fresh.port) and closed(fresh.metrics_port)
    assert servers.status(fresh.data_dir) == []


def test_down_with_nothing_running_says_so(fresh: Stack) -> None:
    done = fresh.mtlab("down", timeout=30)
    assert done.returncode == 0
    assert "mtlab is not running" in done.stdout and "nothing to stop" in done.stdout
    status = fresh.mtlab("status", timeout=30)
    assert status.returncode == 1 and "mtlab is not running" in status.stdout


def test_down_after_the_supervisor_was_killed_stops_what_it_left(fresh: Stack) -> None:
    done = fresh.up()
    assert done.returncode == 0, done.stdout + done.stderr
    supervisor = fresh.state()["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for("the supervisor to die", lambda: not alive(supervisor))

    code, report = fresh.status()
    assert code == 1 and not report["running"] and not report["supervisor"]["alive"]
    gateway = next(e for e in report["endpoints"] if e["name"] == "gateway")
    wait_for("the gateway to follow its supervisor", lambda: not alive(gateway["pid"]), 15)  # PR_SET_PDEATHSIG
    assert processes_of(fresh.data_dir)  # but Postgres and Redis are daemons: they outlive it...

    down = fresh.mtlab("down")
    assert down.returncode == 0 and "gone without stopping" in down.stdout, down.stdout
    assert processes_of(fresh.data_dir) == []  # ...until `mtlab down`
    assert servers.status(fresh.data_dir) == []


# --- failing -----------------------------------------------------------------------------------------------


def test_a_service_that_cannot_start_fails_clearly_and_leaves_nothing(fresh: Stack) -> None:
    fresh.env["MTLAB_GATEWAY_MAX_CONNECTIONS"] = "0"  # the gateway refuses this configuration at start-up
    done = fresh.up()
    assert done.returncode == 1
    assert "gateway exited during start-up (exit code 1)" in done.stdout, done.stdout
    assert "MTLAB_GATEWAY_MAX_CONNECTIONS must be positive" in done.stdout  # the tail of its log
    assert processes_of(fresh.data_dir) == []
    assert servers.status(fresh.data_dir) == []


def test_a_taken_port_is_named_before_anything_starts(fresh: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", fresh.port))
        taken.listen()
        done = fresh.up()
    assert done.returncode == 1
    assert f"port {fresh.port} (gateway port, --gateway-port) is taken" in done.stdout, done.stdout
    assert not (fresh.data_dir / "postgres.json").exists()  # refused before Postgres was started


def test_a_gateway_that_keeps_crashing_is_given_up_on(fresh: Stack) -> None:
    done = fresh.up()
    assert done.returncode == 0, done.stdout + done.stderr
    killed: set[int] = set()

    def crash_until_given_up() -> bool:
        gateway = next(s for s in fresh.state()["services"] if s["name"] == "gateway")
        if gateway["status"] == "failed":
            return True
        if gateway["pid"] and gateway["pid"] not in killed:
            killed.add(gateway["pid"])
            with contextlib.suppress(ProcessLookupError):
                os.kill(gateway["pid"], signal.SIGKILL)
        return False

    wait_for("the supervisor to give up", crash_until_given_up, 60)  # backoff 0.5 + 1 + 2 + 4 s
    assert len(killed) == 5
    code, report = fresh.status()
    gateway = next(e for e in report["endpoints"] if e["name"] == "gateway")
    assert code == 1 and gateway["status"] == "failed" and not gateway["healthy"]
    assert "gave up after 5 crashes" in gateway["detail"]
    assert "gave up after 5 crashes" in (fresh.data_dir / "logs" / "supervisor.log").read_text()
    assert "NOT all healthy" in fresh.mtlab("status").stdout


def test_ports_picked_for_zero_are_all_different(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every knob set to 0 gets a free port of its own, even when the system hands out the same free port twice
    in a row (it may: each probe socket is closed before the next is opened). The repeats are forced here, since
    the kernel's choice cannot be."""
    handed_out = iter([50001, 50001, 50002, 50002, 50002, 50003, *range(50004, 50100)])
    monkeypatch.setattr(supervisor, "_free_port", lambda host: next(handed_out))
    zeros = {s.name: {p.knob: 0 for p in s.ports} for s in supervisor.SERVICES}
    plans = supervisor.Supervisor(supervisor.UpOptions(data_dir=tmp_path, ports=zeros))._plan()
    assert not isinstance(plans, str), plans
    numbers = [n for run in plans for n in run.endpoint.ports.values()]
    assert len(numbers) == len(set(numbers)) == sum(len(s.ports) for s in supervisor.SERVICES)
