"""Find SQL built from non-constant text: the AST of every call that hands SQL to a driver.

A query string is *constant* when it is made only of literals, module-level string constants (names bound
once to a literal at module level), and f-string / `+` / `%` / `.format` / `" ".join` compositions of those.
Anything else — a parameter, a local computed at run time, a call result — makes the query *dynamic*, and a
dynamic query must be reviewed (allowlist in `test_sql_parameters.py`), because values must travel as
bound parameters, never as text.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Methods whose first argument is SQL text: DB-API/psycopg (`execute`, `executemany`, `copy`), psycopg's
# composable (`sql.SQL`), SQLAlchemy (`text`, `exec_driver_sql`), DuckDB (`sql`, `query`), Alembic (`op.execute`).
SQL_METHODS = frozenset(
    {"execute", "executemany", "executescript", "copy", "exec_driver_sql", "sql", "query"}
)
SQL_FUNCTIONS = frozenset({"SQL", "text"})


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the scanned root, posix
    function: str  # qualified name of the enclosing function ("<module>" at top level)
    line: int
    call: str  # e.g. "execute", "sql.SQL"
    why: str  # which part is not constant

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.function}: {self.call}() with {self.why}"


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Attribute):
        if f.attr in SQL_METHODS:
            return f.attr
        if f.attr in SQL_FUNCTIONS:
            base = f.value.id if isinstance(f.value, ast.Name) else "?"
            return f"{base}.{f.attr}"
    if isinstance(f, ast.Name) and f.id in SQL_FUNCTIONS:
        return f.id
    return None


def _sql_argument(node: ast.Call) -> ast.expr | None:
    if node.args and not isinstance(node.args[0], ast.Starred):
        return node.args[0]
    for kw in node.keywords:
        if kw.arg in ("query", "sql", "statement", "text"):
            return kw.value
    return None


def _module_constants(tree: ast.Module) -> set[str]:
    """Names assigned exactly once at module level, to a value that is itself constant."""
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    for stmt in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        for t in targets:
            if isinstance(t, ast.Name):
                counts[t.id] = counts.get(t.id, 0) + 1
                values[t.id] = value  # type: ignore[assignment]
    known: set[str] = set()
    changed = True
    while changed:  # constants built from other constants
        changed = False
        for name, value in values.items():
            if name not in known and counts[name] == 1 and _dynamic_part(value, known, {}) is None:
                known.add(name)
                changed = True
    return known


_COMPOSABLES = frozenset({"SQL", "Identifier", "Literal", "Placeholder", "Composed"})


def _is_composable(node: ast.expr) -> bool:
    """psycopg's `sql` objects and their `.format()`/`.join()`: identifiers and literals are quoted by the
    driver, and the text of every `sql.SQL(...)` is checked on its own (it is a sink too)."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name in _COMPOSABLES:
        return True
    return name in ("format", "join") and isinstance(f, ast.Attribute) and _is_composable(f.value)


def _dynamic_part(node: ast.expr, constants: set[str], local: dict[str, list[ast.expr]]) -> str | None:
    """None when `node` is constant text, else a short description of the first non-constant part."""
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, ast.Name):
        if node.id in constants:
            return None
        if node.id in local:  # a local SQL variable: every value bound to it must be constant
            for value in local[node.id]:
                why = _dynamic_part(value, constants, {k: v for k, v in local.items() if k != node.id})
                if why is not None:
                    return why
            return None
        return f"name {node.id!r}"
    if isinstance(node, ast.JoinedStr):
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                why = _dynamic_part(v.value, constants, local)
                if why is not None:
                    return f"f-string {{{ast.unparse(v.value)}}}"
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        for side in (node.left, node.right):
            why = _dynamic_part(side, constants, local)
            if why is not None:
                op = "+" if isinstance(node.op, ast.Add) else "%"
                return f"'{op}' with {why}"
        return None
    if isinstance(node, ast.Dict):  # a lookup table of SQL fragments
        return _dynamic_part(ast.Tuple(elts=list(node.values)), constants, local)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name | ast.Dict | ast.Tuple):
        return _dynamic_part(node.value, constants, local)  # any entry of a constant table
    if isinstance(node, ast.Starred):
        return _dynamic_part(node.value, constants, local)
    if isinstance(node, ast.Tuple | ast.List):
        for elt in node.elts:
            why = _dynamic_part(elt, constants, local)
            if why is not None:
                return why
        return None
    if isinstance(node, ast.IfExp):
        for side in (node.body, node.orelse):  # the test may vary; both texts must be constant
            why = _dynamic_part(side, constants, local)
            if why is not None:
                return why
        return None
    if _is_composable(node):
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("format", "join"):
            for part in [node.func.value, *node.args, *(k.value for k in node.keywords)]:
                why = _dynamic_part(part, constants, local)
                if why is not None:
                    return f".{node.func.attr}() with {why}"
            return None
        if node.func.attr in ("strip", "lstrip", "rstrip", "upper", "lower", "split", "replace"):
            for part in [node.func.value, *node.args]:
                why = _dynamic_part(part, constants, local)
                if why is not None:
                    return why
            return None
    return f"{type(node).__name__.lower()} {ast.unparse(node)[:60]!r}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, constants: set[str]) -> None:
        self.path = path
        self.constants = constants
        self.scope: list[str] = []
        self.locals: list[dict[str, list[ast.expr]]] = [{}]
        self.findings: list[Finding] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        assigned: dict[str, list[ast.expr]] = {}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Assign):
                for t in sub.targets:
                    if isinstance(t, ast.Name):
                        assigned.setdefault(t.id, []).append(sub.value)
            elif isinstance(sub, ast.AnnAssign | ast.AugAssign) and isinstance(sub.target, ast.Name):
                if sub.value is not None:
                    assigned.setdefault(sub.target.id, []).append(sub.value)
            elif isinstance(sub, ast.For | ast.comprehension) and isinstance(sub.target, ast.Name):
                # `for statement in STATEMENTS`: the loop variable is any element of the iterable
                assigned.setdefault(sub.target.id, []).append(sub.iter)
            elif (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in ("append", "extend", "insert")
                and isinstance(sub.func.value, ast.Name)
                and sub.args
            ):  # a list of fragments grown in place: each element counts like an assignment
                assigned.setdefault(sub.func.value.id, []).append(sub.args[-1])
        self.scope.append(node.name)
        self.locals.append({**self.locals[-1], **assigned})
        self.generic_visit(node)
        self.locals.pop()
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        arg = _sql_argument(node) if name else None
        if name and arg is not None:
            why = _dynamic_part(arg, self.constants, self.locals[-1])
            if why is not None:
                function = ".".join(self.scope) or "<module>"
                self.findings.append(Finding(self.path, function, node.lineno, name, why))
        self.generic_visit(node)


def scan_source(source: str, path: str = "<string>") -> list[Finding]:
    tree = ast.parse(source, path)
    scanner = _Scanner(path, _module_constants(tree))
    scanner.visit(tree)
    return scanner.findings


def scan_tree(root: Path, packages: tuple[str, ...]) -> Iterator[Finding]:
    for package in packages:
        for file in sorted((root / package).rglob("*.py")):
            if any(part in (".venv", "node_modules") for part in file.parts):
                continue
            yield from scan_source(file.read_text(), file.relative_to(root).as_posix())
