"""The suite runner and report writer, with stand-in scenarios (fast): a failing scenario is reported with
its traceback and fails the run without stopping the others; series become PNGs, results JSON."""

from __future__ import annotations

import argparse

import orjson

from benchmarks import suite


def ok_run(size: str) -> dict:
    return {
        "size": size,
        "statuses": {202: 3},
        "series": {"latency p95 (ms):a": [(0.0, 1.0), (1.0, 2.0)], "latency p95 (ms):b": [(0.0, 3.0)],
                   "events/s:a": [(0.0, 10.0), (1.0, 12.0)]},
        "raw": {"samples": "1 2 3"},
        "targets": [{"what": "stand-in p95", "target": "<= 1 ms", "measured": "2 ms", "met": False}],
    }  # fmt: skip


def boom_run(size: str) -> dict:
    raise RuntimeError("scenario exploded on purpose")


def check_run(size: str) -> dict:
    return {
        "targets": [{"what": "counts exact", "target": "0", "measured": "1", "met": False, "kind": "check"}]
    }


def render(result: dict) -> str:
    return f"figures of {result.get('size', '?')}"


def test_failures_are_reported_and_fail_the_run_without_stopping_it(tmp_path, monkeypatch, capsys):
    here = "tests.benchmarks.test_suite"
    scenarios = [
        suite.Scenario("boom", "fails", f"{here}:boom_run:render"),
        suite.Scenario("fine", "works", f"{here}:ok_run:render", sizes=("small", "medium")),
        suite.Scenario("wrong", "a check misses", f"{here}:check_run:render"),
    ]
    monkeypatch.setattr(suite, "BY_NAME", {s.name: s for s in scenarios})
    args = argparse.Namespace(size="large", only=None, out=tmp_path, no_report=False)

    assert suite.run_cli(args, "python -m benchmarks --size large") == 1

    printed = capsys.readouterr().out
    assert "-- boom: FAILED" in printed and "-- fine: ok" in printed and "-- wrong: FAILED" in printed
    [report] = tmp_path.glob("*-suite-large.md")
    text = report.read_text()
    folder = tmp_path / report.stem
    assert "RuntimeError: scenario exploded on purpose" in text
    assert "| fine | stand-in p95 | <= 1 ms | 2 ms | **missed** |" in text
    assert "| wrong | counts exact | 0 | 1 | **FAILED** |" in text
    assert "| [fine](#fine) | medium |" in text  # largest size the scenario defines
    assert "| load average (1/5/15 min) before |" in text and "| git commit |" in text
    assert (folder / "fine.png").read_bytes().startswith(
        b"\x89PNG"
    ) and "](" + folder.name + "/fine.png)" in text
    assert orjson.loads((folder / "fine.json").read_bytes())["statuses"] == {"202": 3}
    assert "1 2 3" in (folder / "fine.txt").read_text()
    assert "scenario exploded" in (folder / "boom.txt").read_text()


def test_unknown_scenario_is_refused(capsys):
    args = argparse.Namespace(size="small", only="ingest,nope", out=None, no_report=True)
    assert suite.run_cli(args, "") == 2
    assert "nope" in capsys.readouterr().err
