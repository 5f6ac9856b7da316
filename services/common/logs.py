"""How every service process logs: one call, ``setup(service)``, first thing in its ``run()``.

Two formats, chosen by ``MTLAB_LOG_FORMAT`` (``services/common/config.py``, ``LogConfig``):

- ``json``: one JSON object a line, for machines (a log shipper, ``jq``, a test). The default when stderr is not
  a terminal, which is how ``mtlab up`` runs services (their output goes to ``.mtlab/logs/<service>.log``)::

      {"ts": "2025-01-31T13:04:36.512Z", "level": "INFO", "service": "auth", "logger": "mtlab.auth",
       "msg": "migrations: up to date"}

  Keys: ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``service``, ``logger``, ``msg`` (the message with its
  arguments filled in), ``exc`` (the traceback, when the record carries one), and every ``extra=`` field the
  caller passed (``log.info("...", extra={"trace_id": f"{trace:x}"})``). A value JSON cannot hold is written
  as its ``str()``.
- ``text``: ``<time> <LEVEL> <logger>: <message>``, for a person at a terminal (the default there).

``MTLAB_LOG_LEVEL`` (default INFO) sets the root logger's level. The formatter is a few lines of standard
``logging``, on purpose: no dependency, and a student can read all of it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from services.common.config import ConfigError, log_config

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (see the module docstring for its keys)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line: dict[str, Any] = {"ts": ts, "level": record.levelname, "service": self.service,
                                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line.setdefault(key, value)  # an extra named like a key above does not overwrite it
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(service: str, *, stream: TextIO | None = None) -> None:
    """Send every record of this process to ``stream`` (stderr) in the configured format, at the configured level.

    An invalid ``MTLAB_LOG_*`` value stops the process with a message naming the variable, as every knob does.
    """
    try:
        config = log_config()
    except ConfigError as exc:
        sys.exit(f"mtlab {service}: {exc}")
    stream = sys.stderr if stream is None else stream
    format_ = config.format or ("text" if stream.isatty() else "json")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service) if format_ == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=config.level, handlers=[handler], force=True)
