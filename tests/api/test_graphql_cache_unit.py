"""The version memo that bounds cache staleness (no services needed)."""

from __future__ import annotations

import time

from api.graphql.cache import VersionMemo


def test_entries_expire_ttl_after_the_read_and_never_go_back_to_an_older_read():
    memo = VersionMemo(1.0)
    now = time.monotonic()
    memo.put(("p", 1), "v2", read_at=now)
    memo.put(("p", 1), "v1", read_at=now - 0.5)  # a slower request that read earlier finishes later
    assert memo.get(("p", 1)) == "v2"
    memo.put(("p", 2), "old", read_at=now - 1.5)  # read longer ago than the bound: not kept at all
    assert memo.get(("p", 2)) is None
    memo.put(("p", 3), "v", read_at=now - 0.95)
    time.sleep(0.1)
    assert memo.get(("p", 3)) is None  # expired 1 s after it was read, not after it was stored
    assert VersionMemo(0).get(("p", 1)) is None
