"""No key reaches a log, an answer or /metrics on the PostHog and Segment paths either (docs/sdks.md), where
keys also travel in the body (`api_key`, `token`, `writeKey`, a base64 form) and as Basic auth.

Same method as tests/security/test_keys_not_logged.py: a real uvicorn process at DEBUG with its access log
on, and in-process with every logger captured at DEBUG. (posthog-js's `GET /array/<key>/config` carries the key
in its URL by design; docs/sdks.md says so, and it is not exercised here.)
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from benchmarks.harness import http_ok
from tests.fixtures.system import LOG_DIR, System, make_settings, wait_until
from tests.security.test_keys_not_logged import Keys, assert_no_secret, captured, make_keys


def _ph(**over) -> dict:
    return {"event": "clicked", "distinct_id": "u", "uuid": str(uuid.uuid4()), **over}


def exercise(post: Callable[..., httpx.Response], keys: Keys) -> list[httpx.Response]:
    """Every way a key travels on the SDK paths, valid and invalid bodies; returns the responses."""
    responses = []
    json_type = {"Content-Type": "application/json"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for key in [*keys.all, keys.slow_ingest]:  # the slow key twice: the second is a 429
        basic = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        batch = json.dumps({"api_key": key, "batch": [_ph(), {"event": 5}]}).encode()
        beacon = base64.b64encode(json.dumps(_ph(properties={"token": key})).encode()).decode()
        segment = {"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": str(uuid.uuid4())}]}
        requests = [
            ("/batch/", batch, json_type),
            ("/batch/", gzip.compress(batch)[:-5], {**json_type, "Content-Encoding": "gzip"}),
            ("/i/v0/e/", json.dumps(_ph(api_key=key, event="")).encode(), json_type),
            ("/e/", b'{"event": ', {"Authorization": f"Bearer {key}"}),
            ("/e/?compression=base64", f"data={quote(beacon)}".encode(), form),
            ("/e/?compression=base64", b"data=%%%" + key.encode(), form),
            ("/flags/?v=2", json.dumps({"token": key, "distinct_id": "u"}).encode(), json_type),
            ("/v1/batch", json.dumps(segment).encode(), {**json_type, **basic}),
            ("/v1/batch", json.dumps({**segment, "writeKey": key}).encode(), json_type),
            ("/v1/track", json.dumps({"writeKey": key, "userId": "u"}).encode(), json_type),
            ("/v1/identify", b"{not json", {**json_type, **basic}),
        ]
        for path, body, headers in requests:
            responses.append(post(path, content=body, headers=headers))
    statuses = {r.status_code for r in responses}
    assert {200, 400, 401, 403, 429} <= statuses, statuses  # every path was reached
    return responses


@pytest.fixture
def keys(db: psycopg.Connection) -> Keys:
    return make_keys(db)


@pytest.fixture
def debug_server(database_url: str, broker: str, redis_url: str, keys: Keys) -> Iterator[tuple[str, Path]]:
    """(URL, log file) of a real API process with uvicorn at DEBUG and its access log on."""
    system = System(make_settings(database_url, broker, redis_url))
    port = str(system.settings.ingest.port)
    system.ingest = system._spawn(
        "ingest-compat-debug",
        [
            "-m",
            "uvicorn",
            "api.main:app",
            "--factory",
            "--port",
            port,
            "--log-level",
            "debug",
            "--access-log",
        ],
    )
    log_file = LOG_DIR / f"ingest-compat-debug-{system.settings.kafka.consumer_group}.log"
    try:
        wait_until(lambda: http_ok(f"{system.url}/readyz"), 30, "ingest /readyz")
        yield system.url, log_file
    finally:
        system.stop()


def test_a_real_server_logs_no_key_on_the_sdk_paths(debug_server: tuple[str, Path], keys: Keys) -> None:
    url, log_file = debug_server
    with httpx.Client(base_url=url, timeout=30) as client:
        responses = exercise(client.post, keys)
        metrics = client.get("/metrics").text
    for r in responses:
        assert_no_secret(r.text + json.dumps(dict(r.headers)), keys, f"a {r.status_code} response")
    assert 'route="/batch/"' in metrics
    assert_no_secret(metrics, keys, "/metrics")
    logged = log_file.read_text(errors="replace")
    assert logged.count('"POST /v1/track HTTP/1.1" 401') >= 4, "the access log did not capture the requests"
    assert_no_secret(logged, keys, str(log_file))


def test_in_process_logs_show_no_key_on_the_sdk_paths(
    database_url: str, broker: str, redis_url: str, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for fast_path in (True, False):
        settings = make_settings(database_url, broker, redis_url, fast_path=fast_path)
        with TestClient(create_app(settings), raise_server_exceptions=False) as api:
            responses = exercise(api.post, keys)
        for r in responses:
            assert_no_secret(r.text, keys, f"a {r.status_code} response")
    assert len(caplog.records) > 10, "nothing captured: the check would be vacuous"
    assert_no_secret(captured(caplog), keys, "the captured logs")
