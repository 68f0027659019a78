"""Replaying generated events against ingest's ``POST /v1/batch``, retrying the same events on 429/5xx."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from pulseops.generator.model import GeneratedEvent

# Retried: throttling/unavailable plus gateway errors; event_ids make re-sending the same body safe.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class SendReport:
    """Outcome of ``send_http``; ``http_errors`` counts every non-2xx response, retried or not."""

    batches: int = 0
    batches_ok: int = 0
    batches_failed: int = 0
    events_sent: int = 0
    events_failed: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    http_errors: int = 0
    connection_errors: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    rejected_samples: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def events_per_second(self) -> float:
        """Events in successfully posted batches per wall-clock second."""
        return self.events_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def _error(self, msg: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(msg)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter for failures that carry no Retry-After."""
    return random.uniform(0, min(5.0, 0.1 * 2**attempt))  # noqa: S311 - retry jitter, not a secret


async def _post_batch(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    payloads: list[dict[str, Any]],
    report: SendReport,
    max_retry_seconds: float,
) -> None:
    """POST one batch, retrying the identical events until accepted, refused, or out of time budget.

    ``sent_at`` is refreshed on every attempt: ingest shifts event times by (receive time - sent_at) to
    undo client clock skew, so a stale sent_at on a retry would move events by the retry delay (and
    across UTC day boundaries, breaking the ground truth). Idempotency comes from the event_ids.
    """
    loop = asyncio.get_running_loop()
    batch_json = orjson.dumps(payloads)
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    deadline = loop.time() + max_retry_seconds
    attempt = 0
    while True:
        try:
            sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
            body = b'{"batch":' + batch_json + b',"sent_at":"' + sent_at + b'"}'
            resp = await client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            report.connection_errors += 1
            delay = _backoff(attempt)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            status = resp.status_code
            report.status_counts[status] = report.status_counts.get(status, 0) + 1
            if 200 <= status < 300:
                try:
                    doc = resp.json()
                except ValueError:
                    doc = None
                doc = doc if isinstance(doc, dict) else {}
                rejected = doc.get("rejected")
                rejected = rejected if isinstance(rejected, list) else []
                accepted = doc.get("accepted")
                report.accepted += accepted if isinstance(accepted, int) else len(payloads) - len(rejected)
                report.rejected += len(rejected)
                room = 20 - len(report.rejected_samples)
                if room > 0:
                    report.rejected_samples.extend(rejected[:room])
                report.batches_ok += 1
                report.events_sent += len(payloads)
                return
            report.http_errors += 1
            reason = f"HTTP {status}: {resp.text[:200]}"
            if status not in _RETRY_STATUSES:
                break
            ra = _retry_after(resp.headers.get("Retry-After"))
            delay = ra if ra is not None else _backoff(attempt)
        attempt += 1
        if loop.time() + delay > deadline:
            reason = f"gave up after {attempt} attempts: {reason}"
            break
        report.retries += 1
        await asyncio.sleep(delay)
    report.batches_failed += 1
    report.events_failed += len(payloads)
    report._error(reason)


async def send_http(
    events: Iterable[GeneratedEvent],
    base_url: str,
    keys: dict[str, str],
    batch_size: int = 500,
    concurrency: int = 8,
    client: httpx.AsyncClient | None = None,
    *,
    max_retry_seconds: float = 60.0,
) -> SendReport:
    """Replay ``events`` against ``POST {base_url}/v1/batch``, one API key per tenant.

    Events are grouped per tenant into batches of ``batch_size`` in stream order; batches are dispatched
    FIFO to ``concurrency`` workers (so with concurrency > 1 consecutive batches of a tenant may land out
    of order; use 1 for strict ordering). 429/502/503/504 and connection errors are retried with the same
    events (only ``sent_at`` is refreshed), honouring ``Retry-After``, for at most ``max_retry_seconds``
    per batch; other non-2xx responses fail the batch. Raises KeyError for a tenant missing from ``keys``.
    """
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be >= 1")
    url = base_url.rstrip("/") + "/v1/batch"
    report = SendReport()
    own_client = client is None
    if client is None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits)
    http = client
    queue: asyncio.Queue[tuple[str, list[dict[str, Any]]] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            tenant, payloads = item
            try:
                await _post_batch(http, url, keys[tenant], payloads, report, max_retry_seconds)
            except Exception as exc:  # keep the pool alive: one bad batch must not stall the replay
                report.batches_failed += 1
                report.events_failed += len(payloads)
                report._error(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        buffers: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            buf = buffers.get(ev.tenant)
            if buf is None:
                if ev.tenant not in keys:
                    raise KeyError(f"no API key for tenant {ev.tenant!r}")
                buf = buffers[ev.tenant] = []
            buf.append(ev.payload)
            if len(buf) >= batch_size:
                report.batches += 1
                await queue.put((ev.tenant, buf))
                buffers[ev.tenant] = []
        for tenant, buf in buffers.items():
            if buf:
                report.batches += 1
                await queue.put((tenant, buf))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if own_client:
            await http.aclose()
        report.elapsed_s = time.perf_counter() - started
    return report


def send_http_sync(
    events: Iterable[GeneratedEvent],
    base_url: str,
    keys: dict[str, str],
    batch_size: int = 500,
    concurrency: int = 8,
    *,
    max_retry_seconds: float = 60.0,
) -> SendReport:
    """Blocking wrapper around ``send_http`` for scripts without an event loop."""
    return asyncio.run(
        send_http(events, base_url, keys, batch_size, concurrency, max_retry_seconds=max_retry_seconds)
    )
