"""benchmarks/sustained_profile.py: each py-spy sample counts once, for the innermost frame of the request path
that it names (a spool write inside the ingest service is the spool's, not the service's)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.sustained_profile import summarize


def test_samples_count_for_their_innermost_known_frame(tmp_path: Path) -> None:
    stacks = tmp_path / "after-1.txt"
    stacks.write_text(
        "Runner.run (asyncio/runners.py:118);accept_event (api/ingest/service.py:194);"
        "append_record (api/ingest/spool.py:136) 3\n"
        "Runner.run (asyncio/runners.py:118);accept_event (api/ingest/service.py:197) 1\n"
        "Runner.run (asyncio/runners.py:118) 4\n"
        "_bootstrap (threading.py:1002);select (selectors.py:1) 2\n"
        "\n"
    )
    shares = dict(summarize([stacks]))
    assert shares == {
        "spool: journal writes and markers": 0.3,
        "ingest service, other": 0.1,
        "event loop itself (C: epoll, socket I/O)": 0.4,
        "other": 0.2,
    }
    assert summarize([]) == []
