"""The running stack as a client sees it: where the gateway listens, which key it signs with, where Redis is.

Read from ``supervisor.json`` in the data directory (what `mtlab status` reads), for `mtlab codes`, `mtlab demo`
and `mtlab chat`. ``find`` answers a sentence instead of a ``RunningStack`` when nothing usable runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.auth.codes import Pending

NOT_RUNNING = "no mtlab stack is running in {data_dir}: start one with `mtlab up` (or `mtlab up --detach`)"


@dataclass(frozen=True)
class RunningStack:
    data_dir: Path
    gateway_host: str
    gateway_port: int
    gateway_ws_port: int  # MTProto over WebSocket (0: a supervisor too old to say)
    server_pem: str  # the gateway's RSA public key (PKCS#1 PEM): what a client pins
    redis_url: str


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((row for row in rows if row.get("name") == name), None)


def find(data_dir: Path) -> RunningStack | str:
    """The stack of ``data_dir`` if a supervisor runs it, else why not (a sentence for the user)."""
    from mtlab.supervisor import read_state, supervisor_running
    from mtproto.crypto import rsa
    from services.gateway.keys import RSA_FILE

    data_dir = data_dir.absolute()
    state = read_state(data_dir)
    if state is None or not supervisor_running(data_dir):
        return NOT_RUNNING.format(data_dir=data_dir)
    gateway, redis = _row(state.get("services", []), "gateway"), _row(state.get("servers", []), "redis")
    if gateway is None or redis is None or not (data_dir / RSA_FILE).exists():
        return f"the stack in {data_dir} is still starting (or broken): see `mtlab status`"
    host, _, port = str(gateway["address"]).rpartition(":")
    key = rsa.load_private_pem((data_dir / RSA_FILE).read_bytes())
    redis_url = str(redis["dsn"])
    if ":***@" in redis_url:  # supervisor.json keeps no passwords: a configured Redis is named in the environment
        redis_url = os.environ.get("MTLAB_REDIS_URL", redis_url)
    ws_port = int(gateway.get("ports", {}).get("ws_port", 0))
    return RunningStack(data_dir, host, int(port), ws_port, rsa.public_pem_pkcs1(key).decode(), redis_url)


async def pending_codes(redis_url: str) -> list[Pending]:
    """The login codes waiting to be typed, newest first (``services.auth.codes.pending`` on the stack's Redis)."""
    from services.auth.codes import pending
    from services.common.redis import connect

    client = connect(redis_url)
    try:
        return await pending(client)
    finally:
        await client.aclose()


def code_attempts() -> int:
    """Wrong guesses a code allows (``MTLAB_AUTH_CODE_ATTEMPTS`` as the auth service reads it)."""
    from services.common.config import AuthConfig, load

    return int(load(AuthConfig, "AUTH", os.environ).code_attempts)


def format_codes(codes: list[Pending], attempts: int) -> list[str]:
    if not codes:
        return ["no login codes pending (auth.sendCode makes one; test numbers 99966XYYYY get X five times)"]
    lines = [f"{'phone':<16}{'code':<10}{'expires in':<13}attempts left"]
    lines += [f"+{c.phone:<15}{c.code:<10}{f'{c.expires_in} s':<13}{max(attempts - c.attempts, 0)}" for c in codes]
    return lines
