"""The keeper recycles the embedded broker by the record batches it stores (pulseops/broker_batches.py), not by
its records: Tansu's CPU follows batches. Against a real Tansu, whose ListOffsets(latest) answers the last
batch's base offset + 1, which the estimate relies on."""

from __future__ import annotations

from confluent_kafka import Producer

from pulseops.broker_batches import DEFER_PASSES, BatchCount, latest_offsets
from tests.pulseops.test_broker import _commit, keeper_for  # noqa: F401 - the fixture


def _produce_batches(bootstrap: str, topic: str, partition: int, sizes: list[int]) -> int:
    """One record batch per entry of `sizes` (that many records each) on `partition`; returns the records."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5000, "batch.num.messages": 100_000})
    for i, n in enumerate(sizes):
        for j in range(n):
            p.produce(topic, f"b{i}-r{j}".encode(), partition=partition)
        assert p.flush(10) == 0  # the batch goes out now, alone
    return sum(sizes)


def test_last_batch_size_from_list_offsets(keeper_for) -> None:  # noqa: F811
    keeper = keeper_for(rss=8 * 1024**3)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    _produce_batches(bs, k.topic_raw, 0, [5, 7, 13])
    assert latest_offsets(keeper.admin(), k.topic_raw, [0, 1]) == {0: 5 + 7 + 1, 1: 0}


def test_counts_batches_not_records(keeper_for) -> None:  # noqa: F811
    """500 records in 5 batches stay under a limit of 8 batches; 4 batches more go over it, and the broker is
    recycled once they are landed. The count starts again on the new broker."""
    keeper = keeper_for(rss=8 * 1024**3, batches=8)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    high = {
        0: _produce_batches(bs, k.topic_raw, 0, [100, 100, 100]),
        1: _produce_batches(bs, k.topic_raw, 1, [100, 100]),
    }
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "small"
    assert keeper.count.batches == 5 and keeper.stored == 500
    assert keeper.check() == "small" and keeper.count.batches == 5  # nothing new: nothing added

    high[2] = _produce_batches(bs, k.topic_raw, 2, [100, 100, 100, 100])
    assert keeper.check() == "kept"  # 9 batches, 400 records not landed
    assert keeper.count.batches == 9
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "recycled"
    assert keeper.count.batches == 0
    _produce_batches(bs, k.topic_raw, 0, [3, 3])
    assert keeper.check() == "small" and keeper.count.batches == 2


def test_no_batch_limit_leaves_many_batches_alone(keeper_for) -> None:  # noqa: F811
    keeper = keeper_for(rss=8 * 1024**3, batches=0)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    high = {0: _produce_batches(bs, k.topic_raw, 0, [1] * 20)}
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "small" and keeper.recycles == 0


def test_estimate_between_passes() -> None:
    """Records stored / the mean of the sampled last-batch sizes; a latest above the fetched high watermark (a
    batch arrived in between) is no sample; without any sample the records wait, then count one batch each; a
    lower high watermark is a fresh log."""
    c = BatchCount()
    assert c.update({0: 60, 1: 0}, {0: 41}) == 3  # last batch 20 records: 60 records ~ 3 batches
    assert c.update({0: 60, 1: 0}, {0: 41}) == 3  # nothing new
    assert c.update({0: 80, 1: 20}, {0: 81, 1: 20}) == 7  # p0: no sample (81 > 80); p1: a batch of 1
    assert c.samples == 2 and c.sampled == 21  # mean 10.5: 40 records ~ 3.8 batches, 6.8 in all
    assert c.update({0: 101}, {0: 81}) == 8  # a sample of 21, mean 14: 21 records ~ 1.5 batches, 8.3 in all
    c.reset()
    assert c.batches == 0 and c.high == {} and c.samples == 0
    for _ in range(DEFER_PASSES - 1):
        assert c.update({0: 30}, {0: 40}) == 0  # never a sample: waits ...
    assert c.update({0: 30}, {0: 40}) == 30  # ... then each record counts as a batch
    assert c.update({0: 5}, {0: 1}) == 30 + 1  # the log started again: 5 records (mean 5 of one sample)
