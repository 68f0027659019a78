"""benchmarks/steady_single.py: a missing acknowledged id is looked up in the ingest spool (real Spool files)."""

from __future__ import annotations

import uuid
from pathlib import Path

from api.ingest.spool import Spool
from benchmarks.steady_single import spool_trace


def test_spool_trace_names_the_segments_that_hold_an_id(tmp_path: Path) -> None:
    kept, stuck, pruned = (str(uuid.uuid4()) for _ in range(3))
    spool = Spool(tmp_path / "spool" / "events-raw", fsync=False)
    entry = spool.write([(b"k", b'[{"event_id":"%s"}]' % kept.encode())])
    spool.acknowledge(entry, "topic-a", {3: 41})
    spool.close()
    first = next((tmp_path / "spool" / "events-raw").glob("*.seg"))
    (first.parent / "stuck" / "0-x.seg").write_bytes(b'{"event_id":"%s"}' % stuck.encode())
    out = spool_trace(tmp_path / "spool", [kept, stuck, pruned])
    assert out[kept] == f"events-raw/{first.name}", out
    assert out[stuck] == "events-raw/stuck/0-x.seg", out
    assert out[pruned].startswith("in no segment"), out
