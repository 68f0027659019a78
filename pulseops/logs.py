"""One log format for every PulseOps process: a line per record, text for people or JSON for log shippers.

Each service writes to its stderr; under `pulseops up` supervisord puts that in the service's own file
(<state_dir>/logs/<service>.log) and the terminal shows only state changes, warnings and errors
(pulseops/runtime.py). `PULSEOPS_LOG__FORMAT=json` turns every Python service's lines into one JSON object
each, so a shipper (Vector, Fluent Bit, Promtail) can read the files without parsing free text.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from pulseops.settings import LogSettings, get_settings

TEXT_FORMAT = "%(asctime)s {service}[%(process)d] %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "service", "logger", "pid", "message"[, "exc"]}` on one line."""

    def __init__(self, service: str = "pulseops") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def dict_config(service: str, settings: LogSettings | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` for `service`; also uvicorn's `--log-config`/`log_config`, so its
    `uvicorn.error` lines come out in the same format."""
    s = settings or get_settings().log
    formatter: dict[str, Any] = (
        {"()": "pulseops.logs.JsonFormatter", "service": service}
        if s.format == "json"
        else {"format": TEXT_FORMAT.format(service=service)}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"level": s.level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers would print a second, differently formatted copy: route them to the root
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # one INFO line per HTTP request the dashboard relays or the evaluator sends: noise in any file
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure(service: str, settings: LogSettings | None = None) -> None:
    """Replace the root handlers with one stderr handler in the configured format."""
    import logging.config

    logging.config.dictConfig(dict_config(service, settings))
    logging.captureWarnings(True)
    if sys.stderr is not None and hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(line_buffering=True)
