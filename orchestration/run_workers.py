"""Run workers forked from a preloaded template process, instead of a fresh interpreter per run.

Dagster's code server starts each run in a new process (dagster/_grpc/server.py StartRun) from a `spawn`
multiprocessing context: a new interpreter that imports Dagster, this code location, SQLAlchemy and
dagster-postgres before the run's first step, ~1.5 CPU-seconds on an idle machine and 3-8 s of wall time
while ingest keeps both cores busy (late-data benchmark, created -> RUN_START per run in Dagster's event
log: the largest part of a late event's correction time, paid by every late-data run).

In a code server (`dagster api grpc`, as `pulseops up` and workspace.yaml start it) this module gives
StartRun a `forkserver` context instead whose server process imports orchestration/run_template.py once: each
run is then a fork of a process with all of that loaded, started in milliseconds. Still one process per run
(a crash or kill of one run touches no other, Dagster terminates and watches it as before); the template
holds no connections, threads or run state (it only imported modules), and the code it runs is the code this
code server loaded (`dagster api grpc` never reloads in place). The template is started when the code
location loads, so the first run does not pay for it either.

Dagster keeps the context in the server's `_mp_ctx` attribute, set in its __init__ before the code location
is imported; a data descriptor on the class takes precedence over that instance attribute.
tests/orchestration/test_run_workers.py fails if a Dagster upgrade stops starting runs through it.
PULSEOPS_RUN_WORKERS=spawn in the code server's environment keeps Dagster's own way (not a setting of
pulseops/settings.py: it is read here, before anything else, by the code server only).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Any

TEMPLATE = "orchestration.run_template"
_installed: list[Any] = []


class _RunContext:
    """Class-level stand-in for DagsterApiServer._mp_ctx: always the preloaded forkserver context."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        return self.ctx if obj is not None else self

    def __set__(self, obj: object, value: Any) -> None:
        """Dagster's own `spawn` context, assigned in DagsterApiServer.__init__, is not used."""


def in_code_server() -> bool:
    """This process is a Dagster code server (`dagster api grpc ...`), where runs are started."""
    return "dagster._grpc.server" in sys.modules and sys.argv[1:3] == ["api", "grpc"]


def wanted() -> bool:
    return os.environ.get("PULSEOPS_RUN_WORKERS", "fork") != "spawn"


def install(force: bool = False) -> bool:
    """In a code server (or with `force`, for tests): start runs from the preloaded template, and start the
    template now. Idempotent; a no-op in every other process that imports the code location."""
    if _installed or not (force or (in_code_server() and wanted())):
        return bool(_installed)
    from dagster._grpc.server import DagsterApiServer

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([TEMPLATE])
    DagsterApiServer._mp_ctx = _RunContext(ctx)  # type: ignore[assignment]
    from multiprocessing import forkserver

    forkserver.ensure_running()  # forks and execs it; the preload runs there, not here
    _installed.append(ctx)
    return True
