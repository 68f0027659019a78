"""Day partitions created concurrently by several workers."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import psycopg

from warehouse.partitions import ensure_partitions, existing_partition_days


def test_concurrent_workers_create_the_same_partitions_without_errors(db, database_url):
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(20)]
    errors: list[BaseException] = []
    created: list[list[date]] = []

    def worker() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                created.append(ensure_partitions(conn, days))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(d for c in created for d in c) == days  # each day created exactly once
    assert set(days) <= existing_partition_days(db)
