"""The keeper's idle recycle (pulseops/broker_idle.py) against a real Tansu: a broker below its limits is
recycled once everything is landed and nothing arrived for a while, never while records are unlanded, while
records still arrive, or while it holds only a few; and a keeper whose passes would back off while landing
catches up still recycles within a pass of the last commit."""

from __future__ import annotations

import threading
import time

from benchmarks.harness import free_port, wait_for
from pulseops.broker import EmbeddedBroker, Keeper
from pulseops.broker_idle import LANDING_S, IdleWatch
from tests.pulseops.test_broker import _commit, _produce, _settings

QUIET_S = 0.6


def _keeper(min_records: int = 50, interval: float = 1.0) -> Keeper:
    port = free_port()
    settings = _settings(port, rss=8 * 1024**3)  # no resident-size, record or batch limit reached
    settings.kafka.embedded_idle_recycle_s = QUIET_S
    settings.kafka.embedded_idle_recycle_records = min_records
    settings.kafka.embedded_check_interval_s = interval
    keeper = Keeper(settings, EmbeddedBroker(port))
    keeper.start()
    return keeper


def test_an_idle_landed_broker_is_recycled_below_its_limits() -> None:
    keeper = _keeper()
    try:
        k, bs = keeper.settings.kafka, keeper.broker.bootstrap
        high = _produce(bs, k.topic_raw, 60)
        pid = keeper.broker.pid
        assert keeper.check() == "small"  # nothing committed: nothing vouches for the records
        _commit(bs, k.consumer_group, k.topic_raw, {p: h - 1 for p, h in high.items()})
        time.sleep(QUIET_S)
        assert keeper.check() == "idle"  # quiet, but 3 records unlanded: no recycle yet (landing catches up)
        _commit(bs, k.consumer_group, k.topic_raw, high)
        assert keeper.check() == "recycled"  # quiet since the first pass, all landed
        assert keeper.broker.pid != pid and keeper.recycles == 1
        assert keeper.check() == "small"  # the fresh broker stores nothing
    finally:
        keeper.broker.stop()


def test_records_still_arriving_or_few_records_keep_the_broker() -> None:
    keeper = _keeper()
    try:
        k, bs = keeper.settings.kafka, keeper.broker.bootstrap
        high = _produce(bs, k.topic_raw, 30)  # under the floor of 50
        _commit(bs, k.consumer_group, k.topic_raw, high)
        assert keeper.check() == "small"
        time.sleep(QUIET_S)
        assert keeper.check() == "small"
        for _ in range(4):  # a record every half quiet period: never quiet long enough
            grown = _produce(bs, k.topic_raw, 30)
            high = {p: h + grown[p] for p, h in high.items()}
            _commit(bs, k.consumer_group, k.topic_raw, high)
            assert keeper.check() == "idle"
            time.sleep(QUIET_S / 2)
        assert keeper.recycles == 0
        time.sleep(QUIET_S)
        assert keeper.check() == "recycled"
    finally:
        keeper.broker.stop()


def test_passes_do_not_back_off_while_landing_catches_up() -> None:
    """Stored count still, landing moving: backed-off passes (doubling from the interval: 0.2, 0.4, 0.8, 1.6 s
    apart) would come seconds after the last commit, when the next traffic may already be there."""
    keeper = _keeper(interval=0.2)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    passes: list[tuple[float, str]] = []
    check = keeper.check

    def timed() -> str:
        result = check()
        passes.append((time.monotonic(), result))
        return result

    keeper.check = timed  # type: ignore[method-assign]
    runner = threading.Thread(target=keeper.run, daemon=True)
    try:
        high = _produce(bs, k.topic_raw, 300)
        runner.start()
        start = time.monotonic()
        for step in range(1, 11):  # the group lands a tenth every 0.3 s: 3 s of catching up
            _commit(bs, k.consumer_group, k.topic_raw, {p: h * step // 10 for p, h in high.items()})
            if step < 10:
                time.sleep(0.3)
        done = time.monotonic()
        wait_for(lambda: any(r == "recycled" for _, r in passes), 5.0, "an idle recycle")
        catching_up = [t for t, _ in passes if start <= t <= done]
        assert len(catching_up) >= 8, catching_up  # backed off: 4 or 5
        recycled = next(t for t, r in passes if r == "recycled")
        assert recycled - done < 1.0, recycled - done
    finally:
        keeper.stop()
        runner.join(10)
        keeper.broker.stop()


def test_idle_watch_times_the_quiet_from_the_first_pass_that_saw_the_count() -> None:
    now = [0.0]
    watch = IdleWatch(quiet_s=3.0, min_records=100, clock=lambda: now[0])
    watch.observe(500, 20)
    assert not watch.due() and watch.pending()  # landing just moved
    now[0] = 2.0
    watch.observe(500, 0)
    assert not watch.due() and watch.pending()  # all landed, quiet for 2 s only
    now[0] = 3.0
    watch.observe(500, 0)
    assert watch.due()
    watch.observe(501, 0)  # a record arrived: the quiet starts again
    assert not watch.due()
    now[0] = 6.0
    watch.observe(501, 1)
    assert not watch.due()  # quiet, but one record unlanded
    now[0] = 6.0 + LANDING_S
    watch.observe(501, 1)
    assert not watch.pending()  # a group stuck for LANDING_S: the keeper may back off
    watch.reset()
    watch.observe(501, 0)
    assert not watch.due()  # a new broker's quiet starts at its first pass
    assert not IdleWatch(quiet_s=3.0, min_records=1000, clock=lambda: now[0]).pending()
    small = IdleWatch(quiet_s=3.0, min_records=1000, clock=lambda: now[0])
    small.observe(999, 0)
    now[0] += 10
    assert not small.due() and not small.pending()
