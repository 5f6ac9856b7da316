"""Real gateway processes for the client tests, started like the gateway's own tests start them, with knobs
for these tests: no handshake rate limit (each test makes new keys quickly) and no shutdown grace."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtlab.client import ClientConfig, TransportKind
from mtproto.crypto import rsa
from tests.helpers.gateway import start_gateway as _start_gateway

ENV = {"MTLAB_GATEWAY_HANDSHAKES_PER_IP": "100000", "MTLAB_GATEWAY_SHUTDOWN_GRACE": "0"}

#: every transport, plain and obfuscated (the full framing has no obfuscated form)
COMBINATIONS = [(k, False) for k in TransportKind] + [(k, True) for k in TransportKind if k is not TransportKind.FULL]
COMBINATION_IDS = [f"{k.value}{'+obfuscated' if o else ''}" for k, o in COMBINATIONS]
#: what MTProto over WebSocket carries: the obfuscated transports
WEBSOCKET_KINDS = [k for k in TransportKind if k is not TransportKind.FULL]


def start_gateway(tmp: Path, **env: str) -> Any:
    return _start_gateway(tmp, **{**ENV, **env})


def restart_gateway(old: Any, tmp: Path) -> Any:
    """Kill ``old`` (SIGKILL: a crash, even if it is stopped) and start a new process on its ports and data dir.

    The RSA key and salt secret persist in the data dir; auth keys live in the old process's memory only.
    """
    old.proc.kill()
    old.proc.wait()
    new = start_gateway(tmp, MTLAB_GATEWAY_PORT=str(old.port), MTLAB_GATEWAY_METRICS_PORT=str(old.metrics_port),
                        MTLAB_GATEWAY_DATA_DIR=str(old.data_dir))
    return replace(new, port=old.port, metrics_port=old.metrics_port, data_dir=old.data_dir)


def freeze(gw: Any) -> None:
    """SIGSTOP: the gateway accepts bytes into its socket buffers but answers nothing."""
    os.kill(gw.proc.pid, signal.SIGSTOP)


def thaw(gw: Any) -> None:
    if gw.proc.poll() is None:
        os.kill(gw.proc.pid, signal.SIGCONT)


def public_pem(gw: Any) -> str:
    """The gateway's public key as PKCS#1 PEM, the form a client library embeds."""
    key = rsa.load_private_pem((gw.data_dir / "gateway_rsa.pem").read_bytes())
    return rsa.public_pem_pkcs1(key).decode("ascii")


def client_config(gw: Any, kind: TransportKind = TransportKind.INTERMEDIATE, obfuscated: bool = False,
                  **overrides: Any) -> ClientConfig:
    settings: dict[str, Any] = {"server_keys": public_pem(gw), "port": gw.port, "ws_port": gw.ws_port, **overrides}
    return ClientConfig(transport=kind, obfuscated=obfuscated, **settings)


def handshakes(gw: Any) -> float:
    return float(gw.metric("mtlab_gateway_handshakes_total", result="ok"))

class GatewayFactory:
    """Gateways of one test; all are stopped (and thawed first) when it ends."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Any] = []

    def start(self, **env: str) -> Any:
        gw = start_gateway(self.tmp / f"gw{len(self.started)}", **env)
        self.started.append(gw)
        return gw

    def restart(self, old: Any) -> Any:
        gw = restart_gateway(old, self.tmp / f"gw{len(self.started)}")
        self.started.append(gw)
        return gw
