"""Ruff's security rules (flake8-bandit, `S`) stay clean and their exceptions stay reviewed (issue 8).

The test selects `S` itself, so editing the global `select` cannot switch the rules off; the only global
exception is S101 (asserts are invariants, never access checks), the per-file exceptions in pyproject.toml
must equal the reviewed list below, and every `# noqa: S…` must say why.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path
from token import COMMENT

from tests.security.tracked import ROOT, project_files

RUFF = Path(sys.executable).with_name("ruff")

GLOBAL_IGNORE = ["S101"]
REVIEWED_PER_FILE = {
    "tests/**": {"S105", "S106", "S108", "S603", "S608"},
    "benchmarks/**": {"S108", "S311", "S603", "S607"},
    "pulseops/cli.py": {"S603"},
}
_NOQA = re.compile(r"#\s*noqa(?P<codes>:\s*[A-Z]+\d+(?:\s*,\s*[A-Z]+\d+)*)?(?P<rest>.*)$")


def ruff_security(*args: str, stdin: str | None = None) -> list[dict]:
    """`ruff check --select S` with the project's configuration; findings as JSON."""
    proc = subprocess.run(
        [str(RUFF), "check", "--select", "S", "--ignore", ",".join(GLOBAL_IGNORE), "--output-format", "json",
         "--no-cache", "--exit-zero", *args],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_security_rules_find_nothing() -> None:
    findings = ruff_security(".")
    assert not findings, "\n".join(
        f"{f['filename']}:{f['location']['row']} {f['code']} {f['message']}" for f in findings
    )


def test_security_rules_fire_on_application_code() -> None:
    """The same command on a bad snippet placed (virtually) in api/: proves the check can fail."""
    bad = (
        "import subprocess\nimport pickle\n\n\n"
        "def run(cmd: str, blob: bytes) -> object:\n"
        "    subprocess.call(cmd, shell=True)\n"
        "    password = 'hunter2'\n"  # pragma: allowlist secret
        "    return pickle.loads(blob), eval(cmd), password\n"
    )
    codes = {f["code"] for f in ruff_security("--stdin-filename", "api/_probe.py", "-", stdin=bad)}
    assert {"S602", "S301", "S307", "S105"} <= codes, codes


def test_per_file_exceptions_are_the_reviewed_ones() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert not [c for c in lint.get("ignore", []) if c.startswith("S") and c not in GLOBAL_IGNORE]
    per_file = {
        pattern: {c for c in codes if c.startswith("S")}
        for pattern, codes in lint.get("per-file-ignores", {}).items()
        if any(c.startswith("S") for c in codes)
    }
    assert per_file == REVIEWED_PER_FILE


def test_every_security_noqa_gives_a_reason() -> None:
    bare, unexplained = [], []
    for name in project_files(".py"):
        with (ROOT / name).open() as f:
            comments = [
                (t.start[0], t.string) for t in tokenize.generate_tokens(f.readline) if t.type == COMMENT
            ]
        for n, comment in comments:
            m = _NOQA.search(comment)
            if m is None:
                continue
            if not m["codes"]:
                bare.append(f"{name}:{n}")  # a blanket noqa would silence the S rules too
            elif re.search(r"\bS\d+", m["codes"]) and len(m["rest"].strip(" -:")) < 5:
                unexplained.append(f"{name}:{n}")
    assert not bare, f"blanket `# noqa` (name the codes): {bare}"
    assert not unexplained, f"`# noqa: S…` without a reason: {unexplained}"
