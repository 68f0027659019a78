"""`python -m streams`: one landing worker process. Run several with the same consumer group to scale out."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import time

from prometheus_client import start_http_server

from pulseops.logs import configure as configure_logging
from pulseops.settings import get_settings
from pulseops.topics import ensure_topics
from streams.app import build_app
from streams.fence import BrokerWatch

log = logging.getLogger("streams")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__)
    parser.add_argument("--index", type=int, default=int(os.environ.get("PULSEOPS_WORKER_INDEX", "0")))
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(f"streams-{args.index}", settings.log)
    port = settings.streams.metrics_port + args.index
    if port > 0:
        start_http_server(port, addr="127.0.0.1")
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
    _wait_for_broker(settings)
    # Replaces this process as soon as the broker it started on goes away, before librdkafka can meet the
    # broker that replaces it (streams/fence.py: a SIGSEGV in librdkafka otherwise).
    BrokerWatch(settings.kafka.servers).start()
    tune_gc()
    while True:
        app = build_app(settings)
        try:
            app.run()
            return  # stopped by SIGINT/SIGTERM
        except Exception:
            # A crash must not take the other services down with it (honcho stops all when one exits).
            log.exception("landing worker failed; restarting in 2s")
            time.sleep(2)


# Young-generation threshold of the worker's cyclic GC. CPython counts tracked objects allocated minus freed,
# so a collection runs only once this many more are alive than at the last one. A landing chunk keeps ~5
# tracked objects per event alive until it commits (3 uuid.UUIDs, the row tuple, its dedup key: streams/sink.py)
# and up to LANDERS + 1 chunks of PIPELINE_ROWS are alive at once, ~300k objects. At 50,000 the GC walked those
# live rows ~25 times per 400k events and took 7.6 % of the worker's busy py-spy samples, all on the main
# thread while it holds the GIL (one-worker catch-up, 400k packed events); with 1,000,000 none ran during the
# drain: main thread 3.31 / 3.49 -> 2.63 / 2.57 us of CPU per landed row, whole worker 9.39 / 9.53 ->
# 9.21 / 9.12 us, peak RSS unchanged (203-223 MB). Cycles still get collected, after 1M more live objects.
GC_YOUNG_THRESHOLD = 1_000_000


def tune_gc() -> None:
    """Freeze start-up objects and set the thresholds above (tests/streams/test_gc.py checks the headroom)."""
    # Start-up objects live for the whole process: keep them out of the GC's generations.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def _wait_for_broker(settings) -> None:
    delay = 0.5
    while True:
        try:
            ensure_topics(settings.kafka, timeout=5.0)
            return
        except Exception as exc:
            log.warning("waiting for broker at %s: %s", settings.kafka.servers, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5)


if __name__ == "__main__":
    main()
