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
    # Start-up objects live for the whole process: keep them out of the GC's generations.
    gc.collect()
    gc.freeze()
    # Batches hold tens of thousands of short-lived acyclic objects: fewer young-generation passes.
    gc.set_threshold(50_000, 20, 20)
    while True:
        app = build_app(settings)
        try:
            app.run()
            return  # stopped by SIGINT/SIGTERM
        except Exception:
            # A crash must not take the other services down with it (honcho stops all when one exits).
            log.exception("landing worker failed; restarting in 2s")
            time.sleep(2)


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
