"""Stacks for tests: `mtlab up --detach` in a private data directory on free ports, and cleaning up after it.

Every process of a stack (the supervisor, the services, Postgres and Redis) carries ``MTLAB_DATA_DIR``, so
"nothing is left running" is checked, and cleaned up whatever a test did, by looking for that variable in
``/proc/*/environ``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlab import servers
from mtlab.servers import ServerInfo
from mtlab.supervisor import alive

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    # A developer's configured servers or gateway knobs must not leak into these stacks.
    env = {k: v for k, v in os.environ.items()
           if k not in (servers.POSTGRES_ENV, servers.REDIS_ENV, servers.POSTGRES_OS_USER_ENV)
           and not k.startswith(("MTLAB_GATEWAY_", "MTLAB_AUTH_", "MTLAB_MESSAGES_", "MTLAB_SHARD_", "MTLAB_UPDATES_",
                                    "MTLAB_MEDIA_"))}
    # The auth service's ports and the gateway's WebSocket port: 0 lets the supervisor (or the gateway) pick free
    # ones (stacks of parallel tests never collide).
    return env | {servers.DATA_DIR_ENV: str(data_dir), "MTLAB_GATEWAY_SHUTDOWN_GRACE": "2",
                  "MTLAB_AUTH_RPC_PORT": "0", "MTLAB_AUTH_METRICS_PORT": "0", "MTLAB_GATEWAY_WS_PORT": "0",
                  "MTLAB_MESSAGES_RPC_PORT": "0", "MTLAB_MESSAGES_METRICS_PORT": "0",
                  "MTLAB_UPDATES_RPC_PORT": "0", "MTLAB_UPDATES_METRICS_PORT": "0",
                  "MTLAB_MEDIA_RPC_PORT": "0", "MTLAB_MEDIA_METRICS_PORT": "0",
                  # Fewer shard databases than a laptop's default: each stack of the suite makes its own.
                  "MTLAB_SHARD_LOGICAL": "8", "MTLAB_SHARD_PHYSICAL": "2"} | extra


def processes_of(data_dir: Path) -> list[int]:
    """Live processes of the stack of ``data_dir``: those whose environment names it, the Postgres whose command
    line does (Postgres reuses its environment's memory for its process titles), and their children."""
    mark = f"{servers.DATA_DIR_ENV}={data_dir}\0".encode()
    found: set[int] = set()
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid() or not alive(int(proc.name)):
            continue
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            if mark in (proc / "environ").read_bytes() or str(data_dir).encode() in (proc / "cmdline").read_bytes():
                found.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    while True:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        if not children:
            return sorted(found)
        found |= children


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Stack:
    data_dir: Path
    port: int
    metrics_port: int
    env: dict[str, str]

    def mtlab(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mtlab", *args, "--data-dir", str(self.data_dir)], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.mtlab("up", "--detach", "--gateway-port", str(self.port), "--gateway-metrics-port",
                          str(self.metrics_port), *extra, timeout=150)

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.mtlab("status", "--json", timeout=30)
        return done.returncode, json.loads(done.stdout)

    def endpoint(self, name: str) -> dict[str, Any]:
        return next(e for e in self.status()[1]["endpoints"] if e["name"] == name)

    def state(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "supervisor.json").read_text())


def kill_and_wait(stack: Stack, service: str) -> None:
    """SIGKILL a service of the stack and wait until the supervisor has it running and healthy again."""
    before = stack.endpoint(service)
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(f"{service} to be restarted", lambda: (now := stack.endpoint(service))["pid"] not in (
        None, before["pid"]) and now["healthy"], timeout=60)


def _force_clean(data_dir: Path) -> None:
    """Whatever a test left: stop it. `mtlab down` first (the normal way), then kill what still runs."""
    with contextlib.suppress(Exception):
        subprocess.run([sys.executable, "-m", "mtlab", "down", "--data-dir", str(data_dir)], cwd=REPO,
                       env=env_for(data_dir), capture_output=True, timeout=60, check=False)
    for kind in ("postgres", "redis"):
        state = data_dir / f"{kind}.json"
        with contextlib.suppress(Exception):
            pid = json.loads(state.read_text())["pid"]
            servers.stop(ServerInfo(kind=kind, dsn="", managed=True, source="", data_dir=data_dir, pid=pid))
    for pid in processes_of(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def running_stack(**env: str) -> Iterator[Stack]:
    """A new stack (``new_stack``) with ``env`` added to its environment, started detached (``mtlab up``): the
    module-scoped ``stack`` fixture of the tests that talk to a whole stack."""
    with new_stack() as s:
        s.env.update(env)
        done = s.up()
        assert done.returncode == 0, done.stdout + done.stderr
        yield s


@contextlib.contextmanager
def new_stack() -> Iterator[Stack]:
    # Not pytest's tmp_path: under root, Postgres runs as another account, which must be able to enter the data
    # directory, and pytest's base temporary directory is private to the user running the tests.
    data_dir = Path(tempfile.mkdtemp(prefix="mtlab-up-"))
    data_dir.chmod(0o755)
    try:
        yield Stack(data_dir, free_port(), free_port(), env_for(data_dir))
    finally:
        _force_clean(data_dir)
