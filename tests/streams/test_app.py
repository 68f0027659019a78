"""The landing worker's Quix wiring (streams/app.py)."""

from __future__ import annotations

from streams.app import POLL_TIMEOUT_S, build_app
from tests.fixtures.system import make_settings


def test_a_consumer_poll_never_holds_a_due_checkpoint_back_for_long(database_url, broker, redis_url) -> None:
    """Quix commits a due checkpoint only after a poll returns: with its 1 s default, the last events before a
    pause in traffic waited ~1 s more (benchmarks/skew.py at small: the quiet tenant's last 4 events alone
    1.0-1.16 s against <= 0.31 s with 50 ms). The poll is bounded by POLL_TIMEOUT_S and the checkpoint
    interval."""
    settings = make_settings(database_url, broker, redis_url)
    assert build_app(settings)._config.consumer_poll_timeout == POLL_TIMEOUT_S <= 0.05
    settings.streams.commit_interval_s = 0.02
    assert build_app(settings)._config.consumer_poll_timeout == 0.02
