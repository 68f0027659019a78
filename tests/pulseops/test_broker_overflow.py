"""The keeper (pulseops/broker.py) with an overflow topic, against a real Tansu: a recycle drops the overflow
topic's records too, so they must be landed by the overflow group (pulseops/settings.py `overflow_group`)
before the broker is recycled, and the batches stored there count towards the batch limit."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from pulseops.broker import landing_state, landing_total
from tests.pulseops.test_broker import _commit, _produce, _read, keeper_for  # noqa: F401 - the fixture
from tests.pulseops.test_broker_batches import _produce_batches


def test_overflow_records_keep_the_broker_until_the_overflow_group_committed(keeper_for) -> None:  # noqa: F811
    keeper = keeper_for(overflow=True)  # over its (1-byte) memory limit from the start
    k, bs, admin = keeper.settings.kafka, keeper.broker.bootstrap, keeper.admin()
    assert k.topic_overflow in AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics
    raw = _produce(bs, k.topic_raw, 60)
    over = _produce(bs, k.topic_overflow, 30)

    # The raw topic is all landed, but nothing vouches for the overflow topic's records.
    _commit(bs, k.consumer_group, k.topic_raw, raw)
    assert landing_state(admin, bs, k.topic_raw, k.consumer_group).unlanded == 0
    state = landing_total(admin, bs, k)
    assert state.stored == 90 and state.unlanded is None
    assert keeper.check() == "kept"
    # Commits of the raw topic's group on the overflow topic vouch for nothing: the overflow group lands it.
    _commit(bs, k.consumer_group, k.topic_overflow, over)
    assert landing_total(admin, bs, k).unlanded is None
    assert keeper.check() == "kept"
    # The overflow group committed all but 4 records: counted as unlanded, more than the allowance (0).
    _commit(bs, k.overflow_group, k.topic_overflow, {**over, 1: over[1] - 4})
    assert landing_total(admin, bs, k).unlanded == 4
    assert keeper.check() == "kept" and keeper.pressed == 1
    assert keeper.recycles == 0 and len(_read(bs, k.topic_overflow, 1, 0, over[1])) == over[1]

    _commit(bs, k.overflow_group, k.topic_overflow, over)
    state = landing_total(admin, bs, k)
    assert state.stored == 90 and state.unlanded == 0
    assert state.high == {k.topic_raw: raw, k.topic_overflow: over}
    assert keeper.check() == "recycled" and keeper.pressed == 0
    # The fresh broker has the overflow topic again, empty.
    assert landing_total(keeper.admin(), bs, k).stored == 0
    assert k.topic_overflow in AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics


def test_unlanded_raw_records_keep_the_broker_whatever_the_overflow_group_did(keeper_for) -> None:  # noqa: F811
    keeper = keeper_for(overflow=True)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    raw = _produce(bs, k.topic_raw, 30)
    _commit(bs, k.overflow_group, k.topic_overflow, _produce(bs, k.topic_overflow, 30))
    _commit(bs, k.consumer_group, k.topic_raw, {**raw, 0: raw[0] - 2})
    assert landing_total(keeper.admin(), bs, k).unlanded == 2
    assert keeper.check() == "kept"
    _commit(bs, k.consumer_group, k.topic_raw, raw)
    assert keeper.check() == "recycled"


def test_overflow_batches_count_towards_the_batch_limit(keeper_for) -> None:  # noqa: F811
    """3 batches on the raw topic and 4 on the overflow topic stay under a limit of 8; 2 more overflow batches
    go over it. Each topic has its own mean batch size: one mean of 100- and 10-record batches would count 6."""
    keeper = keeper_for(rss=8 * 1024**3, batches=8, overflow=True)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    raw = {0: _produce_batches(bs, k.topic_raw, 0, [100, 100, 100])}
    over = {0: _produce_batches(bs, k.topic_overflow, 0, [10, 10, 10, 10])}
    _commit(bs, k.consumer_group, k.topic_raw, raw)
    _commit(bs, k.overflow_group, k.topic_overflow, over)
    assert keeper.check() == "small"
    assert (keeper.count.batches, keeper.overflow_count.batches, keeper.stored) == (3, 4, 340)

    over[1] = _produce_batches(bs, k.topic_overflow, 1, [10, 10])
    assert keeper.check() == "kept"  # 9 batches, 20 overflow records not landed
    assert keeper.overflow_count.batches == 6
    _commit(bs, k.overflow_group, k.topic_overflow, over)
    assert keeper.check() == "recycled"
    assert keeper.count.batches == keeper.overflow_count.batches == 0
