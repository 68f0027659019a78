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
