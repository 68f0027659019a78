"""The ingest scenario's broker is kept as `pulseops up` keeps it (benchmarks/ingest.py `kept_broker`).

Why: the scenario reports figures for the shipped configuration, where Tansu runs under its keeper
(`python -m pulseops.broker`: recycles, pauses ingest while landing lags, restarts a dead broker); a bare Tansu
measured a broker no installation runs. Real processes, no broker stand-in."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from benchmarks.harness import free_port, wait_for
from benchmarks.ingest import kept_broker
from benchmarks.sustained import _children, _listening
from pulseops.settings import Settings


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_ingest_scenario_runs_tansu_under_its_keeper() -> None:
    settings = Settings()
    with kept_broker(settings.db.url, settings.redis.url, uuid.uuid4().hex[:6], free_port()) as (env, kp):
        port = int(env["PULSEOPS_KAFKA__BOOTSTRAP"].rsplit(":", 1)[1])
        assert _cmdline(kp.pid)[1:3] == ["-m", "pulseops.broker"]
        [tansu] = _children(kp.pid)
        assert "broker" in _cmdline(tansu) and f"tcp://127.0.0.1:{port}" in _cmdline(tansu)
        # once the keeper started (it created the topics on its broker: pulseops/broker.py `Keeper.start`)
        admin = AdminClient({"bootstrap.servers": env["PULSEOPS_KAFKA__BOOTSTRAP"]})
        raw = env["PULSEOPS_KAFKA__TOPIC_RAW"]
        wait_for(lambda: raw in admin.list_topics(timeout=2).topics, 30, "the keeper's topics")
        # kept: the keeper starts a broker that died again, on the address the services were given
        os.kill(tansu, signal.SIGKILL)
        wait_for(
            lambda: _children(kp.pid) not in ([], [tansu]) and _listening(port), 30, "Tansu started again"
        )
        assert kp.poll() is None
    assert kp.poll() is not None and not _listening(port)
