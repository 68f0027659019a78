"""Liveness, readiness (broker and database reachable) and Prometheus metrics."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api import metrics
from warehouse.db import ping
from warehouse.runs import failure_counts

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="health-live", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="health-ready",
    summary="Broker and database reachable",
    responses={503: {"description": "A dependency is down; `checks` says which."}},
)
async def readyz(request: Request) -> Response:
    state = request.app.state
    broker = await run_in_threadpool(state.publisher.check_ready)
    database = await run_in_threadpool(_db_ok, state.pool)
    body = {
        "status": "ok" if broker and database else "unavailable",
        "checks": {
            "broker": "ok" if broker else "down",
            "database": "ok" if database else "down",
            "rate_limiter": "redis" if await state.rate_limiter.redis_reachable() else "fallback",
        },
    }
    return Response(
        msgspec.json.encode(body), 200 if broker and database else 503, media_type="application/json"
    )


def _db_ok(pool) -> bool:
    try:
        with pool.connection(timeout=2) as conn:
            ping(conn)
        return True
    except Exception:
        return False


@router.get("/metrics", operation_id="health-metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics(request: Request) -> Response:
    data, content_type = metrics.render()
    data += await run_in_threadpool(_run_failures, request.app.state.pool)
    return Response(data, media_type=content_type)


def _run_failures(pool) -> bytes:
    """Days the orchestration sensors keep failing to rebuild or export (warehouse/runs.py), read at scrape
    time: retrying (backing off) and given up (until new data)."""
    try:
        with pool.connection(timeout=2) as conn:
            rows = {job: (retrying, given_up) for job, retrying, given_up in failure_counts(conn)}
    except Exception:
        return b""
    lines = [
        "# HELP pulseops_orchestration_failing_days Days whose rebuild or export runs keep failing, by job and state.",
        "# TYPE pulseops_orchestration_failing_days gauge",
    ]
    for job in sorted({"aggregates", "cold_export", *rows}):
        retrying, given_up = rows.get(job, (0, 0))
        lines.append(f'pulseops_orchestration_failing_days{{job="{job}",state="retrying"}} {retrying}')
        lines.append(f'pulseops_orchestration_failing_days{{job="{job}",state="given_up"}} {given_up}')
    return ("\n".join(lines) + "\n").encode()
