"""orchestration/run_workers.py: a code server starts each run as a fork of a template process that has Dagster
and the code location imported (orchestration/run_template.py), not as a fresh interpreter that imports them
first (seconds per late-data run under ingest load); and it fails loudly if a Dagster upgrade moves what it
relies on."""

from __future__ import annotations

import contextlib
import inspect
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster._grpc.server import DagsterApiServer

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from tests.fixtures.dagster import Dagster
from tests.fixtures.system import ROOT, wait_until
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import _LOCK_CLASS, days_to_build

TODAY = datetime.now(UTC).date()


def test_dagster_still_starts_runs_through_the_servers_context() -> None:
    assert 'self._mp_ctx = multiprocessing.get_context("spawn")' in inspect.getsource(
        DagsterApiServer.__init__
    )
    assert "self._mp_ctx.Process(" in inspect.getsource(DagsterApiServer.StartRun)


def test_install_gives_every_code_server_the_forkserver_context() -> None:
    """In a process of its own: install() patches DagsterApiServer and starts a template process."""
    code = (
        "import multiprocessing, sys\n"
        "from dagster._grpc.server import DagsterApiServer\n"
        "from orchestration import run_workers\n"
        "assert not run_workers.install()  # not a code server: nothing changes\n"
        "server = DagsterApiServer.__new__(DagsterApiServer)\n"
        "server._mp_ctx = multiprocessing.get_context('spawn')  # what its __init__ does\n"
        "assert run_workers.install(force=True)\n"
        "assert server._mp_ctx.get_start_method() == 'forkserver'\n"
        "later = DagsterApiServer.__new__(DagsterApiServer)\n"
        "later._mp_ctx = multiprocessing.get_context('spawn')\n"
        "assert later._mp_ctx.get_start_method() == 'forkserver'\n"
        "from multiprocessing import forkserver\n"
        "print(forkserver._forkserver._forkserver_pid)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 0


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _run_worker(home: Path) -> int | None:
    """pid of this deployment's run worker: the process whose parent is the template (forkserver) or which
    Dagster's spawn started (spawn_main)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            pid = int(entry.name)
            if f"DAGSTER_HOME={home}".encode() not in (entry / "environ").read_bytes():
                continue
            cmd = _cmdline(pid)
            if "spawn_main" in cmd or "multiprocessing.forkserver" in _cmdline(_ppid(pid)):
                return pid
    return None


@pytest.mark.slow
def test_a_run_worker_is_a_fork_of_the_preloaded_template(
    db: psycopg.Connection, database_url: str, dagster_deployment: Dagster
) -> None:
    tenant = make_tenant(db)
    end = datetime.combine(TODAY - timedelta(days=3), datetime.min.time(), UTC)
    config = GeneratorConfig(
        seed=43, end=end, days=2, total_events=400, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 20)],
    )  # fmt: skip
    rows = landing_rows(generate(config), {"t": (tenant["org_id"], tenant["project_id"])}, received_at=end)
    land_rows(db, rows)
    days: list[date] = sorted({r[1].date() for r in rows})
    with psycopg.connect(database_url, autocommit=True) as blocker:
        # the run waits on the first day's lock: its worker is alive while we look at it
        blocker.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, days[0].toordinal()))
        dagster_deployment.start_daemon()
        worker = wait_until(lambda: _run_worker(dagster_deployment.home), 120, "the run worker", 0.5)
        template = _ppid(worker)
        assert "multiprocessing.forkserver" in _cmdline(template), _cmdline(template)
        assert "orchestration.run_template" in _cmdline(template)
        assert "api grpc" in _cmdline(_ppid(template))  # the code server started the template
    wait_until(lambda: not days_to_build(db, days[0], TODAY), 120, "the run finished the days", 0.5)
