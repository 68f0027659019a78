"""How many record batches the embedded Tansu stores: what the keeper (pulseops/broker.py) counts to recycle it.

Why batches, not records: Tansu's CPU per fetch grows with the record batches it stores; records and bytes do
not matter for it, only for its memory (which the keeper bounds by resident size). Produce alone does not grow
(benchmarks/tansu_fetch.py, docs/benchmarks/2026-12-07-tansu-fetch-probe.md: 13-15 % of a core from 0 to 180 k
stored single messages at 3,000/s), but a consumer tailing live traffic fetches back to back, each
fetch finds new data and costs more, and Tansu took a whole core from ~200 k stored. Measured with a
producer writing 100 batches/s over 5 partitions and a consumer tailing them (lz4, Tansu's CPU over 10 s): one
single-event record per batch and 60 per batch (6,000 records/s) both took 6-15 % of a core below 3,000
stored batches and ~30 % at 7,000, although the second stored 60 times the records and bytes; with 60 records
per batch it reached ~35 % at 10,000 batches and ~60 % from 15,000 (then 900,000 records but only 141 MiB
resident). So the limit counts batches (`kafka.embedded_recycle_batches`, 30,000). How many records a batch
holds depends on the rate: the shipped system at ~2,000 single events/s (benchmarks/steady_single.py, 300 s
runs alternating with e64a3ee) made ~7.5 per batch, so the former limit of 200,000 records recycled it at
~27,000 batches, Tansu at 25 % of a core on average; a limit of 50,000 batches recycled it half as often but
Tansu took 47 %. At 30,000 Tansu's CPU stays where the record limit kept it at that rate, faster ingest (more
records per batch) recycles less often, and slow ingest (about one record per batch), where 200,000 records
cost Tansu a whole core, more often. But in the same window, 300 s at ~2,200 events/s with 30,000 batches
(2 recycles, 253 x 503, 0 missing) Tansu took 53 % of a core on average against the record limit's 25 %
(3 recycles, 611 x 503), and 47 % with 50,000: ListOffsets costs Tansu ~1 ms of CPU per 1,000 stored batches
(19 ms at 20,000), a few % at one call a second, which does not explain it. Until it is understood the batch
limit is off by default and the record limit (200,000) stays.

How, cheaply: Tansu answers ListOffsets(latest) with the last stored batch's base offset + 1, while a fetch
reports the true high watermark (pulseops/broker.py `high_watermarks`, which the keeper reads every pass
anyway), so `high - latest + 1` is the size in records of each partition's last batch, asked right after the
fetch (a latest above `high` means a batch arrived in between: no sample then). The last batch at a pass is a
sample of the batch sizes, so the count is the records stored divided by the mean of all samples of this
broker. Dividing each pass's records by that pass's sample instead counted 2.8x (sizes 1-100) to 23x (mostly
one-record batches, some of 20-200) the true batches (100 batches/s over 5 partitions, a pass per second):
small samples dominate such a sum. With no sample yet the records wait for a later pass; after DEFER_PASSES
they count as one batch each (an early recycle, never a late one). The resident-size limit bounds memory
whatever the count.
"""

from __future__ import annotations

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

DEFER_PASSES = 10


def latest_offsets(
    admin: AdminClient, topic: str, partitions: list[int], timeout: float = 5.0
) -> dict[int, int]:
    """ListOffsets(latest) per partition as Tansu answers it: the last stored batch's base offset + 1 (0 when
    empty). Partitions that did not answer are left out."""
    if not partitions:
        return {}
    futures = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}, request_timeout=timeout
    )
    out: dict[int, int] = {}
    for tp, fut in futures.items():
        try:
            out[tp.partition] = fut.result(timeout).offset
        except Exception:  # noqa: S112 - counted as one-record batches instead (see above)
            continue
    return out


class BatchCount:
    """The estimated number of batches one broker incarnation stores (reset when it is replaced)."""

    def __init__(self) -> None:
        self.high: dict[int, int] = {}  # partition -> high watermark counted so far
        self.sampled = self.samples = 0  # records of the sampled last batches, and how many samples
        self.deferred = 0  # passes that found growth but no sample yet
        self.counted = 0.0

    @property
    def batches(self) -> int:
        return round(self.counted)

    def reset(self) -> None:
        self.high = {}
        self.sampled = self.samples = self.deferred = 0
        self.counted = 0.0

    def update(self, high: dict[int, int], latest: dict[int, int]) -> int:
        """Add the batches stored since the previous update: `high` from a fetch, `latest` from ListOffsets
        asked after it."""
        grown: dict[int, int] = {}
        for p, h in high.items():
            prev = self.high.get(p, 0)
            g = h - prev if h >= prev else h  # lower than before: a fresh log
            if g <= 0:
                continue
            grown[p] = g
            last = latest.get(p, 0)
            if 0 < last <= h:  # no batch arrived since the fetch: the last one's size, exactly
                self.sampled += h - last + 1
                self.samples += 1
        if not grown:
            return self.batches
        if not self.samples:
            self.deferred += 1
            if self.deferred < DEFER_PASSES:
                return self.batches  # counted at a later pass, with a size
        mean = self.sampled / self.samples if self.samples else 1.0
        for p, g in grown.items():
            self.high[p] = high[p]
            self.counted += g / mean
        return self.batches
