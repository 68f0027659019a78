"""Dated Markdown reports under docs/benchmarks/, with machine notes and the raw output.

`write_report` serves the single benchmarks' CLIs (most through `scenario_cli`); `write_suite_report` the suite (`python -m benchmarks`):
a summary of targets, per-scenario figures, raw files, result JSON and PNG plots of the time series.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.harness import ROOT, machine_notes
from benchmarks.verdict import verdict


def write_report(
    name: str, size: str, command: str, machine: dict[str, str], results: str, raw: dict[str, str]
) -> Path:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = ROOT / "docs" / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day}-{name}-{size}.md"
    lines = [
        f"# {name} benchmark ({size}), {machine['date']}",
        "",
        f"Command: `{command}`",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        "",
        "## Results",
        "",
        "```",
        results,
        "```",
    ]
    for title, text in raw.items():
        lines += ["", f"## {title}", "", "```", text.rstrip(), "```"]
    path.write_text("\n".join(lines) + "\n")
    return path


def scenario_cli(
    module: str,
    sizes: Iterable[str],
    run: Callable[[str], Any],
    render: Callable[[Any], str],
    argv: list[str] | None,
    *,
    doc: str | None,
    report: str | None = None,
    raw: Callable[[Any], dict[str, str]] = lambda r: r.get("raw", {}),
    machine: Callable[[Any], dict[str, str]] | None = None,
) -> Any:
    """`python -m benchmarks.<module> [--size S] [--no-report]`: run, print the rendered result and write the
    dated report (named `report`, default `module`); returns the result for a module's own pass/fail check.

    Machine notes are taken before the run unless `machine` picks them from the result (or takes them after),
    so the report's date and commit are those of the run's start, as the single CLIs always recorded them.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{module}", description=(doc or "").split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(sizes), default="small")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    notes = machine_notes() if machine is None else None
    result = run(args.size)
    text = render(result)
    print(text)
    if not args.no_report:
        command = f"python -m benchmarks.{module} --size {args.size}"
        notes = notes if machine is None else machine(result)
        print(f"report: {write_report(report or module, args.size, command, notes, text, raw(result))}")
    return result


@dataclass
class Outcome:
    """One scenario of a suite run: its result dict (the protocol in benchmarks/suite.py) or its traceback."""

    name: str
    title: str
    size: str
    seconds: float
    result: dict | None = None
    text: str = ""
    error: str | None = None
    targets: list[dict] = field(default_factory=list)
    skipped: str | None = None  # an optional scenario whose module is not there (benchmarks/suite.py)

    @property
    def failed(self) -> bool:
        return self.error is not None or any(
            t.get("kind") == "check" and t["met"] is False for t in self.targets
        )


def figures_table(outcomes: list[Outcome], headline: Sequence[tuple[str, str, str, str]] = ()) -> list[str]:
    """The report's one table: the suite's fixed figures first (`headline`: (id, scenario, figure, target);
    one the run did not produce says why), then every other row of every scenario."""
    lines = [
        "| figure | measured | ceiling measured in the same run | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    rows = [(o, t) for o in outcomes for t in o.targets]
    by_id = {t["headline"]: (o, t) for o, t in rows if t.get("headline")}
    ran = {o.name: o for o in outcomes}
    for hid, scenario, figure, target in headline:
        if hid in by_id:
            lines.append(_row(by_id[hid][1]))
            continue
        o = ran.get(scenario)
        why = (
            f"scenario {scenario} not run" if o is None
            else f"scenario {scenario} FAILED" if o.error is not None
            else f"scenario {scenario} reported no such figure"
        )  # fmt: skip
        lines.append(f"| {_cell(figure)} | — | — | — | {_cell(target)} | not measured ({why}) |")
    for o in outcomes:
        if o.error is not None:
            lines.append(f"| {o.name}: scenario | **FAILED** (see below) | — | — | runs | **FAILED** |")
    fixed = {h[0] for h in headline}
    lines += [_row(t) for _, t in rows if t.get("headline") not in fixed]
    return lines


def _row(t: dict) -> str:
    ratio = t.get("ratio")
    v = verdict(t)
    shown = f"**{v}**" if v in ("missed", "FAILED") else v
    return (
        f"| {_cell(t['what'])} | {_cell(t['measured'])} | {_cell(t.get('ceiling', '—'))} | "
        f"{'—' if ratio is None else f'{ratio:.2f}x'} | {_cell(t['target'])} | {_cell(shown)} |"
    )


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_suite_report(
    out_dir: Path,
    size: str,
    command: str,
    machine: dict[str, str],
    outcomes: list[Outcome],
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
    wall_s: float,
    headline: Sequence[tuple[str, str, str, str]] = (),
) -> Path:
    """`<out>/<date>-suite-<size>.md` plus `<out>/<date>-suite-<size>/`: per scenario the raw text, the
    result as JSON and a PNG of its time series, so every figure in the Markdown can be traced to raw output."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    stem = f"{day}-suite-{size}"
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / stem
    folder.mkdir(exist_ok=True)
    load = lambda x: "/".join(f"{v:.2f}" for v in x)  # noqa: E731
    lines = [
        f"# Benchmark suite ({size}), {machine['date']}",
        "",
        f"Command: `{command}` — wall time {wall_s:.0f} s. Raw output, result JSON and plots: [{stem}/]({stem}/).",
        "",
        "## Targets",
        "",
        *figures_table(outcomes, headline),
        "",
        "Judged only with the load there: a target whose offered load (or the generator's own ceiling against "
        "`/healthz` in the same run) fell short of what it needs says *not measured*, a check with nothing to "
        "check says *not exercised*. `check` rows are correctness (a failure fails the run). The ceiling column "
        "is what the same client and API processes did on `/healthz`, or PostgreSQL's binary COPY for landing, "
        "measured in this run.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        f"| load average (1/5/15 min) before | {load(load_before)} |",
        f"| load average (1/5/15 min) after | {load(load_after)} |",
        "",
        "Two cores, shared with PostgreSQL, Redis, the broker, the load generators and other users of the "
        "machine: a load average above 2 means the figures are pessimistic.",
        "",
        "## Scenarios",
        "",
        "| scenario | size run | wall time | status |",
        "|---|---|---|---|",
        *(
            f"| [{o.name}](#{o.name}) | {o.size} | {o.seconds:.1f} s | {'FAILED' if o.failed else 'ok'} |"
            for o in outcomes
        ),
    ]
    for o in outcomes:
        lines += ["", f"### {o.name}", "", f"{o.title}. Size `{o.size}`, {o.seconds:.1f} s wall.", ""]
        raw_path = folder / f"{o.name}.txt"
        raw_path.write_text(_raw_text(o))
        links = [f"[raw output]({stem}/{raw_path.name})"]
        if o.result is not None:
            json_path = folder / f"{o.name}.json"
            json_path.write_bytes(
                orjson.dumps(
                    o.result,
                    default=str,
                    option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
                )
            )
            links.append(f"[result JSON]({stem}/{json_path.name})")
        if o.error is not None:
            lines += ["**FAILED**", "", "```", o.error.rstrip(), "```"]
        else:
            lines += ["```", o.text.rstrip(), "```"]
        plot = plot_series((o.result or {}).get("series") or {}, folder / f"{o.name}.png", o.name)
        if plot is not None:
            lines += ["", f"![{o.name} over time]({stem}/{plot.name})"]
        lines += ["", " · ".join(links)]
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _raw_text(o: Outcome) -> str:
    parts = [f"# {o.name} ({o.size}), {o.seconds:.1f} s", "", o.text.rstrip()]
    if o.error is not None:
        parts += ["", "FAILED", o.error]
    raw = (o.result or {}).get("raw") or {}
    if isinstance(raw, str):
        raw = {"raw": raw}
    for title, text in raw.items():
        parts += ["", f"## {title}", "", str(text).rstrip()]
    return "\n".join(parts) + "\n"


def _metric(name: str) -> tuple[str, str]:
    """'latency p95 (ms):quiet' -> ('latency p95 (ms)', 'quiet'); without ':' the text after the last ', '
    is the line's label ('landed rows, 2 workers'); else the series is a plot of its own."""
    if ":" in name:
        metric, label = name.rsplit(":", 1)
        return metric, label
    if ", " in name:
        metric, label = name.rsplit(", ", 1)
        return metric, label
    return name, name


def plot_series(series: dict[str, list], path: Path, title: str) -> Path | None:
    """One PNG, one panel per metric (lines sharing a metric share a panel), x = seconds since start."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    try:
        import matplotlib
    except ImportError:  # matplotlib is a dev extra: a report without plots is still a report
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[tuple[str, list]]] = {}
    for name, points in series.items():
        metric, label = _metric(name)
        panels.setdefault(metric, []).append((label, points))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (metric, lines) in zip(axes[:, 0], panels.items(), strict=True):
        for label, points in lines:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("seconds since the scenario's start")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
