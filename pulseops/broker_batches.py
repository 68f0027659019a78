"""How many record batches the embedded Tansu stores: what the keeper (pulseops/broker.py) counts to recycle it.

Why batches, not records: Tansu's CPU per produce and fetch grows with the record batches it stores; records
and bytes do not matter for it, only for its memory (which the keeper bounds by resident size). Measured with a
producer writing 100 batches/s over 5 partitions and a consumer tailing them (lz4, Tansu's CPU over 10 s): one
single-event record per batch and 60 per batch (the shipped producer at ~6,000 single events/s: one produce
request in flight per API process, one partition per 20 ms window) both took 6-15 % of a core below 3,000
stored batches and ~30 % at 7,000, although the second stored 60 times the records and bytes; with 60 records
per batch it reached ~35 % at 10,000 batches and ~60 % from 15,000 (then 900,000 records but only 141 MiB
resident). So the limit counts batches (`kafka.embedded_recycle_batches`), at the former record limit's value
(200,000, set when each record was its own batch): how many records a batch holds depends on the rate. The
shipped system at ~1,400 single events/s made ~1.5 records per batch (benchmarks/steady_single.py, keeper log:
~10,000 batches at ~15,000 records), so a limit of 10,000 recycled it every ~8 s (19 recycles in 150 s,
24,542 x 503): below ~2,000 events/s nothing changes, faster ingest recycles less often by as many records as
a batch holds.

How, cheaply: Tansu answers ListOffsets(latest) with the last stored batch's base offset + 1, while a fetch
reports the true high watermark (pulseops/broker.py `high_watermarks`, which the keeper reads every pass
anyway), so `high - latest + 1` is the size in records of each partition's last batch. Each pass adds, per
partition, the records stored since the previous pass divided by that size, rounded up: exact while batches
are uniform, an estimate when they are not (a large last batch after small ones undercounts; the resident-size
limit still bounds memory). Without a ListOffsets answer the new records count as one batch each (an
overcount: an early recycle, never a late one).
"""

from __future__ import annotations

import math

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec


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
        self.high: dict[int, int] = {}  # partition -> high watermark at the previous update
        self.batches = 0

    def reset(self) -> None:
        self.high = {}
        self.batches = 0

    def update(self, high: dict[int, int], latest: dict[int, int]) -> int:
        """Add the batches stored since the previous update: `high` from a fetch, `latest` from ListOffsets."""
        for p, h in high.items():
            prev = self.high.get(p, 0)
            grown = h - prev if h >= prev else h  # lower than before: a fresh log
            if grown <= 0:
                continue
            self.high[p] = h
            last = latest.get(p, 0)
            size = h - last + 1 if 0 < last <= h else 1  # records in the partition's last batch
            self.batches += math.ceil(grown / size)
        return self.batches
