"""The files of the project: `git ls-files`, or a walk of the tree when this is not a git checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "node_modules", "test-output", "__pycache__", ".pytest_cache", ".ruff_cache"}


def project_files(suffix: str = "") -> list[Path]:
    """Tracked files (relative to ROOT) ending in `suffix`; untracked scratch never counts."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        out = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [Path(n) for n in out.decode().split("\0") if n]
    else:
        names = [
            p.relative_to(ROOT)
            for p in ROOT.rglob("*")
            if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
        ]
    return [n for n in names if n.name.endswith(suffix) and (ROOT / n).is_file()]
