"""Real auth-service processes (and gateways wired to them) for tests, on the run's real Postgres and Redis."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from services.auth.codes import code_for_test_number
from tests.helpers.gateway import GatewayProcess, free_port, terminate
from tests.helpers.gateway import start_gateway as _start_gateway

REPO = Path(__file__).resolve().parents[2]


_numbers_given: set[str] = set()


def fresh_test_number() -> tuple[str, str]:
    """A Telegram-style test number 99966XYYYY never given out before in this process, and its login code (X five
    times: services/auth/codes.py)."""
    while True:
        phone = f"99966{random.randrange(1, 10)}{random.randrange(10**4):04d}"
        if phone not in _numbers_given:
            _numbers_given.add(phone)
            return phone, str(code_for_test_number(phone))


def _scrape(port: int, path: str) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    return int(text.split(" ", 2)[1]), text.split("\r\n\r\n", 1)[1]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels`` (all of its series when none are given)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series != name and not series.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


@dataclass
class ServiceProcess:
    """``python -m <module>`` (an asyncio service) on its own ports; ``start`` again brings it back on the same ones.
    Started means its log says "internal RPC on 127.0.0.1:<rpc_port>" (services/common/service.serve)."""

    module: str
    env: dict[str, str]
    log: Path
    rpc_port: int
    metrics_port: int
    start_timeout: float = 60.0
    proc: subprocess.Popen[str] | None = None
    starts: int = 0

    def start(self, **extra: str) -> ServiceProcess:
        self.starts += 1
        with self.log.open("a") as out:
            out.write(f"--- start {self.starts} ---\n")
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], cwd=REPO, env=self.env | extra, text=True,
                                     stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        marker = f"internal RPC on 127.0.0.1:{self.rpc_port}"
        while time.monotonic() < deadline:
            text = self.log.read_text().rsplit(f"--- start {self.starts} ---", 1)[-1]
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{text}")
            if marker in text:
                return self
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"{self.module} did not start in {self.start_timeout:.0f} s:\n{self.log.read_text()}")

    def stop(self) -> int | None:
        return None if self.proc is None else terminate(self.proc)

    def wait(self, timeout: float = 30) -> int:
        """The exit code of a process that is expected to end by itself."""
        if self.proc is None:
            raise RuntimeError(f"{self.module} was never started")
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metrics(self) -> str:
        return _scrape(self.metrics_port, "/metrics")[1]

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def healthz(self) -> int:
        return _scrape(self.metrics_port, "/healthz")[0]


def start_auth(tmp: Path, postgres_dsn: str, redis_url: str, **env: str) -> ServiceProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    rpc_port, metrics_port = free_port(), free_port()
    full_env = {
        **os.environ,
        "MTLAB_POSTGRES_DSN": postgres_dsn,
        "MTLAB_REDIS_URL": redis_url,
        "MTLAB_AUTH_RPC_PORT": str(rpc_port),
        "MTLAB_AUTH_METRICS_PORT": str(metrics_port),
        **env,
    }
    return ServiceProcess("services.auth", full_env, tmp / "auth.log", rpc_port, metrics_port,
                          start_timeout=30.0).start()


def start_gateway(tmp: Path, auth: ServiceProcess | None, **env: str) -> GatewayProcess:
    """A gateway in front of ``auth`` (None: standalone), with no handshake rate limit (tests make many keys)."""
    wired = {"MTLAB_GATEWAY_AUTH_HOST": "127.0.0.1", "MTLAB_GATEWAY_AUTH_PORT": str(auth.rpc_port)} if auth else {}
    settings = {"MTLAB_GATEWAY_HANDSHAKES_PER_IP": "100000", "MTLAB_GATEWAY_SHUTDOWN_GRACE": "0", **wired, **env}
    return _start_gateway(tmp, **settings)


@dataclass
class Stack:
    """A database, a Redis database, an auth service, and (for end-to-end tests) gateways in front of it."""

    tmp: Path
    postgres_dsn: str
    redis_url: str
    auth: ServiceProcess
    dc_port: int  # the first gateway's port: help.getConfig names it, so the auth service is told it up front
    gateways: list[GatewayProcess] = field(default_factory=list)

    def gateway(self, **env: str) -> GatewayProcess:
        first = not self.gateways
        if first:
            env = {"MTLAB_GATEWAY_PORT": str(self.dc_port), **env}
        gw = start_gateway(self.tmp / f"gw{len(self.gateways)}", self.auth, **env)
        if first:
            gw = replace(gw, port=self.dc_port)
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            gw.stop()
        self.auth.stop()


def make_stack(tmp: Path, databases: Any, redis_databases: Any, **env: str) -> Stack:
    dsn, url, dc_port = databases.create(), redis_databases.create(), free_port()
    return Stack(tmp, dsn, url, start_auth(tmp, dsn, url, MTLAB_AUTH_DC_PORT=str(dc_port), **env), dc_port)
