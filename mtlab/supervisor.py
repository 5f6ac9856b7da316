"""The stack supervisor behind ``mtlab up``: Postgres and Redis, then every service as its own process, kept running.

What ``mtlab up`` does, in order:

1. Postgres and Redis through ``mtlab.servers``: a server configured in ``MTLAB_POSTGRES_DSN`` / ``MTLAB_REDIS_URL``
   is used as is and never stopped; otherwise mtlab's own, under the data directory.
2. Every entry of ``SERVICES``, in order, as ``python -m <module>`` in a session of its own (so the terminal's
   Ctrl-C reaches only the supervisor, which then stops the services itself), with its ``MTLAB_*`` environment
   and its output appended to ``<data>/logs/<name>.log``. On Linux the kernel stops a service whose supervisor
   was killed outright (``PR_SET_PDEATHSIG``). A service is ready when ``/healthz``
   answers 200 and its address port accepts connections; a service with a ``check`` then gets one real request
   (the gateway: an auth-key handshake and two RPCs over TCP). A service that is not ready within the start
   timeout stops the whole start-up, with the tail of its log.
3. The supervisor loop, ten times a second: a service that exited is restarted after a pause that doubles with
   each crash that follows a start too closely (``RestartPolicy``); after ``give_up_after`` such crashes in a row
   the supervisor gives up on it and says so. Every few seconds it asks each service's ``/healthz`` and prints
   a line when the answer changes. One line per event, with the time.
4. SIGINT (Ctrl-C), SIGTERM or SIGHUP: SIGTERM to every service, their shutdown grace to finish, SIGKILL for
   the ones still running; then the Postgres and Redis this supervisor started itself (never configured ones,
   never ones it found already running).

What it keeps in the data directory::

    supervisor.json   pid, state, and every endpoint with its pid and status: what `mtlab status` and
                      `mtlab down` read; written whenever something changes, removed on a clean stop
    supervisor.lock   held (flock) while a supervisor runs: at most one per data directory, and a
                      supervisor that died is told apart from a running one without trusting a pid
    logs/             one log per service, and supervisor.log for a detached supervisor

``mtlab up --detach`` starts the same supervisor in the background and shows its log until the stack is ready;
``mtlab down`` signals it (or, when it died, stops what its state file names); ``mtlab status`` asks every
endpoint, live.

The loop is plain blocking code on purpose: the supervisor waits on child processes and on the clock, nothing
runs concurrently, and a student reads it top to bottom. Signals only set a flag that the loop checks, so a
stop never interrupts a half-done step (a server being started, a state file being written).

To add a service, add one ``Service`` entry: its ports and knobs come from its config class in
``services/common/config.py``, the command line grows ``--<name>-<port>`` options on its own.
"""

# S603 asks whether subprocess arguments could be untrusted: every program started here is this Python running one
# of the modules named in SERVICES, given as an argument list.
# ruff: noqa: S603

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from mtlab import servers
from mtlab.servers import ServerInfo
from services.common.config import AuthConfig, GatewayConfig, MediaConfig, MessagesConfig, UpdatesConfig, load

STATE_FILE = "supervisor.json"
LOCK_FILE = "supervisor.lock"
LOGS = "logs"
SUPERVISOR_LOG = "supervisor.log"
# Set by `mtlab up --detach` for the supervisor it starts in the background (changes only what it prints).
DETACHED_ENV = "MTLAB_SUPERVISOR_DETACHED"


def default_data_dir() -> Path:
    """``MTLAB_DATA_DIR`` if set, else ``.mtlab`` in the current directory (the gateway's own default)."""
    return Path(os.environ.get(servers.DATA_DIR_ENV) or ".mtlab").expanduser().absolute()


# --- the stack, as data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    knob: str  # the config field, e.g. "metrics_port": MTLAB_GATEWAY_METRICS_PORT and --gateway-metrics-port
    serves: str  # what listens there, for --help
    # A second port clients connect to (beside the service's address): what the endpoint table calls it. Listed
    # under the address by `mtlab up` and `mtlab status` (in "addresses" with --json), and probed like it.
    protocol: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where one running service listens."""

    service: Service
    host: str
    ports: dict[str, int]  # knob -> port
    data_dir: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.ports[self.service.address_port]}"

    @property
    def addresses(self) -> list[dict[str, str]]:
        """Every port a client connects to, the address first: ``{"address", "protocol", "knob"}`` each."""
        found = [{"address": self.address, "protocol": self.service.protocol, "knob": self.service.address_port}]
        found += [{"address": f"{self.host}:{self.ports[port.knob]}", "protocol": port.protocol, "knob": port.knob}
                  for port in self.service.ports if port.protocol and port.knob != self.service.address_port]
        return found

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.ports[self.service.health_port]}{path}"


@dataclass(frozen=True)
class Service:
    """One process of the stack. Its environment and health URL follow from these fields:

    - ``MTLAB_<PREFIX>_<KNOB>`` for each port, ``MTLAB_<PREFIX>_DATA_DIR`` (the data directory), and for every
      service ``MTLAB_POSTGRES_DSN``, ``MTLAB_REDIS_URL`` and ``MTLAB_DATA_DIR``; the rest of the supervisor's
      environment is inherited, so any other ``MTLAB_<PREFIX>_*`` knob a student exports reaches the service;
    - health: ``http://<host>:<health_port>/healthz``, metrics beside it on ``/metrics``.
    """

    name: str  # the log file, the --<name>-* options, the status row
    module: str  # started as `python -m <module>`
    prefix: str  # its knobs are MTLAB_<PREFIX>_*
    config: type  # its dataclass in services/common/config.py: defaults for host, ports, shutdown_grace
    ports: tuple[Port, ...]
    protocol: str  # what its address speaks, for the endpoint table
    address_port: str = "port"
    health_port: str = "metrics_port"
    # Run by the supervisor before the first start: create what the service would otherwise race to create, and
    # return facts worth printing (the gateway: its RSA key, and the fingerprint clients pin).
    prepare: Callable[[Path], dict[str, str]] | None = None
    # One real request once /healthz answers; returns a one-line summary, raises when the service fails it.
    check: Callable[[Endpoint], str] | None = None
    # More environment, from the whole stack's endpoints (all ports are chosen before anything starts), for a
    # service that must find another: e.g. lambda stack: {"MTLAB_AUTH_DC_PORT": str(stack["gateway"].ports["port"])}
    env: Callable[[Mapping[str, Endpoint]], dict[str, str]] | None = None

    def settings(self, env: Mapping[str, str]) -> Any:
        return load(self.config, self.prefix, env)


def _gateway_prepare(data_dir: Path) -> dict[str, str]:
    key, _created = gateway_key(data_dir)
    return {"RSA fingerprint": describe_fingerprint(key)}


def _gateway_check(endpoint: Endpoint) -> str:
    """An auth-key handshake, invokeWithLayer(initConnection(help.getConfig)) and ping, over TCP (full transport)."""
    import anyio

    from mtlab.selfcheck import PairClient, Transcript, run_client
    from mtproto.crypto import rsa
    from mtproto.tl import LAYER, api, mt
    from mtproto.transport import TransportKind

    key, _ = gateway_key(endpoint.data_dir)
    host, port = endpoint.host, endpoint.ports["port"]
    client = PairClient(TransportKind.FULL, False, {rsa.fingerprint(key.n, key.e): (key.n, key.e)}, os.urandom)
    transcript = Transcript(TransportKind.FULL, False)
    init = api.functions.InitConnection(
        api_id=1, device_model="mtlab up", system_version=sys.platform, app_version="check", system_lang_code="en",
        lang_pack="", lang_code="en", query=api.functions.help.GetConfig(),
    )
    queries: list[Any] = [api.functions.InvokeWithLayer(layer=LAYER, query=init), mt.functions.Ping(ping_id=1)]

    async def exchange() -> None:
        with anyio.fail_after(10):
            async with await anyio.connect_tcp(host, port) as stream:
                await run_client(client, stream, stream, queries, time.time, transcript)  # type: ignore[arg-type]

    started = time.perf_counter()
    anyio.run(exchange)
    answers = sorted(transcript.results)
    if not (answers[0].startswith("invokeWithLayer -> config(") and answers[1] == "ping -> pong(ping_id=1)"):
        raise RuntimeError(f"unexpected answers: {answers}")
    return (f"MTProto over TCP: auth key {transcript.auth_key_id} created, help.getConfig and ping answered "
            f"({(time.perf_counter() - started) * 1000:.0f} ms)")


SERVICES: tuple[Service, ...] = (
    # auth first: the gateway's start-up check asks help.getConfig, which the auth service answers.
    Service(
        name="auth", module="services.auth", prefix="AUTH", config=AuthConfig,
        ports=(Port("rpc_port", "internal RPC (the gateways connect here)"),
               Port("metrics_port", "HTTP /metrics and /healthz")),
        protocol="internal RPC", address_port="rpc_port",
        # help.getConfig tells clients where the gateway is
        env=lambda stack: {"MTLAB_AUTH_DC_HOST": stack["gateway"].host,
                           "MTLAB_AUTH_DC_PORT": str(stack["gateway"].ports["port"])},
    ),
    # messages before the gateway, which routes messages.*, channels.* and contacts.* to it. Its first start
    # creates and migrates the shard databases.
    Service(
        name="messages", module="services.messages", prefix="MESSAGES", config=MessagesConfig,
        ports=(Port("rpc_port", "internal RPC (the gateways connect here)"),
               Port("metrics_port", "HTTP /metrics and /healthz")),
        protocol="internal RPC", address_port="rpc_port",
        # messages.sendMedia hands files to the media service (it reconnects until media is up)
        env=lambda stack: {"MTLAB_MESSAGES_MEDIA_HOST": stack["media"].host,
                           "MTLAB_MESSAGES_MEDIA_PORT": str(stack["media"].ports["rpc_port"])},
    ),
    # updates after messages, whose first start creates the shard map it reads.
    Service(
        name="updates", module="services.updates", prefix="UPDATES", config=UpdatesConfig,
        ports=(Port("rpc_port", "internal RPC (the gateways connect here)"),
               Port("metrics_port", "HTTP /metrics and /healthz")),
        protocol="internal RPC", address_port="rpc_port",
    ),
    # media after messages (either may migrate the main database first: the migrations take a lock).
    Service(
        name="media", module="services.media", prefix="MEDIA", config=MediaConfig,
        ports=(Port("rpc_port", "internal RPC (the gateways and the message service connect here)"),
               Port("metrics_port", "HTTP /metrics and /healthz")),
        protocol="internal RPC", address_port="rpc_port",
        # channel membership for downloads, and which files messages still carry (the release)
        env=lambda stack: {"MTLAB_MEDIA_MESSAGES_HOST": stack["messages"].host,
                           "MTLAB_MEDIA_MESSAGES_PORT": str(stack["messages"].ports["rpc_port"])},
    ),
    Service(
        name="gateway", module="services.gateway", prefix="GATEWAY", config=GatewayConfig,
        ports=(Port("port", "MTProto TCP port, every transport"),
               Port("ws_port", "MTProto over WebSocket (obfuscated transports, subprotocol binary)",
                    protocol="MTProto over WebSocket"),
               Port("metrics_port", "HTTP /metrics and /healthz")),
        protocol="MTProto", prepare=_gateway_prepare, check=_gateway_check,
        env=lambda stack: {"MTLAB_GATEWAY_AUTH_HOST": stack["auth"].host,
                           "MTLAB_GATEWAY_AUTH_PORT": str(stack["auth"].ports["rpc_port"]),
                           "MTLAB_GATEWAY_MESSAGES_HOST": stack["messages"].host,
                           "MTLAB_GATEWAY_MESSAGES_PORT": str(stack["messages"].ports["rpc_port"]),
                           "MTLAB_GATEWAY_UPDATES_HOST": stack["updates"].host,
                           "MTLAB_GATEWAY_UPDATES_PORT": str(stack["updates"].ports["rpc_port"]),
                           "MTLAB_GATEWAY_MEDIA_HOST": stack["media"].host,
                           "MTLAB_GATEWAY_MEDIA_PORT": str(stack["media"].ports["rpc_port"])},
    ),
)


@dataclass(frozen=True)
class RestartPolicy:
    """When a crashed service is started again, and when the supervisor stops trying."""

    first_delay: float = 0.5  # seconds before the first restart
    max_delay: float = 30.0  # the doubling stops here
    quick: float = 30.0  # a crash within this many seconds of a start counts towards giving up
    give_up_after: int = 5  # quick crashes in a row

    def delay(self, quick_crashes: int) -> float:
        return min(self.first_delay * 2.0 ** max(quick_crashes - 1, 0), self.max_delay)


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    ports: dict[str, dict[str, int | None]] = field(default_factory=dict)  # service -> knob -> port (None: config)
    postgres_port: int | None = None
    redis_port: int | None = None
    start_timeout: float = 30.0
    policy: RestartPolicy = RestartPolicy()


# --- small helpers ---------------------------------------------------------------------------------------------


def gateway_key(data_dir: Path) -> tuple[Any, bool]:
    """The gateway's RSA key in ``data_dir`` (created when missing, as the gateway would); True if made just now."""
    from services.gateway.keys import RSA_FILE, load_or_create_rsa_key, load_or_create_salt_secret

    created = not (data_dir / RSA_FILE).exists()
    key = load_or_create_rsa_key(data_dir)
    load_or_create_salt_secret(data_dir)
    return key, created


def describe_fingerprint(key: Any) -> str:
    from mtproto.crypto import rsa

    signed = rsa.fingerprint(key.n, key.e)
    return f"{signed & (2**64 - 1):016x} (signed {signed})"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_taken(host: str, port: int) -> bool:
    # SO_REUSEADDR as the services set it, so a port whose last connections linger in TIME_WAIT counts as free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def probe_http(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """GET ``url``: (True, "HTTP 200") when it answers 200, else (False, what happened).

    The timeout is above the 3 s a service gives its own health check (services/common/http.py), so a slow
    dependency shows as the service's 503, not as a probe of ours that gave up first.
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        response.read()
        return response.status == 200, f"HTTP {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, str(exc) or type(exc).__name__
    finally:
        conn.close()


def alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not count)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True
    return not fields or fields[0] != "Z"


def _die_with(parent: int) -> Callable[[], None] | None:
    """For Popen's preexec_fn, on Linux: the kernel sends the child SIGTERM when ``parent`` dies, even by SIGKILL.

    A supervisor killed outright (an OOM kill, a test's timeout) then leaves no service running unsupervised.
    Postgres and Redis are daemons by design (see mtlab.servers): the next `mtlab up` or `mtlab down` stops them.
    """
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no threads in the supervisor
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: too late for the kernel to tell us
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def redact(dsn: str) -> str:
    """A DSN without its password: the endpoint table and supervisor.json are for reading, not for secrets."""
    parts = urlsplit(dsn)
    if not parts.password:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _host_port(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port}"


def readable(line: str) -> str:
    """A JSON log line (services/common/logs.py) as a person reads it: time, level, logger, message, traceback.
    Any other line (a print, a traceback Python wrote itself) comes back as it is."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or not isinstance(record.get("msg"), str):
        return line
    text = f"{str(record.get('ts', ''))[11:23]} {record.get('level', '')} {record.get('logger', '')}: {record['msg']}"
    return f"{text}\n{record['exc']}" if record.get("exc") else text


def _tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "  | (no log)"
    shown = "\n".join(readable(line) for line in text.strip().splitlines()[-lines:])
    return "\n".join(f"  | {line}" for line in shown.splitlines()) or "  | (empty)"


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


# --- the state file and the lock -------------------------------------------------------------------------------


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    # Written whole, then renamed over the old one: a reader never sees half a file.
    tmp = data_dir / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(data_dir / STATE_FILE)


@contextlib.contextmanager
def _try_lock(data_dir: Path) -> Iterator[bool]:
    """Hold the supervisor lock of ``data_dir`` for the block; False when another process holds it."""
    with (data_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def supervisor_running(data_dir: Path) -> bool:
    """A supervisor holds the lock of ``data_dir`` (the lock dies with its process, a pid file would not)."""
    if not (data_dir / LOCK_FILE).exists():
        return False
    with _try_lock(data_dir) as got:
        return not got


# --- one supervised process ------------------------------------------------------------------------------------


@dataclass
class _Running:
    service: Service
    endpoint: Endpoint
    env: dict[str, str]
    log: Path
    grace: float
    facts: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    started: float = 0.0  # monotonic
    status: str = "stopped"  # starting, healthy, unhealthy, backoff, failed, stopped
    detail: str = ""
    restarts: int = 0
    quick_crashes: int = 0
    restart_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def ready(self) -> bool:
        ok, _ = probe_http(self.endpoint.url("/healthz"))
        return ok and tcp_open(self.endpoint.host, self.endpoint.ports[self.service.address_port])

    def row(self) -> dict[str, Any]:
        return {
            "name": self.service.name, "kind": "service", "module": self.service.module,
            "protocol": self.service.protocol, "address": self.endpoint.address, "host": self.endpoint.host,
            "addresses": self.endpoint.addresses, "ports": self.endpoint.ports,
            "metrics_url": self.endpoint.url("/metrics"),
            "health_url": self.endpoint.url("/healthz"), "pid": self.pid, "status": self.status,
            "detail": self.detail, "restarts": self.restarts, "log": str(self.log), "facts": self.facts,
            "shutdown_grace": self.grace,
        }


class Supervisor:
    """``mtlab up`` in the foreground: start everything, supervise until a signal, stop everything."""

    def __init__(self, options: UpOptions, out: TextIO | None = None, *, detached: bool = False) -> None:
        self.options = options
        self.data_dir = options.data_dir.absolute()
        self.logs = self.data_dir / LOGS
        self.out = out or sys.stdout
        self.detached = detached
        self.policy = options.policy
        self.runs: list[_Running] = []
        self.servers: list[tuple[ServerInfo, bool]] = []  # (server, started by this supervisor)
        self.state = "starting"
        self.started_at = time.time()
        self._stop: str | None = None  # why we stop, once a signal came
        self._force = False

    # -- output ------------------------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        with contextlib.suppress(OSError):  # a closed terminal or pipe must not stop the supervisor mid-way
            print(text, file=self.out, flush=True)

    def event(self, name: str, text: str) -> None:
        self.say(f"{time.strftime('%H:%M:%S')} {name:<9} {text}")

    # -- signals -----------------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop is None:
            self._stop = signal.Signals(signum).name
        else:
            self._force = True  # a second Ctrl-C: no more grace

    # -- the whole life ----------------------------------------------------------------------------------------

    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        with _try_lock(self.data_dir) as got:
            if not got:
                state = read_state(self.data_dir) or {}
                self.say(f"mtlab up: a supervisor (pid {state.get('pid', '?')}) already runs the stack of "
                         f"{self.data_dir}.\n`mtlab status` shows it, `mtlab down` stops it.")
                return 1
            stale = read_state(self.data_dir)
            if stale is not None:
                self.say(f"mtlab up: the last supervisor (pid {stale.get('pid')}) did not stop cleanly; "
                         "stopping what it left running")
                stop_leftovers(self.data_dir, stale, self.say)
            stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in stop_signals}
            try:
                code = self._start()
                if code == 0 and self._stop is None:
                    self._supervise()
                return code
            finally:
                self._shutdown()
                (self.data_dir / STATE_FILE).unlink(missing_ok=True)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _save(self) -> None:
        _write_state(self.data_dir, {
            "pid": os.getpid(), "state": self.state, "detached": self.detached, "started_at": self.started_at,
            "data_dir": str(self.data_dir), "logs": str(self.logs),
            "stop_within": max((run.grace for run in self.runs), default=10.0) + 45.0,
            "services": [run.row() for run in self.runs],
            "servers": [_server_row(info, mine) for info, mine in self.servers],
        })

    # -- start-up ----------------------------------------------------------------------------------------------

    def _plan(self) -> list[_Running] | str:
        """Every service's endpoint and environment, or why they cannot start (a port taken, a bad knob)."""
        plans: list[_Running] = []
        taken: dict[int, str] = {}
        for service in SERVICES:
            try:
                settings = service.settings(os.environ)
            except ValueError as exc:
                return f"{service.name}: {exc}"
            wanted = self.options.ports.get(service.name, {})
            ports: dict[str, int] = {}
            for port in service.ports:
                number = wanted.get(port.knob)
                number = getattr(settings, port.knob) if number is None else number
                option = f"--{service.name}-{port.knob.replace('_', '-')}"
                if number == 0:
                    # A free port the system hands out can be the one it handed out a moment ago for another
                    # knob (each probe socket is closed again): ask again until it is one nobody here has.
                    number = _free_port(settings.host)
                    while number in taken:
                        number = _free_port(settings.host)
                elif _port_taken(settings.host, number):
                    return (f"port {number} ({service.name} {port.knob}, {option}) is taken by another program on "
                            f"{settings.host}.\n`ss -ltnp 'sport = :{number}'` names it; stop it, or pick another "
                            f"port: {option} N (0 picks a free one).")
                if number in taken:
                    return f"port {number} is given twice: {taken[number]} and {option}"
                taken[number] = option
                ports[port.knob] = number
            endpoint = Endpoint(service, settings.host, ports, self.data_dir)
            env = {key: value for key, value in os.environ.items() if key != DETACHED_ENV}
            env |= {f"MTLAB_{service.prefix}_{knob.upper()}": str(number) for knob, number in ports.items()}
            env |= {f"MTLAB_{service.prefix}_DATA_DIR": str(self.data_dir), servers.DATA_DIR_ENV: str(self.data_dir),
                    "PYTHONUNBUFFERED": "1"}
            grace = float(getattr(settings, "shutdown_grace", 10.0))
            plans.append(_Running(service, endpoint, env, self.logs / f"{service.name}.log", grace))
        stack = {run.service.name: run.endpoint for run in plans}
        for run in plans:
            if run.service.env is not None:
                run.env |= run.service.env(stack)
        return plans

    def _start(self) -> int:
        begun = time.monotonic()
        mode = " (detached)" if self.detached else ""
        self.say(f"mtlab up{mode}: data in {self.data_dir}, logs in {self.logs}")
        plans = self._plan()
        if isinstance(plans, str):
            self.say(f"mtlab up: cannot start: {plans}")
            return 1
        self.runs = plans
        self._save()
        if not self._start_servers():
            return 0 if self._stop is not None else 1
        # Every service finds the servers where a service started by hand would: MTLAB_POSTGRES_DSN, MTLAB_REDIS_URL.
        dsns = {servers.POSTGRES_ENV if info.kind == "postgres" else servers.REDIS_ENV: info.dsn
                for info, _ in self.servers}
        for run in self.runs:
            run.env |= dsns
            if self._stop is not None:
                return 0
            if run.service.prepare is not None:
                run.facts = run.service.prepare(self.data_dir)
            t0 = time.monotonic()
            self._spawn(run)
            failure = self._wait_ready(run, t0 + self.options.start_timeout)
            if failure is None:
                self.say(f"  {run.service.name:<9} healthy  pid {run.pid}, {run.service.protocol} on "
                         f"{run.endpoint.address}, /healthz answered after {time.monotonic() - t0:.2f} s")
                if run.service.check is not None:
                    try:
                        self.say(f"  {run.service.name:<9} check    {run.service.check(run.endpoint)}")
                    except Exception as exc:  # a failed check is reported like a failed start
                        failure = f"answers /healthz but failed its check: {type(exc).__name__}: {exc}"
            if failure == "interrupted":
                return 0
            if failure is not None:
                self.say(f"mtlab up: {run.service.name} {failure}.\nThe last lines of {run.log}:\n"
                         f"{_tail(run.log, run.log_offset)}\n"
                         f"Fix what the log says and run mtlab up again; `{sys.executable} -m {run.service.module}` "
                         "runs it alone.")
                return 1
            run.status = "healthy"
            self._save()
        self.state = "running"
        self._save()
        self._print_endpoints()
        self.say(f"ready in {time.monotonic() - begun:.1f} s; supervising (one line per event)")
        return 0

    def _start_servers(self) -> bool:
        before = {info.kind for info in servers.status(self.data_dir) if info.managed}
        starters: list[tuple[str, Callable[[], ServerInfo]]] = [
            ("postgres", lambda: servers.ensure_postgres(self.data_dir, port=self.options.postgres_port)),
            ("redis", lambda: servers.ensure_redis(self.data_dir, port=self.options.redis_port)),
        ]
        for kind, ensure in starters:
            if self._stop is not None:
                return False
            t0 = time.monotonic()
            try:
                info = ensure()
            except servers.ServerError as exc:
                self.say(f"mtlab up: {exc}")
                return False
            mine = info.managed and kind not in before
            self.servers.append((info, mine))
            self._save()
            if not info.managed:
                how = f"configured ({info.source}; mtlab neither starts nor stops it)"
            elif mine:
                how = f"started  pid {info.pid} on {_host_port(info.dsn)}, {info.source}, {time.monotonic() - t0:.2f} s"
            else:
                how = f"reused   pid {info.pid} on {_host_port(info.dsn)} (already running; left running on stop)"
            self.say(f"  {kind:<9} {how}")
        return True

    def _spawn(self, run: _Running) -> None:
        run.log_offset = run.log.stat().st_size if run.log.exists() else 0
        argv = [sys.executable, "-m", run.service.module]
        with run.log.open("ab") as log:
            log.write(f"\n--- mtlab up {time.strftime('%Y-%m-%d %H:%M:%S')}: $ {' '.join(argv)}\n".encode())
            log.flush()
            # start_new_session: the terminal's Ctrl-C goes to the supervisor alone, which stops services in order.
            # preexec_fn: the supervisor runs no threads while it starts services, so the fork is safe.
            run.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=run.env, start_new_session=True, preexec_fn=_die_with(os.getpid()))
        run.started = time.monotonic()
        run.status, run.detail = "starting", ""

    def _wait_ready(self, run: _Running, deadline: float) -> str | None:
        """None once ``run`` is ready; else why not ("interrupted" when a signal came)."""
        proc = run.proc
        if proc is None:
            return "was not started"
        while True:
            if self._stop is not None:
                return "interrupted"
            code = proc.poll()
            if code is not None:
                return f"exited during start-up ({_signal_name(code)})"
            if run.ready():
                return None
            if time.monotonic() > deadline:
                return (f"did not answer {run.endpoint.url('/healthz')} within {self.options.start_timeout:.0f} s "
                        "(--start-timeout)")
            time.sleep(0.1)

    def _print_endpoints(self) -> None:
        self.say()
        rows = [run.row() | {"healthy": run.status == "healthy"} for run in self.runs]
        rows += [_server_row(info, mine) | {"healthy": True} for info, mine in self.servers]
        for line in format_table(rows):
            self.say(line)
        self.say()
        self.say(f"data  {self.data_dir}")
        self.say(f"logs  {self.logs}/<service>.log; postgres.log and redis.log in the data directory")
        for run in self.runs:
            for fact, value in run.facts.items():
                self.say(f"{run.service.name} {fact}: {value}")
        stop = "mtlab down" if self.detached else "Ctrl-C"
        self.say("\nnext:  mtlab key       the gateway's public key and fingerprint, for a client\n"
                 "       mtlab status    every endpoint and its health (--json for scripts)\n"
                 f"       {stop:<15} stop everything")

    # -- supervising -------------------------------------------------------------------------------------------

    def _supervise(self, probe_every: float = 5.0) -> None:
        next_probe = time.monotonic() + probe_every
        while self._stop is None:
            now = time.monotonic()
            for run in self.runs:
                changed = self._step(run, now)
                if changed:
                    self._save()
            if now >= next_probe:
                next_probe = now + probe_every
                if any(self._probe(run) for run in self.runs):
                    self._save()
            time.sleep(0.1)

    def _step(self, run: _Running, now: float) -> bool:
        """Move one service along; True when its status changed."""
        proc = run.proc
        if run.status in ("starting", "healthy", "unhealthy") and proc is not None:
            code = proc.poll()
            if code is not None:
                self._crashed(run, f"exited ({_signal_name(code)}) after {now - run.started:.1f} s", now)
                return True
        if run.status == "starting":
            if run.ready():
                run.status, run.detail = "healthy", ""
                self.event(run.service.name, f"healthy again (pid {run.pid}, restart {run.restarts}, "
                                             f"{now - run.started:.2f} s)")
                return True
            if now - run.started > self.options.start_timeout:
                self._kill(run)
                self._crashed(run, f"not healthy within {self.options.start_timeout:.0f} s of its restart; killed",
                              now)
                return True
        if run.status == "backoff" and now >= run.restart_at:
            run.restarts += 1
            self._spawn(run)
            self.event(run.service.name, f"restarted (pid {run.pid}, restart {run.restarts})")
            return True
        return False

    def _crashed(self, run: _Running, what: str, now: float) -> None:
        quick = now - run.started < self.policy.quick
        run.quick_crashes = run.quick_crashes + 1 if quick else 0
        if run.quick_crashes >= self.policy.give_up_after:
            run.status = "failed"
            run.detail = f"gave up after {run.quick_crashes} crashes within {self.policy.quick:.0f} s of a start"
            stop = "`mtlab down`" if self.detached else "Ctrl-C"
            self.event(run.service.name, f"{what}; {run.detail}. It stays down: fix the cause, then {stop} and "
                                         f"`mtlab up`. The last lines of {run.log}:\n{_tail(run.log, run.log_offset)}")
            return
        delay = self.policy.delay(run.quick_crashes)
        run.status, run.restart_at = "backoff", now + delay
        run.detail = what
        count = f" (crash {run.quick_crashes} of {self.policy.give_up_after} before it gives up)" if quick else ""
        self.event(run.service.name, f"{what}; restarting in {delay:.1f} s{count}")

    def _probe(self, run: _Running) -> bool:
        if run.status not in ("healthy", "unhealthy"):
            return False
        ok, why = probe_http(run.endpoint.url("/healthz"))
        if ok and run.status == "unhealthy":
            run.status, run.detail = "healthy", ""
            self.event(run.service.name, "healthy again")
            return True
        if not ok and run.status == "healthy":
            run.status, run.detail = "unhealthy", f"/healthz: {why}"
            self.event(run.service.name, f"unhealthy: {run.endpoint.url('/healthz')} answered {why}")
            return True
        return False

    # -- stopping ----------------------------------------------------------------------------------------------

    def _kill(self, run: _Running) -> None:
        if run.proc is not None and run.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)  # the group: whatever the service started goes too
            run.proc.wait()

    def _shutdown(self) -> None:
        self.state = "stopping"
        running = [run for run in self.runs if run.pid is not None]
        if running or any(mine for _, mine in self.servers):
            self.say(f"{time.strftime('%H:%M:%S')} stopping ({self._stop or 'start-up failed'})")
            with contextlib.suppress(OSError):
                self._save()
        for run in reversed(running):
            if run.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    run.proc.send_signal(signal.SIGTERM)
        for run in reversed(running):
            proc = run.proc
            if proc is None:
                continue
            t0 = time.monotonic()
            # The service's own shutdown grace (connections drain), a little more for the interpreter to exit.
            deadline = t0 + run.grace + 5.0
            while proc.poll() is None and time.monotonic() < deadline and not self._force:
                time.sleep(0.05)
            how = "stopped"
            if proc.poll() is None:
                self._kill(run)
                how = "killed (SIGKILL: a second signal)" if self._force else "killed (SIGKILL) after its grace"
            run.status = "stopped"
            self.event(run.service.name, f"{how} ({_signal_name(proc.returncode)}, {time.monotonic() - t0:.1f} s)")
        for info, mine in reversed(self.servers):
            if not mine:
                continue
            try:
                servers.stop(info)
                self.event(info.kind, f"stopped (pid {info.pid})")
            except servers.ServerError as exc:
                self.event(info.kind, f"could not be stopped: {exc}")
        if running or any(mine for _, mine in self.servers):
            self.say(f"{time.strftime('%H:%M:%S')} stopped; data kept in {self.data_dir}")


def _server_row(info: ServerInfo, mine: bool) -> dict[str, Any]:
    return {
        "name": info.kind, "kind": "server", "address": _host_port(info.dsn), "dsn": redact(info.dsn),
        "pid": info.pid, "managed": info.managed, "started_by_supervisor": mine, "source": info.source,
        "log": str(info.log) if info.log else None, "status": "healthy",
    }


# --- after a supervisor died: what it left -------------------------------------------------------------------


def _terminate_pid(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_leftovers(data_dir: Path, state: dict[str, Any], say: Callable[[str], None]) -> None:
    """Stop the services and servers a dead supervisor's state names, if they still run, and forget the state.

    A service pid counts only while its command line still names its module (a pid can be reused after a reboot);
    a server is stopped through ``mtlab.servers.stop``, which checks the server's own pid file.
    """
    for row in state.get("services", []):
        pid = row.get("pid")
        if pid and alive(pid) and f"-m {row.get('module')}" in _cmdline(pid):
            _terminate_pid(pid, float(row.get("shutdown_grace", 10.0)) + 5.0)
            say(f"  {row['name']:<9} stopped (pid {pid})")
    for row in state.get("servers", []):
        if row.get("started_by_supervisor") and row.get("pid"):
            info = ServerInfo(kind=row["name"], dsn=row["dsn"], managed=True, source=row.get("source", ""),
                              data_dir=data_dir, pid=row["pid"])
            was_alive = alive(row["pid"])
            try:
                servers.stop(info)
            except servers.ServerError as exc:
                say(f"  {row['name']:<9} could not be stopped: {exc}")
                continue
            if was_alive:
                say(f"  {row['name']:<9} stopped (pid {row['pid']})")
    (data_dir / STATE_FILE).unlink(missing_ok=True)


# --- detached: mtlab up --detach, mtlab down -----------------------------------------------------------------


def _follow(log: Path, offset: int, out: TextIO) -> int:
    """Copy what ``log`` gained since ``offset`` to ``out``; the new offset."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    cut = data.rfind(b"\n") + 1  # whole lines only
    if cut:
        out.write(data[:cut].decode(errors="replace"))
        out.flush()
    return offset + cut


def start_detached(options: UpOptions, up_args: list[str], out: TextIO | None = None) -> int:
    """Start ``mtlab up <up_args>`` in the background and return once it is supervising (0) or has failed (1).

    The background supervisor writes to ``logs/supervisor.log``; this process shows that log as it grows, so a
    detached start prints what a foreground one does.
    """
    out = out or sys.stdout
    data_dir = options.data_dir.absolute()
    (data_dir / LOGS).mkdir(parents=True, exist_ok=True)
    if supervisor_running(data_dir):
        running = read_state(data_dir) or {}
        out.write(f"mtlab up: a supervisor (pid {running.get('pid', '?')}) already runs the stack of {data_dir}.\n"
                  "`mtlab status` shows it, `mtlab down` stops it.\n")
        return 1
    log = data_dir / LOGS / SUPERVISOR_LOG
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as sink:
        child = subprocess.Popen([sys.executable, "-m", "mtlab", "up", *up_args], stdin=subprocess.DEVNULL,
                                 stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=os.environ | {DETACHED_ENV: "1", "PYTHONUNBUFFERED": "1"})
    # Postgres and Redis have their own bounds (60 s and 30 s); each service has the start timeout.
    deadline = time.monotonic() + 100 + options.start_timeout * (len(SERVICES) + 1)
    try:
        while True:
            offset = _follow(log, offset, out)
            state = read_state(data_dir)
            if state is not None and state.get("pid") == child.pid and state.get("state") == "running":
                _follow(log, offset, out)
                out.write(f"\nthe supervisor runs in the background (pid {child.pid}); its log: {log}\n")
                out.flush()
                # It outlives this process (init adopts it); mark it so Popen does not warn that nobody waited for it.
                child.returncode = 0
                return 0
            if child.poll() is not None:
                _follow(log, offset, out)
                out.write(f"mtlab up --detach: the supervisor exited ({_signal_name(child.returncode)}); see {log}\n")
                return 1
            if time.monotonic() > deadline:
                out.write(f"mtlab up --detach: not ready in time; stopping the supervisor (pid {child.pid}). "
                          f"See {log}\n")
                break
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C while it starts: the user does not want the stack after all
        out.write(f"\nmtlab up --detach: interrupted; stopping the supervisor (pid {child.pid})\n")
    child.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=120)
    _follow(log, offset, out)
    return 1


def down(data_dir: Path, out: TextIO | None = None) -> int:
    """Stop the stack of ``data_dir``, detached or in another terminal; say so when nothing runs."""
    out = out or sys.stdout
    data_dir = data_dir.absolute()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    state = read_state(data_dir)
    if not supervisor_running(data_dir):
        if state is None:
            say(f"mtlab is not running (no supervisor for {data_dir}); nothing to stop")
            return 0
        say(f"the supervisor (pid {state.get('pid')}) is gone without stopping; stopping what it left running")
        stop_leftovers(data_dir, state, say)
        say("stopped")
        return 0
    if state is None:  # a supervisor that has only just taken the lock: give it a moment to write its state
        deadline = time.monotonic() + 5
        while state is None and time.monotonic() < deadline:
            time.sleep(0.1)
            state = read_state(data_dir)
        if state is None:
            say(f"a supervisor holds {data_dir / LOCK_FILE} but wrote no state; is it starting? Try again.")
            return 1
    pid = int(state["pid"])
    say(f"mtlab down: stopping the stack of {data_dir} (supervisor pid {pid})")
    log = data_dir / LOGS / SUPERVISOR_LOG
    offset = log.stat().st_size if log.exists() else 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + float(state.get("stop_within", 60.0))
    while supervisor_running(data_dir) and time.monotonic() < deadline:
        if state.get("detached"):
            offset = _follow(log, offset, out)
        time.sleep(0.1)
    if state.get("detached"):
        _follow(log, offset, out)
    if supervisor_running(data_dir):
        say(f"the supervisor (pid {pid}) did not stop in time; killing it and what it started")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while supervisor_running(data_dir) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        stop_leftovers(data_dir, read_state(data_dir) or state, say)
    while alive(pid) and time.monotonic() < deadline + 5:  # the lock goes a moment before the process
        time.sleep(0.02)
    say("mtlab down: stopped")
    return 0


# --- status ----------------------------------------------------------------------------------------------------


async def _postgres_answers(dsn: str) -> None:
    import asyncpg

    con = await asyncpg.connect(dsn, timeout=3)
    try:
        await con.fetchval("SELECT 1")
    finally:
        await con.close()


def _probe_server(row: dict[str, Any]) -> tuple[bool, str]:
    """Ask a Postgres or Redis for real (a query, a PING), or just its port when its password was redacted."""
    dsn = row["dsn"]
    configured = os.environ.get(servers.POSTGRES_ENV if row["name"] == "postgres" else servers.REDIS_ENV, "")
    if "***" in dsn:
        if configured and redact(configured) == dsn:
            dsn = configured
        else:
            host, _, port = row["address"].rpartition(":")
            return (True, "port open") if tcp_open(host, int(port)) else (False, "port closed")
    try:
        if row["name"] == "postgres":
            asyncio.run(asyncio.wait_for(_postgres_answers(dsn), 5))
            return True, "SELECT 1"
        import redis

        client = redis.Redis.from_url(dsn, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return True, "PING"
    except Exception as exc:  # any failure to answer is what status reports
        return False, f"{type(exc).__name__}: {exc}"


def collect_status(data_dir: Path) -> dict[str, Any]:
    """Every endpoint of the stack of ``data_dir``, asked live: what `mtlab status` prints."""
    data_dir = data_dir.absolute()
    state = read_state(data_dir)
    running = supervisor_running(data_dir)
    report: dict[str, Any] = {
        "data_dir": str(data_dir), "logs": str(data_dir / LOGS), "running": running and state is not None,
        "supervisor": None, "endpoints": [], "healthy": False,
    }
    if state is None:
        return report
    report["supervisor"] = {"pid": state.get("pid"), "alive": running, "state": state.get("state"),
                            "detached": state.get("detached"), "started_at": state.get("started_at")}
    endpoints: list[dict[str, Any]] = []
    for row in state.get("services", []):
        pid = row.get("pid")
        up = alive(pid)
        ok, why = probe_http(row["health_url"]) if up else (False, "no process")
        for listener in row.get("addresses") or [{"address": row["address"], "protocol": row["protocol"]}]:
            host, _, port = listener["address"].rpartition(":")
            if ok and not tcp_open(host, int(port)):
                ok, why = False, f"{listener['protocol']} port {port} closed"
        status = "healthy" if ok else row.get("status") if row.get("status") in ("starting", "backoff", "failed") \
            else "down" if not up else "unhealthy"
        endpoints.append(row | {"alive": up, "healthy": ok, "status": status,
                                "detail": row.get("detail") or ("" if ok else why)})
    for row in state.get("servers", []):
        ok, why = _probe_server(row)
        up = alive(row.get("pid")) if row.get("managed") else ok
        endpoints.append(row | {"alive": up, "healthy": ok, "status": "healthy" if ok else "down",
                                "detail": why if not ok else ("" if row.get("managed") else "configured")})
    report["endpoints"] = endpoints
    report["healthy"] = report["running"] and bool(endpoints) and all(e["healthy"] for e in endpoints)
    return report


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """The endpoint table of `mtlab up` and `mtlab status`."""
    header = ("service", "address", "metrics (and /healthz)", "pid", "status")
    lines = [header]
    for row in rows:
        if row["kind"] == "service":
            address, url = f"{row['address']} ({row['protocol']})", row["metrics_url"]
        else:
            address, url = row["dsn"], "-"
        status = row["status"]
        extra = []
        if row.get("restarts"):
            extra.append(f"{row['restarts']} restart{'s' if row['restarts'] != 1 else ''}")
        if row.get("detail"):
            extra.append(row["detail"])
        if extra:
            status += f" ({'; '.join(extra)})"
        lines.append((row["name"], address, url, str(row.get("pid") or "-"), status))
        lines += [("", f"{more['address']} ({more['protocol']})", "", "", "") for more in row.get("addresses", [])[1:]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return [("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]).rstrip()
            for line in lines]


def format_status(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    supervisor = report["supervisor"]
    if supervisor is None:
        return [f"mtlab is not running (no supervisor for {report['data_dir']}). Start it: mtlab up"]
    if supervisor["alive"]:
        detached = supervisor.get("detached")
        how = "detached, `mtlab down` stops it" if detached else "in a terminal, Ctrl-C there stops it"
        since = _ago(time.time() - float(supervisor.get("started_at") or time.time()))
        lines.append(f"mtlab {supervisor.get('state')}: supervisor pid {supervisor['pid']} ({how}), up {since}")
    else:
        lines.append(f"mtlab is not running: its supervisor (pid {supervisor['pid']}) is gone without stopping; "
                     "`mtlab down` stops what it left")
    lines += format_table(report["endpoints"])
    lines.append(f"data  {report['data_dir']}")
    lines.append(f"logs  {report['logs']}")
    if report["healthy"]:
        lines.append("all healthy")
    elif report["running"]:
        lines.append("NOT all healthy")
    else:
        lines.append("NOT running: nothing supervises these")
    return lines


def options_from(namespace: Any) -> UpOptions:
    """UpOptions from the argparse namespace of `mtlab up` (see ``add_port_options``)."""
    ports = {service.name: {port.knob: getattr(namespace, f"{service.name}_{port.knob}") for port in service.ports}
             for service in SERVICES}
    return UpOptions(data_dir=Path(namespace.data_dir).absolute(), ports=ports,
                     postgres_port=namespace.postgres_port or None, redis_port=namespace.redis_port or None,
                     start_timeout=namespace.start_timeout)


def port_options() -> Iterator[tuple[str, str, str]]:
    """(option, dest, help) for each service port: `--gateway-port`, `--gateway-metrics-port`, ..."""
    for service in SERVICES:
        defaults = {f.name: f.default for f in dataclasses.fields(service.config)}
        for port in service.ports:
            variable = f"MTLAB_{service.prefix}_{port.knob.upper()}"
            yield (f"--{service.name}-{port.knob.replace('_', '-')}", f"{service.name}_{port.knob}",
                   f"{service.name}: {port.serves} (default ${variable}, else {defaults[port.knob]}; 0 picks a free "
                   "port)")
