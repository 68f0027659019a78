"""The codebase's shape, checked on every run: SQL text lives only in `warehouse/` (issue 14).

The scan reads the AST of every tracked `.py` file outside the excluded folders and flags each string
constant (f-string parts included; docstrings excluded, they never reach a driver) that looks like a SQL
statement. It is a guard against drift, not a parser: the patterns are the statement shapes this codebase
writes, and the planted samples below prove each one is caught while prose is not.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.tracked import ROOT, project_files

# Folders whose SQL is theirs by design.
EXCLUDED = {
    "warehouse": "the store: every statement of the product lives here (migrations included)",
    "tests": "tests seed, inspect and break the database directly to check the product from outside",
    "benchmarks": (
        "measuring instruments: COPY baselines, EXPLAIN plans, table sizes and the acknowledged-vs-landed "
        "ledger check read the database directly, so a defect in the product's own queries cannot hide "
        "itself from the measurement"
    ),
}

# Files that may still hold SQL while another change owns them, each naming the step that removes it; an
# entry whose file no longer holds SQL fails the test, so the list only ever shrinks. Empty since issue 15
# moved the SQL of pulseops/cli.py into warehouse/ (orchestration/ holds none).
ALLOWED: dict[str, str] = {}

# SQL-looking text that no code runs, by file and opening words.
EXAMPLES = {
    ("pulseops/cli.py", 'e.g. "SELECT event_name'): (
        "the `pulseops sql` help shows the analyst an example query; the command runs the analyst's own SQL "
        "in a DuckDB connection sealed to one project's cold files"
    ),
}

_SQL = re.compile(
    r"""
    \bSELECT\b[\s\S]*?\bFROM\b                                    # SELECT ... FROM
    | ^\s*SELECT\s                                                # SELECT 1, SELECT set_config(...)
    | \bINSERT\s+INTO\b | \bDELETE\s+FROM\b | \bUPDATE\s+\w+\s+SET\b
    | \bMERGE\s+INTO\b | ^\s*TRUNCATE\b
    | \b(?:CREATE|ALTER|DROP)\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+|UNIQUE\s+|UNLOGGED\s+)?
      (?:TABLE|INDEX|VIEW|SCHEMA|DATABASE|FUNCTION|MATERIALIZED|ROLE|EXTENSION|TRIGGER|SEQUENCE)\b
    | \bCOPY\b[\s\S]*?\b(?:STDIN|STDOUT)\b
    | ^\s*(?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|VACUUM|ANALYZE|EXPLAIN)\b
    | ^\s*SET\s+(?:LOCAL\s+|SESSION\s+)?\w+\s*(?:=|TO\b)
    """,
    re.VERBOSE | re.MULTILINE,
)
# Lower-case SQL is rarer; it counts only with a clause no English sentence has, or with catalog names.
_SQL_ANY_CASE = re.compile(
    r"""
    \bselect\b[^"']*?\bfrom\b\s+\w+[\s\S]*?\b(?:where|group\s+by|order\s+by|join|limit)\b
    | ^\s*select\s+(?:\d|\*|count\s*\(|set_config)
    | \binsert\s+into\s+\w+\s*[(\s]\s*(?:values|select|\w+\s*,)
    | \bdelete\s+from\s+\w+\s+where\b
    | \bupdate\s+\w+\s+set\s+\w+\s*=
    | \bset_config\s*\( | \bpg_(?:inherits|class|catalog|stat_activity|settings)\b | ::regclass\b
    """,
    re.VERBOSE | re.MULTILINE | re.IGNORECASE,
)


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every non-docstring string constant in `source` that looks like SQL."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    strings = (
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    )
    return sorted(
        (n.lineno, n.value) for n in strings if _SQL.search(n.value) or _SQL_ANY_CASE.search(n.value)
    )


def sql_outside_warehouse(root: Path, files: list[Path]) -> dict[str, list[tuple[int, str]]]:
    """Per file (posix path relative to `root`) outside EXCLUDED: its SQL-looking strings."""
    out = {}
    for rel in files:
        if rel.suffix != ".py" or rel.parts[0] in EXCLUDED:
            continue
        found = sql_strings((root / rel).read_text(encoding="utf-8"))
        if found:
            out[rel.as_posix()] = found
    return out


def _example(path: str, text: str) -> tuple[str, str] | None:
    return next((e for e in EXAMPLES if e[0] == path and text.startswith(e[1])), None)


def test_no_sql_outside_warehouse() -> None:
    found = sql_outside_warehouse(ROOT, project_files(".py"))
    unexpected = {
        path: [(line, text) for line, text in hits if not _example(path, text)]
        for path, hits in found.items()
        if path not in ALLOWED
    }
    unexpected = {path: hits for path, hits in unexpected.items() if hits}
    assert not unexpected, (
        "SQL outside warehouse/: move each statement into a warehouse function and call it:\n"
        + "\n".join(
            f"{p}:{line}: {text.strip()[:100]!r}" for p, hits in unexpected.items() for line, text in hits
        )
    )
    used = {_example(path, text) for path, hits in found.items() for _, text in hits}
    stale = sorted(set(ALLOWED) - set(found)) + sorted(set(EXAMPLES) - used)
    assert not stale, (
        f"ALLOWED/EXAMPLES entries that match nothing (remove them from tests/test_structure.py): {stale}"
    )


PLANTED = {
    "the issue's sample": 'Q = "SELECT x FROM y WHERE"\n',
    "select one": 'def ready(conn):\n    conn.execute("SELECT 1")\n',
    "set_config": "conn.execute(\"SELECT set_config('statement_timeout', %s, true)\", (ms,))\n",
    "insert": 'conn.execute("INSERT INTO t (a) VALUES (%s)", (a,))\n',
    "update": 'conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (k,))\n',
    "delete": 'conn.execute("DELETE FROM event_ids WHERE event_time < %s", (t,))\n',
    "ddl": 'conn.execute("ALTER TABLE events DETACH PARTITION events_p20260101")\n',
    "create temp": 'conn.execute("CREATE TEMP TABLE acked (event_id uuid)")\n',
    "copy": 'with cur.copy("COPY events (a, b) FROM STDIN (FORMAT BINARY)"):\n    pass\n',
    "transaction": 'conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")\n',
    "set local": "conn.execute(\"SET LOCAL work_mem = '64MB'\")\n",
    "multi-line": 'Q = """\n    SELECT count(*)\n    FROM events\n    WHERE project_id = %s\n"""\n',
    "inside an f-string": 'def f(t):\n    return f"SELECT a FROM {t} WHERE b = %s"\n',
    "lower case": 'conn.execute("select a from t where b = %s", (b,))\n',
    "lower-case catalog": "conn.execute(\"select 1 from pg_inherits where inhparent = 'events'::regclass\")\n",
    "in a method body": 'class A:\n    """Doc."""\n    def f(self):\n        return "DELETE FROM t"\n',
}

PROSE = {
    "docstring": '"""Lands with INSERT ... SELECT and reads with SELECT ... FROM events."""\n',
    "function docstring": 'def f():\n    """DELETE FROM the day, then INSERT INTO it again (one transaction)."""\n',
    "english select": 'HELP = "Select a project from the list, then pick the days to show."\n',
    "english update": 'MSG = "update the snapshot from the schema with make schema"\n',
    "english from": 'MSG = "Settings come from the environment; select one from the menu"\n',
    "begin inside prose": 'MSG = "the day begins at midnight UTC"\n',
}


@pytest.mark.parametrize("source", PLANTED.values(), ids=PLANTED.keys())
def test_the_scan_finds_planted_sql(source: str) -> None:
    """Guards the guard: each statement shape is caught."""
    assert sql_strings(source), f"not flagged:\n{source}"


@pytest.mark.parametrize("source", PROSE.values(), ids=PROSE.keys())
def test_the_scan_leaves_prose_and_docstrings_alone(source: str) -> None:
    assert sql_strings(source) == []


def test_a_planted_statement_in_a_package_fails_the_tree_scan(tmp_path: Path) -> None:
    """The tree scan reaches service packages and skips only the excluded folders."""
    for rel, text in {
        "api/routes/planted.py": 'Q = "SELECT x FROM y WHERE"\n',
        "warehouse/fine.py": 'Q = "SELECT x FROM y WHERE"\n',
        "api/clean.py": 'MSG = "nothing to see"\n',
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    files = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.py")]
    assert sql_outside_warehouse(tmp_path, files) == {"api/routes/planted.py": [(1, "SELECT x FROM y WHERE")]}


# --- import contracts ---------------------------------------------------------------------------------------

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

# module to plant -> (the import it makes, the contract it must break)
BACKWARDS = {
    "warehouse/planted_up.py": ("import api.main", "layers import only downwards"),
    "pulseops/settings.py": ("import warehouse.db", "layers import only downwards"),  # appended to the copy
    "api/planted_sibling.py": ("import streams.app", "layers import only downwards"),
    "alerting/planted_cli.py": ("from pulseops import cli", "layers import only downwards"),
    "streams/planted_bench.py": ("import benchmarks.harness", "layers import only downwards"),
    "dashboards/planted_data.py": ("import warehouse.db", "dashboards reach data over HTTP only"),
    "benchmarks/planted_code.py": ("import api.main", "benchmarks start the services as processes"),
}


def _lint_copy(tmp_path: Path, planted: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over a copy of the packages and pyproject.toml, with `planted` files added."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "node_modules", "static", "*.json", "*.js", "*.css"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, text in planted.items():
        with (tmp_path / rel).open("a", encoding="utf-8") as f:  # a new module, or appended to a copied one
            f.write(f"\n{text}\n")
    # lint-imports puts its working directory first on sys.path, so the copies shadow the editable install.
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold_on_the_tree(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_backwards_import_breaks_its_contract(tmp_path: Path) -> None:
    """Guards the guard: each planted import fails `lint-imports`, named under the contract it breaks."""
    result = _lint_copy(tmp_path, {rel: text for rel, (text, _) in BACKWARDS.items()})
    assert result.returncode != 0, result.stdout
    report = " ".join(result.stdout.split())  # lint-imports wraps long lines
    for rel, (_, contract) in BACKWARDS.items():
        module = rel.removesuffix(".py").replace("/", ".")
        assert module in report, f"{module} not reported:\n{result.stdout}"
        assert f"{contract}" in report and "BROKEN" in report, result.stdout


# --- Sizes (issue 14): no module over 500 lines, no function over 80, outside tests and migrations ---------

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80  # from the first decorator to the last line, nested functions included

# Larger on purpose or not split yet: "path" for a module, "path::Qual.name" for a function, each with why.
# An entry that fits the limits fails the test, so the list only ever shrinks. "issue 14: split pending"
# marks files another change owned while issue 14 split api/ and warehouse/; the lead finishes them.
TOO_LARGE: dict[str, str] = {}


def oversized(rel: str, source: str) -> list[tuple[str, int]]:
    """(entry, lines) of the module and each function of `source` over the limits; entries as in TOO_LARGE."""
    tree = ast.parse(source)
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append((rel, lines))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    span = (child.end_lineno or child.lineno) - start + 1
                    if span > MAX_FUNCTION_LINES:
                        found.append((f"{rel}::{name}", span))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _sized_files() -> list[Path]:
    return [
        p
        for p in project_files(".py")
        if p.parts[0] != "tests" and "migrations" not in p.parts and not p.name.endswith("_pb2.py")
    ]


def test_no_module_or_function_is_too_large() -> None:
    found = [
        hit for rel in _sized_files() for hit in oversized(rel.as_posix(), (ROOT / rel).read_text("utf-8"))
    ]
    unexpected = [f"{entry}: {n} lines" for entry, n in found if entry not in TOO_LARGE]
    assert not unexpected, (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function: split it, or list it "
        "in TOO_LARGE (tests/test_structure.py) saying why it must be larger:\n" + "\n".join(unexpected)
    )
    stale = sorted(set(TOO_LARGE) - {entry for entry, _ in found})
    assert not stale, f"TOO_LARGE entries that fit the limits now (remove them): {stale}"


def test_the_size_check_counts_modules_and_function_spans() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 2))
    fits = f"@decorator\ndef f():\n{body}\n"  # decorator + def + body = the limit exactly
    assert oversized("m.py", fits) == []
    long = f"class C:\n    @decorator\n    def g(self):\n    {body}\n        y = 1\n".replace(
        "\n    x", "\n        x"
    )
    assert oversized("m.py", long) == [("m.py::C.g", MAX_FUNCTION_LINES + 1)]
    nested = f"def outer():\n    def inner():\n    {body}\n        y = 1\n".replace("\n    x", "\n        x")
    assert oversized("m.py", nested) == [("m.py::outer", MAX_FUNCTION_LINES + 1)]  # inner: 80, fits
    assert oversized("m.py", "x = 1\n" * MAX_MODULE_LINES) == []
    assert oversized("m.py", "x = 1\n" * (MAX_MODULE_LINES + 1)) == [("m.py", MAX_MODULE_LINES + 1)]
