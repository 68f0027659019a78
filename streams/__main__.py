"""`python -m streams`: one landing worker process. Run several with the same consumer group to scale out.

With an overflow topic (kafka.topic_overflow) each worker starts a second process beside itself,
`python -m streams --overflow`, which lands that topic in its own consumer group: a hot project's events then
never share a process, a consumer thread or a checkpoint with a quiet one's
(docs/benchmarks/2026-12-07-hot-landing-process-skew-medium.md). Started here rather than by each launcher
(`pulseops up`, the benchmarks, the tests), so that whatever runs a worker runs both.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from prometheus_client import start_http_server

from pulseops.lifetime import preexec_die_with_parent
from pulseops.logs import configure as configure_logging
from pulseops.settings import get_settings
from pulseops.topics import ensure_topics
from streams import fence
from streams.app import build_app
from streams.fence import BrokerWatch

log = logging.getLogger("streams")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__)
    parser.add_argument("--index", type=int, default=int(os.environ.get("PULSEOPS_WORKER_INDEX", "0")))
    parser.add_argument(
        "--overflow", action="store_true", help="land the overflow topic (kafka.topic_overflow)"
    )
    args = parser.parse_args(argv)
    settings = topics = get_settings()
    if args.overflow:
        if not settings.kafka.topic_overflow:
            parser.error("--overflow needs PULSEOPS_KAFKA__TOPIC_OVERFLOW")
        settings = settings.model_copy(update={"kafka": settings.kafka.overflow_view()})
        fence.EXIT_TO_RESTART = OverflowLander.REPLACED
        configure_logging(f"streams-overflow-{args.index}", settings.log)
        base = settings.streams.overflow_metrics_port
    else:
        configure_logging(f"streams-{args.index}", settings.log)
        base = settings.streams.metrics_port
    port = base + args.index if base > 0 else 0
    if port > 0:
        start_http_server(port, addr="127.0.0.1")
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
    overflow = None if args.overflow or not settings.kafka.topic_overflow else OverflowLander(args.index)
    try:
        _run(settings, topics)
    finally:
        if overflow is not None:
            overflow.stop()


def _run(settings, topics) -> None:
    """`topics`: the settings the topics are created with (the lander's own view of them names its topic raw)."""
    _wait_for_broker(topics)
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


class OverflowLander:
    """`python -m streams --overflow` beside this worker, for as long as it lives.

    Stopped with this process: when it returns, before it replaces itself (streams/fence.py), and by the kernel
    if it dies (PR_SET_PDEATHSIG, pulseops/lifetime.py). A lander that exits by itself (killed, out of memory)
    is started again after RESTART_S by a thread that waits on it.

    Stopped by SIGKILL, not SIGTERM: a graceful stop leaves the group, and the embedded Tansu keeps a member
    that left while its JoinGroup was still pending, after which the group never completes a rebalance. Seen in
    tests/streams/test_pipeline.py: a worker SIGKILLed 1.7 s after its start took its lander down mid-join (by
    SIGTERM then), and the next lander's SyncGroup failed with "rebalance in progress" for 2 minutes; a member
    that just vanishes expires after the group's session timeout instead. Nothing is lost either way: offsets
    move only after PostgreSQL committed, and the ledger lands a re-read event once (streams/sink.py)."""

    RESTART_S = 2.0
    REPLACED = (
        75  # its exit code after a broker change (streams/fence.py EXIT_TO_RESTART): started again at once
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.proc = self._start()
        fence.BEFORE_RESTART.append(self.stop)
        threading.Thread(target=self._watch, name="overflow-lander", daemon=True).start()

    def _start(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "streams", "--overflow", "--index", str(self.index)]
        # Its own process group: a group-wide SIGTERM (supervisord's stopasgroup, Ctrl-C) would make it leave
        # its consumer group gracefully, which is what SIGKILL avoids (above); its worker stops it instead.
        return subprocess.Popen(  # noqa: S603 - our own module
            cmd, preexec_fn=preexec_die_with_parent(signal.SIGKILL), process_group=0
        )

    def _watch(self) -> None:
        while not self._stopping.is_set():
            code = self.proc.wait()
            if self._stopping.is_set():
                return
            if code == self.REPLACED:
                log.info("overflow lander replaced itself after a broker change; starting it again")
                delay = 0.0
            else:
                log.error("overflow lander exited with %s; starting it again in %gs", code, self.RESTART_S)
                delay = self.RESTART_S
            while not self._stopping.wait(delay):
                with self._lock:
                    if self._stopping.is_set():
                        return
                    try:
                        self.proc = self._start()
                        break
                    except OSError as exc:  # fork failed (EAGAIN, ENOMEM): keep trying, the hot topic waits
                        delay = min(30.0, max(delay, self.RESTART_S) * 2)
                        log.error("overflow lander could not start (%s); retrying in %gs", exc, delay)

    def stop(self, timeout: float = 20.0) -> None:
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        with contextlib.suppress(ValueError):
            fence.BEFORE_RESTART.remove(self.stop)


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
