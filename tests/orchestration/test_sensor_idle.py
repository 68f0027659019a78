"""late_data_sensor on an idle warehouse (nothing due, empty retry ledger) answers from the warehouse alone:
no Dagster run query per tick (issue 16: an idle code server's CPU went mostly to those), and its cursor
stays, so a later tick with work still settles the runs that finished meanwhile."""

from __future__ import annotations

import dagster as dg
import pytest

from tests.orchestration.test_sensors import tick


def test_idle_tick_needs_no_dagster_run_queries(db, database_url, monkeypatch: pytest.MonkeyPatch) -> None:
    with dg.instance_for_test() as instance:
        asked: list[str] = []
        for name in ("get_run_records", "get_runs", "all_logs"):
            real = getattr(instance, name)
            monkeypatch.setattr(
                instance, name, lambda *a, _n=name, _r=real, **kw: asked.append(_n) or _r(*a, **kw)
            )
        result, cursor = tick(database_url, instance, cursor="2026-01-01T00:00:00+00:00")
        assert isinstance(result, dg.SkipReason) and result.skip_message == "nothing to rebuild"
        assert asked == []
        assert cursor == "2026-01-01T00:00:00+00:00"


def _daemon_tick(instance: dg.DagsterInstance, sensor: str):
    """A tick as the code server evaluates it for the daemon (dagster/_grpc/impl.py), with an instance ref."""
    from dagster._grpc.impl import get_external_sensor_execution

    from orchestration.definitions import defs

    repo = defs.get_repository_def()
    return get_external_sensor_execution(repo, None, instance.get_ref(), sensor, None, None, None, None, None)


def test_idle_daemon_tick_builds_no_instance_and_keeps_its_connection(
    db, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the idle tick of the code server built a DagsterInstance from dagster.yaml and the resources,
    and opened a warehouse connection, every 5 s. Now: neither, and one connection kept between ticks, replaced
    when PostgreSQL dropped it."""
    from orchestration import sensors

    monkeypatch.setenv("PULSEOPS_DB__URL", database_url)
    monkeypatch.setattr(sensors, "_TICK_CONNECTIONS", sensors.TickConnections())
    with dg.instance_for_test(temp_dir=None) as instance:
        built: list[object] = []
        real = dg.DagsterInstance.from_ref
        monkeypatch.setattr(
            dg.DagsterInstance, "from_ref", staticmethod(lambda ref: built.append(ref) or real(ref))
        )
        first = _daemon_tick(instance, "late_data_sensor")
        assert first.skip_message == "nothing to rebuild", first
        assert built == []
        kept = sensors._TICK_CONNECTIONS._idle
        assert len(kept) == 1
        backend = kept[0].info.backend_pid
        assert _daemon_tick(instance, "late_data_sensor").skip_message == "nothing to rebuild"
        assert [c.info.backend_pid for c in kept] == [backend]  # the same PostgreSQL backend
        db.execute("SELECT pg_terminate_backend(%s)", (backend,))
        assert _daemon_tick(instance, "late_data_sensor").skip_message == "nothing to rebuild"
        assert len(kept) == 1 and kept[0].info.backend_pid != backend
