"""Schemathesis against the running ingest service's own OpenAPI document (issue 8).

A real uvicorn process (tests.fixtures.system) on the session PostgreSQL, Redis and broker; the schema is
what that process serves at `/openapi.json`. Every documented operation gets property-based requests with a
valid ingest key — schema-valid bodies and deliberately invalid ones — and each answer must be: no 5xx, a
documented status code, a documented content type, a body matching the documented schema, and every invalid
request refused with a 4xx. The example budget is bounded (a few seconds per operation).
"""

from __future__ import annotations

import copy
import gzip
import json
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.utils.tenants import make_tenant, new_event
from warehouse.tenants import create_api_key, revoke_api_key

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
# examples per (operation, mode): ingest endpoints get the budget, operations without input a token few
EXAMPLES = {"POST /v1/events": 60, "POST /v1/batch": 40}
OTHER_EXAMPLES = 5


@pytest.fixture
def served(system_factory, db):
    """(base URL, tenant, raw OpenAPI document) of a real ingest process."""
    system = system_factory()
    system.start_ingest()
    tenant = make_tenant(db)
    doc = httpx.get(f"{system.url}/openapi.json", timeout=10).json()
    return system.url, tenant, doc


def with_typed_batch_items(doc: dict) -> dict:
    """The served document leaves batch items untyped (each is validated on its own, and a batch with some
    invalid items is answered 202 listing them): for *positive* generation, type them as IngestEvent so the
    fuzz reaches the accepting path of /v1/batch too."""
    doc = copy.deepcopy(doc)
    doc["components"]["schemas"]["IngestBatch"]["properties"]["batch"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/IngestEvent"},
        "minItems": 1,
        "maxItems": 5,
    }
    return doc


def test_every_documented_operation_conforms_under_fuzzing(served) -> None:
    url, tenant, doc = served
    key = tenant["ingest_key"]
    schema = schemathesis.openapi.from_dict(doc)
    typed = schemathesis.openapi.from_dict(with_typed_batch_items(doc))
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/events", "POST /v1/batch", "GET /readyz", "GET /metrics"} <= labels, labels
    statuses: Counter[tuple[str, int]] = Counter()
    for op in operations:
        n = EXAMPLES.get(op.label, OTHER_EXAMPLES)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not op.body:
                continue  # nothing to make invalid
            source = typed[op.path][op.method] if mode is GenerationMode.POSITIVE else op

            @settings(
                max_examples=n,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=source.as_strategy(generation_mode=mode, headers={"X-API-Key": key}))
            def run(case) -> None:
                response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)
                statuses[(case.operation.label, response.status_code)] += 1

            run()
    # the fuzz must have reached the accepting path and the validating path of both ingest endpoints
    for label in ("POST /v1/events", "POST /v1/batch"):
        assert statuses[(label, 202)] > 0, statuses
        assert statuses[(label, 422)] > 0, statuses


def test_documented_error_paths_conform(served, db) -> None:
    """The answers a generator rarely reaches (auth, encodings, sizes, rate limit) are documented too."""
    url, tenant, doc = served
    schema = schemathesis.openapi.from_dict(doc)
    events, batch = schema["/v1/events"]["POST"], schema["/v1/batch"]["POST"]
    revoked_id, revoked = create_api_key(
        db, org_id=tenant["org_id"], project_id=tenant["project_id"], kind="ingest"
    )
    revoke_api_key(db, revoked_id)
    _, slow = create_api_key(
        db, org_id=tenant["org_id"], project_id=tenant["project_id"], kind="ingest", rate_per_s=0.01, burst=1
    )
    key = tenant["ingest_key"]
    one = json.dumps(new_event()).encode()
    json_type = {"Content-Type": "application/json"}
    requests = [  # (operation, headers, body, expected status)
        (events, {}, one, 401),
        (events, {"X-API-Key": "po_ingest_" + "x" * 32}, one, 401),
        (events, {"X-API-Key": revoked}, one, 401),
        (events, {"X-API-Key": tenant["read_key"]}, one, 403),
        (
            events,
            {"Authorization": "Bearer " + key},
            one,
            401,
        ),  # ingest reads X-API-Key only (docs/ingest.md)
        (events, {"X-API-Key": key, "Content-Encoding": "br"}, one, 415),
        (events, {"X-API-Key": key, "Content-Encoding": "gzip"}, b"not gzip at all", 400),
        (events, {"X-API-Key": key, "Content-Encoding": "gzip"}, gzip.compress(one)[:-6], 400),
        (events, {"X-API-Key": key}, b"{" + b" " * (1024 * 1024 + 10) + b"}", 413),
        (events, {"X-API-Key": key, "Content-Encoding": "gzip"}, gzip.compress(b" " * 3 * 1024 * 1024), 413),
        (events, {"X-API-Key": key}, b'{"event": ', 422),
        (events, {"X-API-Key": key}, b"[]", 422),
        (batch, {"X-API-Key": key}, json.dumps({"batch": [new_event()] * 1001}).encode(), 413),
        (batch, {"X-API-Key": key}, json.dumps({"batch": []}).encode(), 422),
        (batch, {"X-API-Key": key}, json.dumps({"batch": [{"event": 1}]}).encode(), 422),
        (events, {"X-API-Key": slow}, one, 202),
        (events, {"X-API-Key": slow}, one, 429),
    ]
    checks = [c for c in CHECKS if c is not negative_data_rejection]
    with httpx.Client(base_url=url, timeout=30) as client:
        for op, headers, body, expected in requests:
            response = client.post(op.path, content=body, headers={**json_type, **headers})
            assert response.status_code == expected, (headers, body[:80], response.text)
            op.Case(headers=headers, body=json.loads(one)).validate_response(response, checks=checks)
            if expected in (429, 503):
                assert response.headers.get("Retry-After", "").isdigit(), response.headers
