"""Structured logs (services/common/logs.py) as real processes write them: JSON lines under a supervisor, text on a
terminal, tracebacks and ``extra=`` fields kept, and `mtlab up` showing a failed service's JSON log readably."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mtlab.supervisor import _tail
from tests.helpers.auth import start_auth

REPO = Path(__file__).resolve().parents[3]

#: A process that sets up logging as a service does, then logs an INFO line with an extra field, an ERROR
#: with a traceback, and a DEBUG line (which only MTLAB_LOG_LEVEL=DEBUG lets through).
SCRIPT = """
import logging
from services.common import logs
logs.setup("toy")
log = logging.getLogger("mtlab.toy")
log.info("call %s answered in %.1f ms", "help.getConfig", 1.25, extra={"trace_id": "5eed", "service": "not me"})
try:
    {}[ "missing" ]
except KeyError:
    log.exception("handler failed")
log.debug("every call")
"""

ISO_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def run_toy(stderr: Any = subprocess.PIPE, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MTLAB_LOG_")} | env
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=full, stderr=stderr,
                          stdout=subprocess.PIPE, text=True, timeout=30, check=False)


def test_json_lines_by_default_when_stderr_is_not_a_terminal() -> None:
    done = run_toy()
    assert done.returncode == 0, done.stderr
    info, error = [json.loads(line) for line in done.stderr.splitlines()]  # the DEBUG line is below INFO
    assert ISO_UTC_MS.match(info["ts"]), info["ts"]
    # the extra trace_id is there; the extra "service" did not overwrite the process's own
    assert info == {"ts": info["ts"], "level": "INFO", "service": "toy", "logger": "mtlab.toy",
                    "msg": "call help.getConfig answered in 1.2 ms", "trace_id": "5eed"}
    assert error["level"] == "ERROR" and error["msg"] == "handler failed"
    assert error["exc"].startswith("Traceback (most recent call last):")
    assert error["exc"].rstrip().endswith("KeyError: 'missing'")


def test_text_when_asked_and_the_level_from_the_environment() -> None:
    done = run_toy(MTLAB_LOG_FORMAT="text", MTLAB_LOG_LEVEL="debug")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mtlab\.toy: call help\.getConfig answered in 1\.2 ms$",
                    lines[0]), lines[0]
    assert lines[1].endswith("ERROR mtlab.toy: handler failed") and lines[2] == "Traceback (most recent call last):"
    assert "KeyError: 'missing'" in lines and lines[-1].endswith("DEBUG mtlab.toy: every call")


def test_text_by_default_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    try:
        done = run_toy(stderr=follower)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0
    text = out.decode()
    assert "INFO mtlab.toy: call help.getConfig answered in 1.2 ms" in text and '"level"' not in text


def test_a_bad_knob_stops_the_process_naming_it() -> None:
    done = run_toy(MTLAB_LOG_FORMAT="xml")
    assert done.returncode == 1 and "mtlab toy: MTLAB_LOG_FORMAT='xml' is not json or text" in done.stderr
    done = run_toy(MTLAB_LOG_LEVEL="chatty")
    assert done.returncode == 1 and "MTLAB_LOG_LEVEL='chatty'" in done.stderr


def test_the_auth_service_logs_json_lines(tmp_path: Path, databases: Any, redis_databases: Any) -> None:
    # Its output goes to a file, as under `mtlab up`: JSON, with no MTLAB_LOG_FORMAT set (empty means "choose")
    auth = start_auth(tmp_path, databases.create(), redis_databases.create(), MTLAB_LOG_FORMAT="",
                      MTLAB_LOG_LEVEL="INFO")
    assert auth.stop() == 0  # SIGTERM: it logs that it is shutting down
    records = [json.loads(line) for line in auth.log.read_text().splitlines() if line.startswith("{")]
    assert records and all(set(r) >= {"ts", "level", "service", "logger", "msg"} for r in records)
    assert all(r["service"] == "auth" and ISO_UTC_MS.match(r["ts"]) for r in records)
    by_msg = {r["msg"]: r for r in records}
    assert any(m.startswith("migrations: ") for m in by_msg), by_msg
    assert by_msg["SIGTERM: shutting down"]["logger"] == "mtlab.auth"
    assert by_msg["SIGTERM: shutting down"]["level"] == "INFO"


def test_mtlab_up_shows_a_json_log_as_text(tmp_path: Path) -> None:
    log = tmp_path / "toy.log"
    with log.open("w") as out:
        assert run_toy(stderr=out).returncode == 0
    with log.open("a") as out:
        out.write("a line that is not JSON\n")
    shown = _tail(log).splitlines()
    assert re.match(r"^  \| \d\d:\d\d:\d\d\.\d{3} INFO mtlab\.toy: call help\.getConfig answered in 1\.2 ms$",
                    shown[0]), shown
    assert shown[1].endswith(" ERROR mtlab.toy: handler failed")
    assert shown[2] == "  | Traceback (most recent call last):"
    assert "  | KeyError: 'missing'" in shown and shown[-1] == "  | a line that is not JSON"
