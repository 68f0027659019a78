"""Which of Tansu's requests gets dearer as it stores batches: `python -m benchmarks.tansu_fetch`.

pulseops/broker.py recycles the embedded Tansu because its CPU grows with the record batches it stores; this
separates produce from fetch. A bare Tansu (no keeper), two producers configured as ingest's (acks=all,
linger.ms 1, lz4, one request in flight) sending single messages at `--rate` to the partition of the current
`--window` (as api/ingest/publisher.py does), first alone for `--produce-only` seconds, then with a consumer
tailing the topic from its start as the landing worker does (a group, fetch.wait.max.ms 100, `--min-bytes`).
Every 5 s: Tansu's CPU (% of a core) and resident size, and from the consumer's statistics its Fetch requests
and their round trip, so a CPU figure reads as fetches per second times CPU per fetch.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Iterator

import psutil
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.harness import tansu

PARTITIONS = 5
VALUE = b"x" * 300  # about a single event's message


def _tansu_process(bootstrap: str) -> psutil.Process:
    port = bootstrap.rpartition(":")[2]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "tansu" in cmd and f":{port}" in cmd:
            return proc
    raise RuntimeError(f"no Tansu process on port {port}")


class _Load:
    """The two producers and the tailing consumer, each on a thread of its own."""

    def __init__(
        self, bootstrap: str, topic: str, rate: float, window_ms: float, consumer_config: dict
    ) -> None:
        self.bootstrap, self.topic, self.rate, self.window_ms = bootstrap, topic, rate, window_ms
        self.consumer_config = consumer_config
        self.producers = [
            Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "compression.type": "lz4",
                      "max.in.flight.requests.per.connection": 1})
            for _ in range(2)
        ]  # fmt: skip
        self.stop, self.tail = threading.Event(), threading.Event()
        self.lines: list[str] = []  # consumer statistics, handed out with the next sample
        self.sent = self.fetches = 0
        self.threads = [threading.Thread(target=self._produce), threading.Thread(target=self._consume)]
        for t in self.threads:
            t.start()

    def _produce(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            due = (time.monotonic() - start) * self.rate
            while self.sent < due:
                partition = int(time.monotonic() * 1000 / self.window_ms) % PARTITIONS
                self.producers[self.sent % 2].produce(self.topic, VALUE, b"k", partition)
                self.sent += 1
            for p in self.producers:
                p.poll(0)
            time.sleep(0.002)
        for p in self.producers:
            p.flush(10)

    def _on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        for b in stats["brokers"].values():
            if b["nodeid"] >= 0:
                n = b["req"].get("Fetch", 0)
                self.lines.append(
                    f"    consumer: {n - self.fetches} Fetch requests in 5 s, round trip avg "
                    f"{b['rtt']['avg'] / 1000:.1f} ms, p99 {b['rtt']['p99'] / 1000:.1f} ms; "
                    f"{stats['rxmsgs']:,} messages received"
                )
                self.fetches = n

    def _consume(self) -> None:
        self.tail.wait()
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": self.topic, "auto.offset.reset": "earliest",
             "session.timeout.ms": 6000, "fetch.wait.max.ms": 100, "statistics.interval.ms": 5000,
             "stats_cb": self._on_stats, **self.consumer_config}
        )  # fmt: skip
        consumer.subscribe([self.topic])
        while not self.stop.is_set():
            consumer.consume(1000, 0.1)
        consumer.close()

    def close(self) -> None:
        self.stop.set()
        self.tail.set()
        for t in self.threads:
            t.join()
        # Freed before the broker stops, or librdkafka reconnects to it until the collector runs.
        self.producers.clear()


def probe(
    rate: float,
    window_ms: float,
    produce_only_s: float,
    seconds: float,
    min_bytes: int,
    consumer_config: dict | None = None,
) -> Iterator[str]:
    """Lines of the report, one per 5 s sample and one per consumer statistics report."""
    with tansu() as bootstrap:
        broker = _tansu_process(bootstrap)
        topic = f"probe-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
        del admin
        load = _Load(
            bootstrap, topic, rate, window_ms, {"fetch.min.bytes": min_bytes, **(consumer_config or {})}
        )
        try:
            broker.cpu_percent()
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                time.sleep(5)
                if elapsed >= produce_only_s:
                    load.tail.set()
                phase = "produce + tail" if load.tail.is_set() else "produce only"
                yield from load.lines
                load.lines.clear()
                yield (
                    f"{time.monotonic() - start:5.0f} s  {phase:14s}  Tansu {broker.cpu_percent():5.1f} % of a core, "
                    f"RSS {broker.memory_info().rss >> 20} MiB, {load.sent:,} messages sent"
                )
        finally:
            load.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3000, help="messages per second")
    parser.add_argument("--window", type=float, default=20, help="ms per partition, rotating")
    parser.add_argument("--produce-only", type=float, default=60, help="seconds before the consumer starts")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--min-bytes", type=int, default=1, help="the consumer's fetch.min.bytes")
    parser.add_argument("--set", action="append", default=[], help="another consumer setting, NAME=INT")
    args = parser.parse_args()
    extra = {k: int(v) for k, _, v in (s.partition("=") for s in args.set)}
    print(
        f"== Tansu (bare, in memory): {args.rate:,.0f} messages/s from 2 producers, window {args.window:g} ms over "
        f"{PARTITIONS} partitions; a consumer tails from {args.produce_only:g} s (fetch.wait.max.ms 100, "
        f"fetch.min.bytes {args.min_bytes}{''.join(f', {k} {v}' for k, v in extra.items())}) ==",
        flush=True,
    )
    for line in probe(args.rate, args.window, args.produce_only, args.seconds, args.min_bytes, extra):
        print(line, flush=True)


if __name__ == "__main__":
    main()
