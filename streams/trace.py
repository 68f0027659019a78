"""Per-transaction timing of the landing worker, for diagnosis: off unless `STREAMS_TRACE_FILE` names a file.

Why: 202 -> visible is a chain of waits (broker fetch, checkpoint, landing transaction, read), and only the
worker sees the middle of it. With the variable set, each landing transaction appends one JSON line: when its
messages were added (wall clock), their Kafka CreateTime (set by ingest's producer just before the 202), when
the chunk was handed over, when its transaction started and when it committed. benchmarks/freshness.py sets
it with `--trace` and splits its probes' 202 -> landed with it. Unset, the worker pays one attribute test per
message.
"""

from __future__ import annotations

import os
import threading
import time

import orjson

PATH = os.environ.get("STREAMS_TRACE_FILE") or None
_lock = threading.Lock()


def enabled() -> bool:
    return PATH is not None


def write(record: dict) -> None:
    """Append one record (a landing thread's, so under a lock)."""
    if PATH is None:
        return
    line = orjson.dumps(record) + b"\n"
    with _lock, open(PATH, "ab") as f:
        f.write(line)


def now() -> float:
    return time.time()
