"""Dated Markdown reports under docs/benchmarks/, with machine notes and the raw output."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import ROOT


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
