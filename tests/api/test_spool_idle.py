"""An idle spool reconcile pass (api/ingest/reconcile.py) asks the broker nothing: with no sealed segment to
settle, the committed offsets are not read (issue 16: three admin requests per API process every second)."""

from __future__ import annotations

import asyncio

from api.ingest.spool import ACK, DATA, Ack, Data, frame
from tests.api.test_spool import _message, _segment, reconciler_for  # noqa: F401 - the fixture
from tests.utils.tenants import make_tenant


def test_an_idle_pass_asks_the_broker_nothing(db, reconciler_for, monkeypatch) -> None:  # noqa: F811
    rec = reconciler_for()
    asked: list[str] = []
    real = rec.publisher.committed_view
    monkeypatch.setattr(
        rec.publisher, "committed_view", lambda group, *a, **kw: asked.append(group) or real(group, *a, **kw)
    )
    for _ in range(3):
        asyncio.run(rec.run_once())
    assert asked == []
    # a segment to settle: the broker is asked, and the segment is settled as before
    msg = _message(make_tenant(db))
    _segment(
        rec.spool.directory, frame(DATA, Data(1, [msg])), frame(ACK, Ack(1, "an-old-incarnation", {0: 0}))
    )
    result = asyncio.run(rec.run_once())
    k = rec.settings.kafka
    assert asked == [k.consumer_group, k.overflow_group]  # each landed topic's group, once
    assert result.replayed_events == 1
