"""Real gateway processes for tests: start one on free loopback ports, read its metrics, stop it cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[str]
    port: int
    metrics_port: int
    data_dir: Path
    log: Path
    ws_port: int = 0

    def metrics(self) -> str:
        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith(name + ("{" + want + "}" if want else " ")) or (
                not want and line.startswith(name + " ")
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> int:
        return terminate(self.proc)


def terminate(proc: subprocess.Popen[str]) -> int:
    """SIGTERM and 20 s to exit (a service's graceful shutdown), then SIGKILL; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _wait_listening(port: int, deadline: float) -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def start_gateway(tmp: Path, **env: str) -> GatewayProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    port, metrics_port, ws_port = free_port(), free_port(), free_port()
    log = tmp / "gateway.log"
    full_env = {
        **os.environ,
        "MTLAB_GATEWAY_PORT": str(port),
        "MTLAB_GATEWAY_METRICS_PORT": str(metrics_port),
        "MTLAB_GATEWAY_WS_PORT": str(ws_port),
        "MTLAB_GATEWAY_DATA_DIR": str(tmp / "data"),
        "MTLAB_GATEWAY_SHUTDOWN_GRACE": "2",
        **env,
    }
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.gateway"], cwd=REPO, env=full_env, text=True,
            stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{log.read_text()}")
        if re.search(r"MTProto on \S+:\d+", log.read_text()):
            # The line is printed once the MTProto port is bound; /metrics starts beside it and may take a moment
            # longer: a test's first metric() must not race it.
            _wait_listening(int(full_env["MTLAB_GATEWAY_METRICS_PORT"]), deadline)
            # What the process really uses: ``env`` may have overridden the ports and the data dir.
            return GatewayProcess(proc, int(full_env["MTLAB_GATEWAY_PORT"]),
                                  int(full_env["MTLAB_GATEWAY_METRICS_PORT"]), Path(full_env["MTLAB_GATEWAY_DATA_DIR"]),
                                  log, int(full_env["MTLAB_GATEWAY_WS_PORT"]))
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"gateway did not start in 30 s:\n{log.read_text()}")
