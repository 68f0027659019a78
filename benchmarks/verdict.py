"""How a benchmark figure is judged, so that no report can flatter (issue "Hot path at the machine's limit").

A row of a scenario's `targets` (protocol in benchmarks/suite.py) is judged only when what it needs was there:

- a performance target only when the offered load reached what the target requires, and the load generator's
  own ceiling (the same client against `/healthz` in the same run) allowed it; else "not measured: …";
- a correctness check only when there was something to check ("0 of 0" is "not exercised", never "ok");
- a figure that was not measured is reported as such, never as a default value (`measured_or`).

Rows carry, besides `what`, `target`, `measured`, `met` and `kind`: `ceiling` (what the same machinery did on a
trivial endpoint, or PostgreSQL's COPY for landing), `ratio` (figure / ceiling) and `unjudged` (why it is
neither met nor missed). `headline` names the row in the suite's fixed list of figures (benchmarks/suite.py).
"""

from __future__ import annotations

import math
from typing import Any


def fmt(value: float | None, unit: str = "") -> str:
    """'12,345 events/s'; None or NaN -> 'not measured'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def ratio(figure: float | None, ceiling: float | None) -> float | None:
    if figure is None or not ceiling or math.isnan(figure) or math.isnan(ceiling):
        return None
    return figure / ceiling


def shortfall(
    required: float, offered: float | None, ceiling: float | None = None, unit: str = "events/s"
) -> str | None:
    """Why a target needing `required` cannot be judged, or None when the load was there.

    `ceiling`: what the generator reached against `/healthz` in the same run, in the same unit."""
    if ceiling is not None and ceiling < required:
        return f"not measured: generator ceiling {fmt(ceiling)} < required {fmt(required, unit)}"
    if offered is None or (isinstance(offered, float) and math.isnan(offered)):
        return "not measured: offered load not recorded"
    if offered < required:
        return f"not measured: offered {fmt(offered)} < required {fmt(required, unit)}"
    return None


def target(
    what: str,
    target_text: str,
    measured: str,
    met: bool | None,
    *,
    unjudged: str | None = None,
    ceiling: str | None = None,
    ratio_value: float | None = None,
    headline: str | None = None,
) -> dict[str, Any]:
    """A performance row; `unjudged` (e.g. from `shortfall`) overrides `met`."""
    row: dict[str, Any] = {"what": what, "target": target_text, "measured": measured, "kind": "target"}
    row["met"] = None if unjudged else met
    if unjudged:
        row["unjudged"] = unjudged
    if ceiling is not None:
        row["ceiling"] = ceiling
    if ratio_value is not None:
        row["ratio"] = ratio_value
    if headline is not None:
        row["headline"] = headline
    return row


def check(
    what: str, target_text: str, measured: str, met: bool, *, exercised: int, headline: str | None = None
) -> dict[str, Any]:
    """A correctness row; with nothing to check (`exercised` == 0) it is "not exercised", not "ok"."""
    row: dict[str, Any] = {
        "what": what,
        "target": target_text,
        "measured": measured,
        "kind": "check",
        "met": met if exercised else None,
    }
    if not exercised:
        row["unjudged"] = "not exercised (nothing to check)"
    if headline is not None:
        row["headline"] = headline
    return row


def landed_check(what: str, ledger: dict[str, int], headline: str | None = None) -> dict[str, Any]:
    """Check row for a `benchmarks.load.ledger_check` result: every acknowledged event landed, once."""
    ok = ledger["missing"] == 0 and ledger["duplicated"] == 0
    return check(
        what,
        "landed == acknowledged, 0 missing, 0 duplicated (every id)",
        f"acknowledged {ledger['acknowledged']:,}, landed {ledger['landed']:,}, missing {ledger['missing']:,}, "
        f"duplicated {ledger['duplicated']:,}"
        + (
            f"; dead letters {ledger['dead_letter_messages']:,} ({ledger['dead_letter_reasons']})"
            if ledger.get("dead_letter_messages")
            else ""
        ),
        ok,
        exercised=ledger["acknowledged"],
        headline=headline,
    )


def verdict(row: dict[str, Any]) -> str:
    """met / missed / ok / FAILED / recorded, or the row's reason for not judging."""
    if row.get("unjudged"):
        return row["unjudged"]
    if row["met"] is None:
        return "recorded"
    if row.get("kind") == "check":
        return "ok" if row["met"] else "FAILED"
    return "met" if row["met"] else "missed"
