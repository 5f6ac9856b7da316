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
    ws_port: int = _knob(4440, "MTProto over WebSocket port (binary messages, obfuscation required); 0: any free")
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
    auth_host: str = _knob("", "the auth service's internal RPC address; empty: run alone (keys in memory, "
                               "no sign-in: what the gateway's own tests use)")
    auth_port: int = _knob(4431, "the auth service's internal RPC port")
    messages_host: str = _knob("", "the message service's internal RPC address; empty: no message service (messages.* "
                                   "calls get 500 SERVICE_UNAVAILABLE)")
    messages_port: int = _knob(4432, "the message service's internal RPC port")
    updates_host: str = _knob("", "the updates service's internal RPC address; empty: none (updates.getState falls "
                                  "back to the message service)")
    updates_port: int = _knob(4433, "the updates service's internal RPC port")
    media_host: str = _knob("", "the media service's internal RPC address; empty: none (upload.* calls get 500 "
                                "SERVICE_UNAVAILABLE)")
    media_port: int = _knob(4434, "the media service's internal RPC port")
    calls_per_connection: int = _knob(64, "RPCs one connection may have waiting on services; beyond, reading pauses")
    rpc_timeout: float = _knob(30.0, "seconds a service may take to answer before the client gets 500 RPC_TIMEOUT")
    key_cache_size: int = _knob(100_000, "auth-key records cached in this process (LRU; kept fresh by keys.watch)")


@dataclass(frozen=True)
class DataConfig:
    """Where the shared Postgres and Redis are (``MTLAB_POSTGRES_DSN``, ``MTLAB_REDIS_URL``, no service prefix).

    ``mtlab up`` and the tests set both (mtlab/servers.py starts the servers when none is configured); a service
    started by hand needs them exported.
    """

    postgres_dsn: str = _knob("", "the main database, e.g. postgresql://postgres@127.0.0.1:5432/mtlab")
    redis_url: str = _knob("", "Redis for login codes, rate limits and change notifications, e.g. redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class AuthConfig:
    """The auth and session service (services/auth)."""

    host: str = _knob("127.0.0.1", "address the internal RPC and metrics listeners bind")
    rpc_port: int = _knob(4431, "internal RPC port the gateways connect to")
    metrics_port: int = _knob(9431, "HTTP port of /metrics and /healthz")
    dc_id: int = _knob(2, "this DC's id, as help.getConfig tells clients (the gateway's MTLAB_GATEWAY_DC_ID)")
    dc_host: str = _knob("127.0.0.1", "the gateway address help.getConfig gives clients (its dc_options)")
    dc_port: int = _knob(4430, "the gateway port help.getConfig gives clients")
    code_ttl: int = _knob(300, "seconds a login code stays valid")
    code_attempts: int = _knob(5, "wrong guesses of one login code before it is destroyed")
    code_length: int = _knob(5, "digits in a login code (test numbers 99966XYYYY always get X five times)")
    codes_per_phone: int = _knob(5, "login codes one phone number may be sent per flood window")
    codes_per_ip: int = _knob(30, "login codes one client address may request per flood window")
    flood_window: int = _knob(600, "seconds over which codes_per_phone and codes_per_ip are counted")
    pool_size: int = _knob(10, "Postgres connections this process keeps at most")
    txn_retries: int = _knob(5, "times a transaction is retried whole after a serialization failure or deadlock")
    authorization_ttl_days: int = _knob(180, "days an idle authorization lives, as account.getAuthorizations says")


@dataclass(frozen=True)
class ShardConfig:
    """The sharded chat database (shard_db): how many logical shards, on which Postgres databases.

    These seed the shard map the first time it is created (``mtlab db migrate``, or the first service start);
    after that the map in the main database is the truth, and ``mtlab shards move`` changes it.
    """

    logical: int = _knob(64, "logical shards: users and chats are spread over them by id; fixed once the map exists")
    physical: int = _knob(4, "Postgres databases the logical shards are spread over when MTLAB_SHARD_DSNS is empty "
                             "(<main database>_shard_<n> on the main server, created when missing)")
    dsns: str = _knob("", "comma-separated DSNs of the shard databases (one per physical shard); empty: derived")
    pool_size: int = _knob(5, "Postgres connections one process keeps at most per physical shard")


@dataclass(frozen=True)
class MessagesConfig:
    """The message service (services/messages)."""

    host: str = _knob("127.0.0.1", "address the internal RPC and metrics listeners bind")
    rpc_port: int = _knob(4432, "internal RPC port the gateways connect to")
    metrics_port: int = _knob(9432, "HTTP port of /metrics and /healthz")
    pool_size: int = _knob(5, "Postgres connections to the main database (users) this process keeps at most")
    txn_retries: int = _knob(5, "times a transaction is retried whole after a serialization failure or deadlock")
    max_length: int = _knob(4096, "longest message text, in characters (Telegram's message_length_max)")
    outbox_interval: float = _knob(1.0, "seconds between sweeps that apply outbox rows a request left behind")
    outbox_batch: int = _knob(100, "outbox rows one sweep applies per shard")
    deliver_inline: bool = _knob(True, "deliver to the recipient's shard right after the sender's commit; off: only "
                                       "the outbox sweeper delivers (what a crash between the two commits leaves)")
    crash_after_sends: int = _knob(0, "fault injection for labs and tests: the process exits (code 70) right after "
                                      "the Nth send commits, before delivering it; 0: never")
    media_host: str = _knob("", "the media service's internal RPC address (messages.sendMedia stores files there); "
                                "empty: none (sendMedia and uploadMedia get 500 SERVICE_UNAVAILABLE)")
    media_port: int = _knob(4434, "the media service's internal RPC port")


@dataclass(frozen=True)
class UpdatesConfig:
    """The updates service (services/updates)."""

    host: str = _knob("127.0.0.1", "address the internal RPC and metrics listeners bind")
    rpc_port: int = _knob(4433, "internal RPC port the gateways connect to")
    metrics_port: int = _knob(9433, "HTTP port of /metrics and /healthz")
    pool_size: int = _knob(5, "Postgres connections to the main database (users) this process keeps at most")
    difference_limit: int = _knob(1000, "updates one getDifference answer carries at most (then a slice)")
    too_long: int = _knob(10_000, "a client this many pts behind gets differenceTooLong and reloads its chats")
    push_workers: int = _knob(4, "tasks reading the logs of users (and channels) whose notes came in, to push them")


KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class MediaConfig:
    """The media and file service (services/media)."""

    host: str = _knob("127.0.0.1", "address the internal RPC and metrics listeners bind")
    rpc_port: int = _knob(4434, "internal RPC port the gateways and the message service connect to")
    metrics_port: int = _knob(9434, "HTTP port of /metrics and /healthz")
    data_dir: Path = _knob(Path(".mtlab"), "the stack's data directory (the supervisor sets it)")  # noqa: RUF009
    dir: str = _knob("", "where blobs and staged parts live; empty: <data_dir>/media")
    pool_size: int = _knob(5, "Postgres connections to the main database this process keeps at most")
    txn_retries: int = _knob(5, "times a transaction is retried whole after a serialization failure or deadlock")
    max_file_size: int = _knob(2000 * MIB, "largest file accepted, in bytes (Telegram's: 2000 MiB = 4000 parts of "
                                           "512 KiB)")
    max_parts: int = _knob(4000, "most parts one file may have (saveBigFilePart's file_total_parts)")
    small_file_max: int = _knob(10 * MIB, "files above this must be uploaded with saveBigFilePart (the spec's 10 MB)")
    quota_bytes: int = _knob(20 * 1024 * MIB, "bytes one user may have stored plus staged; beyond: 400 "
                                              "MEDIA_QUOTA_EXCEEDED")
    parts_in_flight: int = _knob(8000, "parts one user may have staged (uploaded, not yet in a message); beyond: "
                                       "400 UPLOAD_PARTS_TOO_MANY")
    upload_expiry: float = _knob(86400.0, "seconds an upload may sit unused before the sweeper deletes its parts")
    sweep_interval: float = _knob(60.0, "seconds between sweeps of expired uploads and orphaned blobs")
    orphan_grace: float = _knob(600.0, "seconds a blob file no row points at is kept before the sweeper deletes it "
                                       "(an assembly may be about to commit it; a freed blob goes after this)")
    dc_id: int = _knob(2, "the DC id documents and photos name (the gateway's MTLAB_GATEWAY_DC_ID: clients "
                          "download where the file says it lives)")
    photo_max_size: int = _knob(10 * MIB, "an uploaded photo larger than this is stored as a document, undecoded")
    messages_host: str = _knob("", "the message service's internal RPC address (who is a channel's member, which "
                                   "files messages still carry); empty: none (a channel's files are read only by "
                                   "readers by name, nothing is released)")
    messages_port: int = _knob(4432, "the message service's internal RPC port")
    member_ttl: float = _knob(10.0, "seconds the message service's 'a member of the channel' is trusted for "
                                    "downloads (one who leaves keeps reading the channel's files this long)")
    release_grace: float = _knob(3600.0, "seconds after the last message named a file before the sweeper may "
                                         "release it for want of a message (a send in progress finishes first)")
    release_recheck: float = _knob(3600.0, "seconds before the sweeper asks again about a file a message still "
                                           "carried (every held file is asked about this often)")
    crash_at: str = _knob("", "fault injection for labs and tests: the process exits (code 70) during assembly, at "
                              "'write' (half the blob written) or 'rename' (blob in place, metadata not committed)")

    @property
    def storage_dir(self) -> Path:
        return Path(self.dir).expanduser() if self.dir else self.data_dir / "media"


@dataclass(frozen=True)
class LogConfig:
    """How every service process logs (``MTLAB_LOG_*``, shared; ``services/common/logs.py`` applies it)."""

    level: str = _knob("INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL: the least severe record written")
    format: str = _knob("", "json (one object a line) or text; empty: json when stderr is not a terminal "
                            "(under `mtlab up`, whose logs are files), text on a terminal")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw).expanduser()
        return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def variable(prefix: str, name: str) -> str:
    """The environment variable of a knob: ``MTLAB_<PREFIX>_<NAME>``, or ``MTLAB_<NAME>`` for shared knobs."""
    return f"MTLAB_{prefix}_{name.upper()}" if prefix else f"MTLAB_{name.upper()}"


def load(cls: type[Any], prefix: str, env: Mapping[str, str] | None = None) -> Any:
    """Build ``cls`` from ``MTLAB_<PREFIX>_<FIELD>`` variables (``MTLAB_<FIELD>`` when ``prefix`` is empty),
    defaults for the rest."""
    env = os.environ if env is None else env
    values = {}
    for f in fields(cls):
        name = variable(prefix, f.name)
        if name in env:
            values[f.name] = _convert(name, env[name], f.type)
    return cls(**values)


def gateway_config(env: Mapping[str, str] | None = None) -> GatewayConfig:
    config: GatewayConfig = load(GatewayConfig, "GATEWAY", env)
    for name in ("max_connections", "max_frame", "session_queue", "calls_per_connection", "rpc_timeout",
                 "key_cache_size"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_GATEWAY_{name.upper()} must be positive")
    return config


def auth_config(env: Mapping[str, str] | None = None) -> AuthConfig:
    config: AuthConfig = load(AuthConfig, "AUTH", env)
    for name in ("code_ttl", "code_attempts", "code_length", "codes_per_phone", "codes_per_ip", "flood_window",
                 "pool_size"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_AUTH_{name.upper()} must be positive")
    if config.txn_retries < 0:
        raise ConfigError("MTLAB_AUTH_TXN_RETRIES must not be negative")
    if not 4 <= config.code_length <= 9:
        raise ConfigError("MTLAB_AUTH_CODE_LENGTH must be between 4 and 9 digits")
    return config


def shard_config(env: Mapping[str, str] | None = None) -> ShardConfig:
    config: ShardConfig = load(ShardConfig, "SHARD", env)
    for name in ("logical", "physical", "pool_size"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_SHARD_{name.upper()} must be positive")
    if config.logical > 32767:
        raise ConfigError("MTLAB_SHARD_LOGICAL must be at most 32767 (shard numbers are smallint)")
    return config


def messages_config(env: Mapping[str, str] | None = None) -> MessagesConfig:
    config: MessagesConfig = load(MessagesConfig, "MESSAGES", env)
    for name in ("pool_size", "max_length", "outbox_interval", "outbox_batch"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_MESSAGES_{name.upper()} must be positive")
    for name in ("txn_retries", "crash_after_sends"):
        if getattr(config, name) < 0:
            raise ConfigError(f"MTLAB_MESSAGES_{name.upper()} must not be negative")
    return config


def updates_config(env: Mapping[str, str] | None = None) -> UpdatesConfig:
    config: UpdatesConfig = load(UpdatesConfig, "UPDATES", env)
    for name in ("pool_size", "difference_limit", "too_long"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_UPDATES_{name.upper()} must be positive")
    return config


def media_config(env: Mapping[str, str] | None = None) -> MediaConfig:
    config: MediaConfig = load(MediaConfig, "MEDIA", env)
    for name in ("pool_size", "max_file_size", "max_parts", "small_file_max", "quota_bytes", "parts_in_flight",
                 "upload_expiry", "sweep_interval", "orphan_grace", "release_grace", "release_recheck"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"MTLAB_MEDIA_{name.upper()} must be positive")
    if config.txn_retries < 0:
        raise ConfigError("MTLAB_MEDIA_TXN_RETRIES must not be negative")
    if config.crash_at not in ("", "write", "rename"):
        raise ConfigError(f"MTLAB_MEDIA_CRASH_AT={config.crash_at!r} is not write, rename or empty")
    return config


def log_config(env: Mapping[str, str] | None = None) -> LogConfig:
    config: LogConfig = load(LogConfig, "LOG", env)
    level, format_ = config.level.upper(), config.format.lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"MTLAB_LOG_LEVEL={config.level!r} is not one of {', '.join(LOG_LEVELS)}")
    if format_ and format_ not in LOG_FORMATS:
        raise ConfigError(f"MTLAB_LOG_FORMAT={config.format!r} is not json or text (or empty: chosen by the terminal)")
    return LogConfig(level=level, format=format_)


def data_config(env: Mapping[str, str] | None = None, *, required: bool = True) -> DataConfig:
    """The shared servers; with ``required``, a missing one stops the service with what to do."""
    config: DataConfig = load(DataConfig, "", env)
    if required:
        for f in fields(DataConfig):
            if not getattr(config, f.name):
                raise ConfigError(f"{variable('', f.name)} is not set: start the stack with `mtlab up`, or export it "
                                  f"({f.metadata['help'].split('e.g. ')[-1]})")
    return config


def describe(cls: type[Any], prefix: str) -> list[tuple[str, str, str]]:
    """(variable, default, help) for each knob: what ``mtlab config`` prints."""
    return [(variable(prefix, f.name), str(f.default), f.metadata.get("help", "")) for f in fields(cls)]
