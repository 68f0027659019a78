"""Dashboard queries, this tree against an earlier revision in the same run: `python -m benchmarks.ab_queries
--base REV [--rounds 5] [--size small] [--report]`.

Issue 14 (the restructure) asks that `python -m benchmarks.queries --size small` uncached p50 be no worse than
before, in the same run. This checks REV out in a temporary git worktree and runs that command alternately
there and here (base, head, base, head, …), each run on its own scratch database, so that both trees see the
same machine state. Per query it reports the median over rounds of the API's uncached p50 for base and head;
the verdict is on the sum over the queries both trees ask (median of the per-round sums): head <= base x
(1 + TOLERANCE). TOLERANCE states how much run-to-run noise we allow, measured here as the spread of the
base's own rounds and printed beside it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import ROOT, machine_notes
from benchmarks.report import write_report

TOLERANCE = 0.05
ROW = re.compile(r"^\| (?P<query>[^|]+?) \| [\d.]+ / [\d.]+ \| (?P<p50>[\d.]+) / [\d.]+ / [\d.]+ \|")


def uncached_p50(output: str) -> dict[str, float]:
    """query -> API uncached p50 (ms) from `benchmarks.queries`' table."""
    return {m["query"]: float(m["p50"]) for line in output.splitlines() if (m := ROW.match(line))}


def run_once(tree: Path, size: str, raw: list[str], label: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.queries", "--size", size, "--no-report"]
    out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    raw.append(f"$ ({label}: {tree}) {' '.join(cmd[1:])}  -> rc {out.returncode}\n{out.stdout}")
    if out.returncode != 0:
        raise SystemExit(f"{label} run failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return uncached_p50(out.stdout)


def compare(base: str, rounds: int, size: str) -> tuple[str, list[str]]:
    raw: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pulseops-ab-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), base], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            runs = {"base": [], "head": []}
            for _ in range(rounds):
                runs["base"].append(run_once(tree, size, raw, "base"))
                runs["head"].append(run_once(ROOT, size, raw, "head"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    common = sorted(set.intersection(*(set(r) for r in runs["base"] + runs["head"])))
    rev = subprocess.run(
        ["git", "rev-parse", "--short", base], cwd=ROOT, capture_output=True, text=True
    ).stdout
    lines = [
        f"base {rev.strip()} vs head, {rounds} alternating rounds of `python -m benchmarks.queries --size {size}`; "
        "API uncached p50 (ms), median over rounds",
        "",
        "| query | base | head | head / base |",
        "|---|---|---|---|",
    ]
    for q in common:
        b = statistics.median(r[q] for r in runs["base"])
        h = statistics.median(r[q] for r in runs["head"])
        lines.append(f"| {q} | {b:.1f} | {h:.1f} | {h / b:.2f} |")
    sums = {k: [sum(r[q] for q in common) for r in v] for k, v in runs.items()}
    b, h = statistics.median(sums["base"]), statistics.median(sums["head"])
    spread = (max(sums["base"]) - min(sums["base"])) / b
    met = h <= b * (1 + TOLERANCE)
    lines += [
        "",
        f"sum of the {len(common)} queries' uncached p50, median of rounds: base {b:.1f} ms, head {h:.1f} ms = "
        f"{h / b:.2f}x (per round: base {[round(x, 1) for x in sums['base']]}, head "
        f"{[round(x, 1) for x in sums['head']]}); the base's own spread across rounds {100 * spread:.0f} %",
        f"target: head <= base x {1 + TOLERANCE:.2f} (no worse, {100 * TOLERANCE:.0f} % for noise): "
        f"{'met' if met else '**missed**'}",
    ]
    only = sorted(set().union(*runs["head"]) - set(common))
    if only:
        lines.append(f"queries only head asks (not compared): {only}")
    return "\n".join(lines), raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ab_queries", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", default="small")
    parser.add_argument("--report", action="store_true", help="write a dated report under docs/benchmarks/")
    args = parser.parse_args(argv)
    machine = machine_notes()
    text, raw = compare(args.base, args.rounds, args.size)
    print(text, flush=True)
    if args.report:
        cmd = f"python -m benchmarks.ab_queries --base {args.base} --rounds {args.rounds} --size {args.size}"
        path = write_report("queries-ab", args.size, cmd, machine, text, {"runs": "\n".join(raw)})
        print(f"report: {path}")


if __name__ == "__main__":
    main()
