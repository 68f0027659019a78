"""orchestration/dagster_process.py paces the code-server watch of Dagster's daemon and webserver (issue 16: a
GetServerId call every second from each, on a system with nothing to do), and fails loudly if a Dagster upgrade
moves the constants it sets."""

from __future__ import annotations

import threading
import time

import pytest
from dagster._daemon import controller
from dagster._grpc import server_watcher
from dagster._grpc.client import DagsterGrpcClient

from orchestration import dagster_process


class _CountingClient(DagsterGrpcClient):
    def __init__(self) -> None:
        super().__init__(socket="/nonexistent/code-server.sock")
        self.calls = 0

    def get_server_id(self, timeout: int = 0) -> str:  # type: ignore[override]
        self.calls += 1
        return "server-1"


def _watch_calls(seconds: float) -> int:
    client = _CountingClient()
    stop, thread = server_watcher.create_grpc_watch_thread(
        "pulseops", client, get_location_entry=lambda _n: None, refresh_code_location=lambda _n: None,
        on_disconnect=lambda _n: None, on_reconnected=lambda _n: None, on_updated=lambda _n, _i: None,
        on_error=lambda _n: None,
    )  # fmt: skip
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(5)
    return client.calls


def test_pace_slows_the_code_server_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_watcher, "WATCH_INTERVAL", server_watcher.WATCH_INTERVAL)
    monkeypatch.setattr(controller, "RELOAD_WORKSPACE_INTERVAL", controller.RELOAD_WORKSPACE_INTERVAL)
    assert _watch_calls(2.5) >= 3  # Dagster's own pace: every second
    dagster_process.pace()
    assert server_watcher.WATCH_INTERVAL == dagster_process.WATCH_INTERVAL_S
    assert controller.RELOAD_WORKSPACE_INTERVAL == dagster_process.RELOAD_WORKSPACE_S
    assert _watch_calls(2.5) == 1  # asked once, next in WATCH_INTERVAL_S
    assert not any(t.name == "grpc-server-watch" and t.is_alive() for t in threading.enumerate())


def test_pace_refuses_a_dagster_without_the_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(server_watcher, "WATCH_INTERVAL")
    with pytest.raises(RuntimeError, match="WATCH_INTERVAL is gone"):
        dagster_process.pace()
