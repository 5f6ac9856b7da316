"""Every knob of every mtlab service, read from ``MTLAB_*`` environment variables in this one module.

A student looking for "what can I turn" reads this file (or runs ``mtlab config``); a service never reads
``os.environ`` anywhere else. Each setting has a default that works on a laptop, a type, and a one-line
reason. Invalid values fail at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A ``MTLAB_*`` variable has a value that cannot be used."""


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GatewayConfig:
    """The MTProto gateway (services/gateway)."""

    host: str = _knob("127.0.0.1", "address the MTProto TCP listener binds")
    port: int = _knob(4430, "MTProto TCP port (every transport, auto-detected)")
    metrics_port: int = _knob(9430, "HTTP port of /metrics and /healthz")
    dc_id: int = _knob(2, "the DC id this gateway serves (obfuscated clients name it)")
    data_dir: Path = _knob(Path(".mtlab"), "where the RSA key and salt secret live (relative to the cwd)")  # noqa: RUF009
    max_connections: int = _knob(10_000, "open connections beyond this are refused with -429")
    max_frame: int = _knob(1024 * 1024 + 8192, "largest transport frame accepted, checked from the length header")
    handshakes_per_ip: float = _knob(20.0, "auth-key handshakes per second per client IP before -429")
    handshake_timeout: float = _knob(30.0, "seconds a connection may spend creating an auth key")
    idle_timeout: float = _knob(300.0, "seconds without a byte from the client before the connection closes")
    session_queue: int = _knob(1024, "messages waiting to be written per connection before it is closed")
    shutdown_grace: float = _knob(10.0, "seconds connections get to drain on shutdown")


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw).expanduser()
        return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def load(cls: type[Any], prefix: str, env: Mapping[str, str] | None = None) -> Any:
    """Build ``cls`` from ``MTLAB_<PREFIX>_<FIELD>`` variables, defaults for the rest."""
    env = os.environ if env is None else env
    values = {}
    for f in fields(cls):
        name = f"MTLAB_{prefix}_{f.name.upper()}"
        if name in env:
            values[f.name] = _convert(name, env[name], f.type)
    return cls(**values)


def gateway_config(env: Mapping[str, str] | None = None) -> GatewayConfig:
    config: GatewayConfig = load(GatewayConfig, "GATEWAY", env)
    for name in ("max_connections", "max_frame", "session_queue"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_GATEWAY_{name.upper()} must be positive")
    return config


def describe(cls: type[Any], prefix: str) -> list[tuple[str, str, str]]:
    """(variable, default, help) for each knob: what ``mtlab config`` prints."""
    return [(f"MTLAB_{prefix}_{f.name.upper()}", str(f.default), f.metadata.get("help", "")) for f in fields(cls)]
