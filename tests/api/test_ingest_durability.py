"""A 202 needs the record fsynced and the broker's ack (api/ingest/service.py, api/ingest/spool.py): a failed
fsync answers 503 with Retry-After, a slow one holds the 202. Against a real broker, Redis and PostgreSQL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from api.ingest.spool import read_records
from api.main import create_app
from tests.api.test_ingest_validation import assert_error, make_ingest
from tests.utils.tenants import new_event


def test_a_failed_fsync_answers_503_with_retry_after_and_the_next_request_is_accepted(
    db: psycopg.Connection, database_url: str, broker: str, redis_url: str, monkeypatch
) -> None:
    settings, tenant = make_ingest(db, database_url, broker, redis_url)
    headers = {"X-API-Key": tenant["ingest_key"]}
    real = os.fdatasync
    failing = {"on": False}

    def fdatasync(fd: int) -> None:
        if failing["on"]:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=new_event(), headers=headers).status_code == 202
        failing["on"] = True
        refused = new_event()
        resp = client.post("/v1/events", json=refused, headers=headers)
        assert_error(resp, 503, "spool_unavailable", "body")
        assert int(resp.headers["Retry-After"]) >= 1
        failing["on"] = False  # a later fdatasync would succeed: the refused record stays refused
        accepted = new_event()
        assert client.post("/v1/events", json=accepted, headers=headers).status_code == 202
    records = [r for path in sorted(Path(settings.spool_dir).glob("*.seg")) for r in read_records(path)]
    kinds = [type(r).__name__ for r in records]
    assert kinds.count("Abort") == 1 and kinds.count("Ack") == 2, kinds


def test_a_slow_fsync_delays_the_202_until_it_is_done(
    db: psycopg.Connection, database_url: str, broker: str, redis_url: str, monkeypatch
) -> None:
    """However the sync and the broker round trip are ordered, the 202 waits for the sync."""
    settings, tenant = make_ingest(db, database_url, broker, redis_url)
    headers = {"X-API-Key": tenant["ingest_key"]}
    real = os.fdatasync

    def slow(fd: int) -> None:
        time.sleep(0.3)
        real(fd)

    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=new_event(), headers=headers).status_code == 202
        monkeypatch.setattr(os, "fdatasync", slow)
        started = time.monotonic()
        assert client.post("/v1/events", json=new_event(), headers=headers).status_code == 202
        assert time.monotonic() - started >= 0.3
