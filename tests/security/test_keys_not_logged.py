"""API keys never reach a log, an error body or /metrics (issue 8).

Valid, unknown, revoked, wrong-kind and rate-limited keys, in `X-API-Key` and `Authorization: Bearer`, on
ingest and GraphQL, with good and bad bodies: against a real uvicorn process logging at DEBUG with its access
log on (its stdout/stderr file is searched), then in-process with every logger captured at DEBUG, including
the dashboard's relay (forwarding to the real API, and to a dead one so that it logs).
"""

from __future__ import annotations

import gzip
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from benchmarks.harness import free_port, http_ok
from dashboards.app import create_app as create_dashboard
from tests.fixtures.system import LOG_DIR, System, make_settings, wait_until
from tests.utils.tenants import make_tenant, new_event
from warehouse.tenants import create_api_key, revoke_api_key


@dataclass
class Keys:
    """Every key string of the test, and the requests that use them."""

    tenant: dict
    revoked_ingest: str
    revoked_read: str
    slow_ingest: str
    slow_read: str
    unknown: str = field(default_factory=lambda: "po_ingest_" + secrets.token_urlsafe(24))
    unknown_read: str = field(default_factory=lambda: "po_read_" + secrets.token_urlsafe(24))

    @property
    def all(self) -> list[str]:
        t = self.tenant
        return [t["ingest_key"], t["read_key"], self.revoked_ingest, self.revoked_read, self.slow_ingest,
                self.slow_read, self.unknown, self.unknown_read]  # fmt: skip

    def secret_parts(self) -> list[str]:
        """The random part of each key: the stored display prefix (`po_ingest_` + 4 chars) may be shown."""
        return [k.split("_", 2)[2] for k in self.all]


def make_keys(db: psycopg.Connection) -> Keys:
    tenant = make_tenant(db)
    org, project = tenant["org_id"], tenant["project_id"]
    rid, revoked_ingest = create_api_key(db, org_id=org, project_id=project, kind="ingest")
    rrid, revoked_read = create_api_key(db, org_id=org, project_id=project, kind="read")
    revoke_api_key(db, rid)
    revoke_api_key(db, rrid)
    _, slow_ingest = create_api_key(
        db, org_id=org, project_id=project, kind="ingest", rate_per_s=0.01, burst=1
    )
    _, slow_read = create_api_key(db, org_id=org, project_id=project, kind="read", rate_per_s=0.01, burst=1)
    return Keys(tenant, revoked_ingest, revoked_read, slow_ingest, slow_read)


def exercise(post: Callable[..., httpx.Response], keys: Keys) -> list[httpx.Response]:
    """Every way a key travels and every error it can meet; returns the responses."""
    good = json.dumps(new_event()).encode()
    window = 'from: "2026-01-01", to: "2026-01-02"'
    own = '{ totalEvents(projectId: "%s", %s) }' % (keys.tenant["project_id"], window)
    other = '{ totalEvents(projectId: "00000000-0000-0000-0000-000000000000", %s) }' % window
    queries = ["{ projects { id } }", own, other, "{ nope }"]
    bodies = {
        "/v1/events": [
            good,
            b'{"event": ',
            gzip.compress(good)[:-5],
            json.dumps(new_event(event="")).encode(),
        ],
        "/v1/batch": [json.dumps({"batch": [new_event(), {"event": 5}]}).encode(), b'{"batch": []}'],
        "/graphql": [*(json.dumps({"query": q}).encode() for q in queries), b'{"query": "{ projects { '],
    }
    responses = []
    for key in [*keys.all, keys.slow_ingest, keys.slow_read]:  # the slow keys twice: the second is a 429
        for path, payloads in bodies.items():
            for body in payloads:
                for header in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
                    headers = {"Content-Type": "application/json", **header}
                    if body[:2] == b"\x1f\x8b":
                        headers["Content-Encoding"] = "gzip"
                    responses.append(post(path, content=body, headers=headers))
    statuses = {r.status_code for r in responses}
    assert {200, 202, 400, 401, 403, 422, 429} <= statuses, statuses  # every path was reached
    return responses


def assert_no_secret(text: str, keys: Keys, where: str) -> None:
    leaked = [part for part in keys.secret_parts() if part in text]
    assert not leaked, f"{len(leaked)} key(s) found in {where}"


@pytest.fixture
def keys(db: psycopg.Connection) -> Keys:
    return make_keys(db)


@pytest.fixture
def debug_server(database_url: str, broker: str, redis_url: str, keys: Keys) -> Iterator[tuple[str, Path]]:
    """(URL, log file) of a real API process with uvicorn at DEBUG and its access log on."""
    system = System(make_settings(database_url, broker, redis_url))
    port = str(system.settings.ingest.port)
    system.ingest = system._spawn(
        "ingest-debug",
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
    log_file = LOG_DIR / f"ingest-debug-{system.settings.kafka.consumer_group}.log"
    try:
        wait_until(lambda: http_ok(f"{system.url}/readyz"), 30, "ingest /readyz")
        yield system.url, log_file
    finally:
        system.stop()


def test_a_real_server_logs_no_key(debug_server: tuple[str, Path], keys: Keys) -> None:
    url, log_file = debug_server
    with httpx.Client(base_url=url, timeout=30) as client:
        responses = exercise(client.post, keys)
        metrics = client.get("/metrics").text
    for r in responses:
        assert_no_secret(r.text + json.dumps(dict(r.headers)), keys, f"a {r.status_code} response")
    assert "pulseops_http_requests_total" in metrics
    assert_no_secret(metrics, keys, "/metrics")
    logged = log_file.read_text(errors="replace")
    assert logged.count('"POST /v1/events HTTP/1.1" 401') >= 4, "the access log did not capture the requests"
    assert_no_secret(logged, keys, str(log_file))


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # root: every logger of every library, down to DEBUG
    return caplog


def captured(caplog: pytest.LogCaptureFixture) -> str:
    return (
        "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
        + caplog.text
    )


def test_in_process_logs_and_the_dashboard_relay_show_no_key(
    database_url: str, broker: str, redis_url: str, keys: Keys, everything_at_debug: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, broker, redis_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        responses = exercise(api.post, keys)
        metrics = api.get("/metrics").text
    for r in responses:
        assert_no_secret(r.text, keys, f"a {r.status_code} response")
    assert_no_secret(metrics, keys, "/metrics")
    assert len(everything_at_debug.records) > 10, "nothing captured: the check would be vacuous"
    with pytest.raises(AssertionError):  # and the search does find a key where there is one
        assert_no_secret(f"auth failed for {keys.slow_read!r}", keys, "a probe")
    assert_no_secret(captured(everything_at_debug), keys, "the captured logs")


def test_the_dashboard_relay_logs_no_key(
    debug_server: tuple[str, Path], keys: Keys, everything_at_debug: pytest.LogCaptureFixture
) -> None:
    url, log_file = debug_server
    for api_url in (url, f"http://127.0.0.1:{free_port()}"):  # the real API, then one that is down
        settings = make_settings("postgresql://unused", "unused:1", "redis://unused")
        settings.dashboard.api_url = api_url
        with TestClient(create_dashboard(settings)) as relay:
            for key in (
                keys.tenant["read_key"],
                keys.revoked_read,
                keys.unknown_read,
                keys.tenant["ingest_key"],
            ):
                for header in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
                    r = relay.post("/graphql", json={"query": "{ projects { id } }"}, headers=header)
                    assert r.status_code in ((200, 401, 403) if api_url == url else (502,)), r.text
                    assert_no_secret(r.text, keys, "a relay response")
    messages = [r.getMessage() for r in everything_at_debug.records]
    assert any("unreachable" in m for m in messages), "the relay's own warning was not captured"
    assert_no_secret(captured(everything_at_debug), keys, "the relay's logs")
    assert_no_secret(log_file.read_text(errors="replace"), keys, str(log_file))
