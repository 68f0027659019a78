"""SQL is built only from constant text; values travel as bound parameters (issue 8).

`sqlscan` reads the AST of every project package and reports each driver call (`execute`, `executemany`,
`copy`, `sql.SQL`, `text`, DuckDB `sql`/`query`, ...) whose SQL text is not constant. The few that compose
text on purpose are listed below with the reason they are safe; an entry that no longer matches anything
fails too, so the list stays the reviewed truth.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.sqlscan import Finding, scan_source, scan_tree

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "pulseops",
    "warehouse",
    "streams",
    "api",
    "orchestration",
    "alerting",
    "dashboards",
    "benchmarks",
)

# (path, function) -> why the composed text cannot carry input
REVIEWED: dict[tuple[str, str], str] = {
    ("pulseops/cli.py", "sql_command"): (
        "`pulseops sql` runs the analyst's own query, by design, in a DuckDB connection sealed to one "
        "project's verified cold files (warehouse.cold.open_cold(lock=True))"
    ),
    (
        "warehouse/cold/export.py",
        "export_day",
    ): "spec.version: a fixed SQL expression of warehouse.cold.datasets.SPECS",
    (
        "warehouse/cold/export.py",
        "_select_sql",
    ): "spec.select: a fixed SELECT of warehouse.cold.datasets.SPECS",
    (
        "warehouse/cold/export.py",
        "_write_parquet",
    ): "query comes from _select_sql (fixed text, project id bound)",
    (
        "warehouse/cold/parity.py",
        "postgres_checksum",
    ): "spec.select / spec.pg_line: fixed text of warehouse.cold.datasets.SPECS",
    (
        "warehouse/cold/parity.py",
        "parquet_checksum",
    ): "spec.duck_line: a fixed expression of warehouse.cold.datasets.SPECS",
    (
        "warehouse/cold/parity.py",
        "verify_day",
    ): "spec.version: a fixed SQL expression of warehouse.cold.datasets.SPECS",
    ("warehouse/cold/reads.py", "cold_days"): "spec.version with fixed column names substituted",
    (
        "warehouse/cold/reads.py",
        "open_cold",
    ): "view names are the dataset names (warehouse.cold.datasets.DATASETS)",
    (
        "warehouse/cold/duck.py",
        "register_files",
    ): "view name and _EMPTY[dataset]: module constants, callers pass fixed names",
    ("warehouse/cold_rebuild.py", "rebuild_day_from_cold"): (
        "DAY_SLOTS: a module constant of warehouse.aggregates (fixed text; the day's bounds are bound)"
    ),
    ("warehouse/cold_rebuild.py", "_custom_metric"): (
        "fixed fragments chosen by value type (_filter_sql) and aggregation; keys and values are bound (?)"
    ),
    (
        "warehouse/reads/exact.py",
        "raw_events_sql",
    ): "`columns` is a fixed column list passed by each caller in warehouse/",
    ("warehouse/reads/exact.py", "days_without_raw"): "ATTACHED: warehouse.partitions' one is-attached test",
    ("warehouse/reads/exact.py", "data_version"): "ATTACHED: warehouse.partitions' one is-attached test",
    ("warehouse/reads/plan.py", "plan_reads"): "ATTACHED: warehouse.partitions' one is-attached test",
    ("warehouse/reads/metrics.py", "metric_series"): (
        "_merged_query composes the module constant _BUCKETED and fixed fragments with psycopg.sql"
    ),
    ("warehouse/reads/cold.py", "rollups"): (
        "_floor/_us build arithmetic from a fixed column name and an int bucket width; `condition` comes "
        "from compile_filters (fixed fragments, values bound as ?)"
    ),
    ("warehouse/reads/cold.py", "activity"): "DAY_US/SLOT_US int constants and `condition` from where()",
    ("warehouse/reads/cold.py", "daily_users"): "DAY_US int constant and `condition` from where()",
    ("warehouse/reads/cold.py", "breakdown_pairs"): "`condition` from where(): fixed fragments, values bound",
    ("warehouse/reads/cold.py", "recent"): "`condition` from where(): fixed fragments, values bound",
    ("warehouse/reads/cold.py", "metric_partials"): (
        "`columns` from metric_columns: fixed fragments per dimension, keys and pointers bound as ?"
    ),
}


def test_no_sql_is_built_from_non_constant_text() -> None:
    findings = list(scan_tree(ROOT, PACKAGES))
    unreviewed = [f for f in findings if (f.path, f.function) not in REVIEWED]
    assert not unreviewed, "SQL built from non-constant text (bind values as parameters, or compose "
    "identifiers with psycopg.sql.Identifier; else review and list it in REVIEWED):\n" + "\n".join(
        map(str, unreviewed)
    )
    stale = set(REVIEWED) - {(f.path, f.function) for f in findings}
    assert not stale, f"REVIEWED entries that match nothing any more (remove them): {sorted(stale)}"


BAD = {
    "f-string value": "def f(conn, user):\n    conn.execute(f\"SELECT * FROM t WHERE name = '{user}'\")\n",
    "percent format": 'def f(cur, user):\n    cur.execute("SELECT * FROM t WHERE id = %s" % user)\n',
    "format call": 'def f(conn, user):\n    conn.execute("SELECT * FROM t WHERE id = {}".format(user))\n',
    "concatenation": 'def f(conn, user):\n    conn.execute("SELECT * FROM t WHERE id = " + user)\n',
    "via a local": 'def f(conn, user):\n    q = "SELECT " + user\n    conn.execute(q)\n',
    "grown list": (
        "def f(conn, user):\n    parts = ['SELECT 1']\n    parts.append(user)\n"
        "    conn.execute(' '.join(parts))\n"
    ),
    "cursor chain": 'def f(conn, t):\n    conn.cursor().execute(f"SELECT * FROM {t}")\n',
    "executemany": 'def f(cur, t, rows):\n    cur.executemany(f"INSERT INTO {t} VALUES (%s)", rows)\n',
    "copy": 'def f(cur, t):\n    with cur.copy(f"COPY {t} FROM STDIN"):\n        pass\n',
    "sql.SQL text": 'from psycopg import sql\ndef f(conn, t):\n    conn.execute(sql.SQL(f"SELECT {t}"))\n',
    "sqlalchemy text": 'from sqlalchemy import text\ndef f(s, t):\n    s.execute(text("SELECT " + t))\n',
    "parameter as sql": "def f(conn, query):\n    conn.execute(query)\n",
    "keyword argument": 'def f(cur, t):\n    cur.execute(query=f"SELECT {t}")\n',
    "reassigned constant": 'Q = "SELECT 1"\nQ = input()\ndef f(conn):\n    conn.execute(Q)\n',
}

GOOD = {
    "bound parameters": 'def f(conn, user):\n    conn.execute("SELECT * FROM t WHERE id = %s", (user,))\n',
    "module constant": 'COLS = "a, b"\ndef f(conn, x):\n    conn.execute(f"SELECT {COLS} FROM t WHERE a = %s", (x,))\n',
    "constant table": (
        'OPS = {"gt": ">", "lt": "<"}\nfrom psycopg import sql\ndef f(op):\n    return sql.SQL(OPS[op])\n'
    ),
    "identifier": (
        "from psycopg import sql\ndef f(conn, name):\n"
        '    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))\n'
    ),
    "loop over constants": (
        'STMTS = ("DELETE FROM a", "DELETE FROM b")\ndef f(conn):\n    for s in STMTS:\n        conn.execute(s)\n'
    ),
}


@pytest.mark.parametrize("snippet", BAD.values(), ids=BAD.keys())
def test_the_scanner_flags_sql_built_from_input(snippet: str) -> None:
    """Guards the guard: each way of splicing input into SQL is caught."""
    findings = scan_source(snippet)
    assert findings, f"not flagged:\n{snippet}"
    assert all(isinstance(f, Finding) and f.why for f in findings)


@pytest.mark.parametrize("snippet", GOOD.values(), ids=GOOD.keys())
def test_the_scanner_accepts_parameters_and_constants(snippet: str) -> None:
    assert scan_source(snippet) == []
