"""The committed schema snapshot, `api/graphql/schema.graphql`: the API's contract as SDL, reviewed in diffs.

`python -m api.graphql.snapshot` rewrites it from the code (also `make schema`); `--check` exits 1 when it is
out of date. tests/api/test_graphql_schema.py fails until a schema change comes with its snapshot, so a
changed field or type is a visible line in review, not a surprise for the dashboard or a client.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from strawberry.printer import print_schema

from api.graphql.schema import build_schema
from pulseops.settings import QuerySettings

SNAPSHOT = Path(__file__).with_name("schema.graphql")
REGENERATE = "python -m api.graphql.snapshot"


def current_sdl() -> str:
    """The schema as built for serving (the limits and introspection switch do not change the SDL)."""
    return print_schema(build_schema(QuerySettings())) + "\n"


def difference(current: str, committed: str) -> str:
    """A unified diff from the committed snapshot to `current`; empty when they agree."""
    return "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            current.splitlines(keepends=True),
            fromfile=f"{SNAPSHOT.name} (committed)",
            tofile=f"{SNAPSHOT.name} (from the code)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args(argv)
    current = current_sdl()
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if args.check:
        diff = difference(current, committed)
        sys.stdout.write(diff or f"{SNAPSHOT} is up to date\n")
        return 1 if diff else 0
    if current != committed:
        SNAPSHOT.write_text(current, encoding="utf-8")
        print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
