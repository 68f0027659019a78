"""The suite runner and report writer, with stand-in scenarios (fast): a failing scenario is reported with
its traceback and fails the run without stopping the others; series become PNGs, results JSON; a target whose
offered load fell short is "not measured", a check with nothing to check "not exercised", and the one table
lists the suite's fixed figures, with why for those a run did not produce."""

from __future__ import annotations

import argparse

import orjson

from benchmarks import suite, verdict


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


def short_run(size: str) -> dict:
    """A generator that offered 2,000 events/s for a target needing 20,000, and a check with nothing in it."""
    offered, required = 2_000.0, 20_000.0
    return {
        "targets": [
            verdict.target("stand-in p95 at load", "<= 1 s", "0.2 s", True,
                           unjudged=verdict.shortfall(required, offered, ceiling=50_000.0), headline="h.fast"),
            verdict.target("stand-in single vs healthz", ">= 0.5x /healthz", "1,000 req/s", False,
                           ceiling="5,000 req/s", ratio_value=0.2, headline="h.ratio"),
            verdict.check("stand-in: every 429 has Retry-After", "0 missing", "0 missing of 0", True, exercised=0),
            verdict.landed_check("stand-in: every acknowledged event landed",
                                 {"acknowledged": 0, "landed": 0, "missing": 0, "duplicated": 0}),
        ]
    }  # fmt: skip


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
    assert "| stand-in p95 | 2 ms | — | — | <= 1 ms | **missed** |" in text
    assert "| counts exact | 1 | — | — | 0 | **FAILED** |" in text
    assert "| boom: scenario | **FAILED** (see below) | — | — | runs | **FAILED** |" in text
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


def test_shortfall_names_the_generator_or_the_offered_load():
    assert verdict.shortfall(20_000, 25_000, ceiling=30_000) is None
    assert verdict.shortfall(20_000, 2_000) == "not measured: offered 2,000 < required 20,000 events/s"
    assert verdict.shortfall(20_000, 25_000, ceiling=9_000) == (
        "not measured: generator ceiling 9,000 < required 20,000 events/s"
    )
    assert verdict.shortfall(20_000, float("nan")).startswith("not measured")
    assert verdict.fmt(None) == verdict.fmt(float("nan")) == "not measured"


def test_unjudged_rows_are_neither_met_nor_ok_and_the_table_lists_every_headline(
    tmp_path, monkeypatch, capsys
):
    here = "tests.benchmarks.test_suite"
    scenarios = [
        suite.Scenario("short", "offers too little", f"{here}:short_run:render"),
        suite.Scenario("later", "not written yet", "benchmarks.no_such_module:run:render", optional=True),
    ]
    headline = [
        ("h.fast", "short", "fast at load", "<= 1 s"),
        ("h.ratio", "short", "ratio", ">= 0.5x"),
        ("h.gone", "gone", "a scenario not run", "<= 1 s"),
        ("h.later", "later", "being written", "-"),
    ]
    monkeypatch.setattr(suite, "BY_NAME", {s.name: s for s in scenarios})
    monkeypatch.setattr(suite, "HEADLINE", headline)
    args = argparse.Namespace(size="small", only=None, out=tmp_path, no_report=False)

    assert suite.run_cli(args, "python -m benchmarks") == 0  # nothing judged failed, nothing judged ok either

    printed = capsys.readouterr().out
    assert "[not measured: offered 2,000 < required 20,000 events/s] stand-in p95 at load" in printed
    assert "[not exercised (nothing to check)] stand-in: every 429 has Retry-After" in printed
    assert "-- later: not run (module not written yet)" in printed
    [report] = tmp_path.glob("*-suite-small.md")
    text = report.read_text()
    assert "| figure | measured | ceiling measured in the same run | ratio | target | met |" in text
    table = text[text.index("| figure |") : text.index("Judged only")].strip().splitlines()
    assert table[2] == (
        "| stand-in p95 at load | 0.2 s | — | — | <= 1 s | "
        "not measured: offered 2,000 < required 20,000 events/s |"
    )
    assert (
        table[3]
        == "| stand-in single vs healthz | 1,000 req/s | 5,000 req/s | 0.20x | >= 0.5x /healthz | **missed** |"
    )
    assert table[4] == "| a scenario not run | — | — | — | <= 1 s | not measured (scenario gone not run) |"
    assert table[5] == "| being written | — | — | — | - | not measured (scenario later not run) |"
    assert (
        "| stand-in: every 429 has Retry-After | 0 missing of 0 | — | — | 0 missing | not exercised (nothing to check) |"
        in table
    )
    assert "stand-in: every acknowledged event landed" in text and not any(
        line.endswith(("| ok |", "| met |")) for line in table[2:]
    )
    assert "### later" not in text
