"""The dashboard server without a browser: offline assets (no CDN anywhere), caching, the relay's errors."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.harness import free_port
from dashboards.app import PLOTLY_PATH, STATIC, create_app
from pulseops.settings import Settings


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    dead_api = f"http://127.0.0.1:{free_port()}"
    with TestClient(create_app(Settings(dashboard={"api_url": dead_api}))) as c:
        yield c


def test_no_file_loads_anything_from_another_origin() -> None:
    remote = re.compile(
        r"""(src|href)\s*=\s*["']?(https?:)?//|import\s*\(?\s*["'](https?:)?//|url\(\s*["']?(https?:)?//"""
    )
    for path in Path(STATIC).rglob("*"):
        if path.is_file():
            assert not remote.search(path.read_text()), path


def test_page_carries_a_same_origin_csp_and_the_versioned_plotly(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert f'content="{PLOTLY_PATH}"' in r.text and "__PLOTLY__" not in r.text


def test_plotly_is_served_gzipped_cached_for_good_and_revalidated(client: TestClient) -> None:
    r = client.get(PLOTLY_PATH, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "immutable" in r.headers["cache-control"]
    assert len(r.content) > 300_000 and b"plotly" in r.content[:2000]  # TestClient decodes gzip
    assert client.get(PLOTLY_PATH, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    raw = client.get("/static/app.css", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.headers["cache-control"] == "no-cache"
    assert gzip.decompress(gzip.compress(raw.content)) == raw.content


def test_static_files_cannot_escape_their_folder(client: TestClient) -> None:
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/app.py").status_code == 404
    assert client.get("/static/nope.js").status_code == 404


def test_config_lists_the_zones_the_api_accepts(client: TestClient) -> None:
    config = client.get("/config.json").json()
    assert {"UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe"} <= set(config["zones"])
    assert config["plotly"] == PLOTLY_PATH


def test_relay_says_when_the_api_is_down_and_refuses_huge_bodies(client: TestClient) -> None:
    r = client.post("/graphql", json={"query": "{ projects { id } }"}, headers={"X-API-Key": "k"})
    assert r.status_code == 502 and r.json()["error"] == "api_unavailable"
    big = client.post("/graphql", content=b"x" * (300 * 1024), headers={"Content-Type": "application/json"})
    assert big.status_code == 413

    def chunks():  # no Content-Length: the cap applies while streaming
        for _ in range(300):
            yield b"x" * 1024

    streamed = client.post("/graphql", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
