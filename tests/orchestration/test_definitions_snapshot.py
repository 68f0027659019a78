"""The committed Dagster definitions snapshot (`orchestration/definitions.json`) matches what the code loads."""

from __future__ import annotations

import json

from orchestration import snapshot


def test_the_committed_definitions_snapshot_matches_the_code() -> None:
    diff = snapshot.difference(
        snapshot.render(snapshot.current()), snapshot.SNAPSHOT.read_text(encoding="utf-8")
    )
    assert not diff, (
        f"the Dagster definitions changed without their snapshot: review the diff below, then run "
        f"`{snapshot.REGENERATE}` (or `make snapshots`) and commit orchestration/definitions.json\n{diff}"
    )


def test_a_dropped_check_shows_up_as_a_difference() -> None:
    """Guards the guard: one check fewer is a non-empty diff naming it."""
    now = snapshot.current()
    dropped = now["asset_checks"].pop(0)  # the first: no other line changes its trailing comma
    diff = snapshot.difference(snapshot.render(now), snapshot.render(snapshot.current()))
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert len(removed) == 1 and dropped in removed[0], diff
    assert json.loads(snapshot.render(now)) == now  # the rendering round-trips
