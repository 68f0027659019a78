"""Prometheus metrics of the API process(es).

Under several uvicorn workers, `pulseops up` sets PROMETHEUS_MULTIPROC_DIR and /metrics aggregates all of
them with prometheus-client's multiprocess collector.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("pulseops_http_requests_total", "HTTP requests by route and status.", ["route", "status"])
EVENTS_ACCEPTED = Counter("pulseops_ingest_events_accepted_total", "Events acknowledged by the broker (202).")
EVENTS_REJECTED = Counter(
    "pulseops_ingest_events_rejected_total", "Events refused at ingest, by reason.", ["reason"]
)
BROKER_PRESSURE = Counter(
    "pulseops_ingest_broker_pressure_total",
    "Requests answered 503 while the embedded broker frees memory (pulseops/pressure.py).",
)
HOT_EVENTS = Counter(
    "pulseops_ingest_hot_events_total",
    "Accepted events of hot projects, routed to the raw topic's reserved partitions (api/ingest/hot.py).",
)
PRODUCE_SECONDS = Histogram(
    "pulseops_ingest_produce_seconds",
    "Time from handing a request's events to the producer until the broker acknowledged all of them.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

WS_DISCONNECTS = Counter(
    "pulseops_graphql_ws_disconnects_total",
    "GraphQL WebSocket clients that went away while subscriptions streamed (a closed page): ended quietly.",
)

SPOOL_BYTES = Gauge(
    "pulseops_ingest_spool_bytes", "Bytes of journaled, not yet landed requests on this host.",
    multiprocess_mode="max",
)  # fmt: skip
SPOOL_REPLAYED = Counter(
    "pulseops_ingest_spool_replayed_events_total",
    "Acknowledged events published again because the broker lost them before they landed.",
)
SPOOL_STUCK = Counter(
    "pulseops_ingest_spool_stuck_segments_total",
    "Spool segments set aside after max_replays publications without landing (see <spool dir>/stuck).",
)
SPOOL_PRUNED = Counter(
    "pulseops_ingest_spool_pruned_segments_total", "Spool segments fully landed and deleted."
)

# Rejection reasons become label values: bounded to the schema's fields so a client cannot blow up cardinality.
KNOWN_FIELDS = frozenset({"event", "distinct_id", "timestamp", "event_id", "properties", "sent_at", "body"})


def rejected(field: str) -> None:
    head = field.split(".", 1)[0]
    EVENTS_REJECTED.labels(reason=head if head in KNOWN_FIELDS else "schema").inc()


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class RequestMetricsMiddleware:
    """Counts responses by route template and status. Pure ASGI: BaseHTTPMiddleware costs ~30 % on tiny POSTs."""

    def __init__(self, app, known_paths: set[str]) -> None:
        self.app = app
        self.known_paths = known_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.known_paths else "other"

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                REQUESTS.labels(route=route, status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, send_wrapper)
