"""The API documentation works offline: nothing is loaded from a CDN."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from tests.fixtures.system import make_settings


def test_swagger_ui_is_served_from_the_installed_package(database_url, broker, redis_url):
    with TestClient(create_app(make_settings(database_url, broker, redis_url))) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        assert "/static/swagger-ui/swagger-ui-bundle.js" in page.text
        js = client.get("/static/swagger-ui/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
        assert client.get("/static/swagger-ui/swagger-ui.css").status_code == 200
