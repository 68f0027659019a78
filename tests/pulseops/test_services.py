"""Embedded fallbacks for a laptop without services, and the CLI against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis

from benchmarks.harness import free_port, stop_processes, wait_for
from pulseops import services
from tests.fixtures.system import ROOT
from warehouse.landing import land_batch
from warehouse.migrate import upgrade


def test_embedded_postgres_runs_the_warehouse():
    # Not under pytest's tmp dir: pytest re-chmods /tmp/pytest-of-<user> to 0700 whenever a session starts,
    # which locks out the `pgserver` OS user that runs the server when we are root.
    data_dir = Path(tempfile.mkdtemp(prefix="pulseops-pgserver-", dir="/var/tmp")) / "data"
    url = services.start_embedded_postgres(str(data_dir))
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = (
            uuid.uuid4(),
            datetime.now(UTC),
            uuid.uuid4(),
            uuid.uuid4(),
            "signup",
            "u-1",
            datetime.now(UTC),
            "{}",
        )
        assert land_batch(conn, [row]).landed == 1
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_embedded_redis_serves_the_rate_limiter():
    port = free_port()
    program = services.redis_program(port)
    proc = subprocess.Popen(program.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)

        def pong() -> bool:
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_for(pong, 10, "embedded redis")
        assert client.set("k", "v") and client.get("k") == b"v"
    finally:
        stop_processes([proc])


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    env["PULSEOPS_DB__URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "pulseops.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.usefixtures("db")
def test_cli_migrates_and_manages_keys(database_url):
    assert _cli(database_url, "migrate").returncode == 0
    created = _cli(database_url, "keys", "create", "--org", "acme", "--project", "web", "--name", "ci")
    assert created.returncode == 0, created.stderr
    fields = dict(
        line.split(":", 1) for line in created.stdout.splitlines() if ":" in line and not line.startswith("(")
    )
    key_id, key = fields["id"].strip(), fields["key"].strip()
    assert key.startswith("po_ingest_")
    listed = _cli(database_url, "keys", "list", "--org", "acme")
    assert key_id in listed.stdout and "acme/web" in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout  # never the secret
    assert _cli(database_url, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in _cli(database_url, "keys", "list").stdout
    assert _cli(database_url, "keys", "create", "--org", "acme").returncode != 0  # ingest key needs a project
