"""posthog-js (npm, dashboards/package.json devDependencies) in headless Chromium on a small local page,
pointed at PulseOps by its `api_host` only: page views and custom events land exactly once, and the SDK
logs no console error.

The page and posthog-js's self-contained bundle (array.full.no-external.js: it never loads a script from
anywhere) are served by a local HTTP server on another port, so the SDK talks to the API cross-origin, as
on a real site. A real API process (uvicorn), landing worker and the session database and broker.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from benchmarks import dashboard as bench
from benchmarks.harness import free_port
from tests.fixtures.system import wait_until
from tests.utils.tenants import make_tenant
from tests.utils.tools import require, skip_unless_installed

ROOT = Path(__file__).resolve().parents[2]
POSTHOG_JS = ROOT / "dashboards" / "node_modules" / "posthog-js" / "dist" / "array.full.no-external.js"
CHROMIUM = bench.chromium_path()
pytestmark = [
    pytest.mark.browser,
    skip_unless_installed(CHROMIUM is None, "Debian's chromium"),
    skip_unless_installed(not POSTHOG_JS.exists(), "posthog-js (npm ci --prefix dashboards)"),
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title><link rel="icon" href="data:,">
<script src="/posthog.js"></script>
<script>
  window.__sent = [];
  posthog.init(%(key)r, {
    api_host: %(api)r,
    person_profiles: 'always',
    autocapture: false,
    opt_out_useragent_filter: true,  // posthog-js drops events of browsers it takes for bots: headless ones
    before_send: function (ev) {  // what the SDK sends, kept across the page's unload
      window.__sent.push([ev.uuid, ev.event]);
      localStorage.setItem('sent', JSON.stringify(window.__sent));
      return ev;
    },
  });
</script></head>
<body><h1>shop</h1></body></html>
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A local web server: `/` the test page (written per test), `/posthog.js` the npm bundle."""
    (tmp_path / "posthog.js").write_bytes(POSTHOG_JS.read_bytes())
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", tmp_path
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _landed(database_url: str, project_id) -> Counter:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id::text, event_name FROM events WHERE project_id = %s", (project_id,)
        ).fetchall()
    return Counter((event_id, name) for event_id, name in rows)


def test_posthog_js_page_views_and_custom_events_land_exactly_once(
    system_factory, db, database_url, site
) -> None:
    from playwright.sync_api import sync_playwright

    require(CHROMIUM is None, "Debian's chromium")
    require(not POSTHOG_JS.exists(), "posthog-js (npm ci --prefix dashboards)")
    url, root = site
    tenant = make_tenant(db, "web", "shop")
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    (root / "index.html").write_text(PAGE % {"key": tenant["ingest_key"], "api": system.url})
    (root / "blank.html").write_text('<!doctype html><link rel="icon" href="data:,"><p>bye</p>')

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda r: errors.append(f"{r.url} {r.failure}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{url}/")
        page.wait_for_function("window.posthog && window.posthog.__loaded")
        page.evaluate("""() => {
            for (let i = 0; i < 25; i++) posthog.capture('added_to_cart', {item: 'sku-' + i, n: i});
            posthog.identify('customer-7', {email: 'c7@example.com'});
            posthog.capture('checkout', {total: 42});
            posthog.capture('$pageview', {$current_url: location.href + '#/thanks'});
        }""")
        # $pageview, 25 + 1 custom events, $identify, a second $pageview: 29
        page.wait_for_function("window.__sent.length >= 29", timeout=10_000)
        sent = Counter(tuple(x) for x in page.evaluate("window.__sent"))
        assert sum(sent.values()) == 29, Counter(n for _, n in sent)
        wait_until(
            lambda: _landed(database_url, tenant["project_id"]) == sent, 60, "every captured event landed"
        )
        # One more, and the SDK's $pageleave, sent by its page-unload beacon when the page goes away.
        page.evaluate("posthog.capture('left_page')")
        page.goto(f"{url}/blank.html")  # same origin, without posthog-js: its localStorage is readable
        sent = Counter(tuple(x) for x in page.evaluate("JSON.parse(localStorage.getItem('sent'))"))
        wait_until(
            lambda: _landed(database_url, tenant["project_id"]) == sent, 60, "the unload events landed"
        )
        browser.close()
    time.sleep(1)  # a late duplicate would show up here
    landed = _landed(database_url, tenant["project_id"])
    assert landed == sent and max(landed.values()) == 1
    names = Counter(name for _, name in landed)
    assert names["$pageview"] == 2 and names["added_to_cart"] == 25 and names["checkout"] == 1
    assert names["$identify"] == 1 and names["left_page"] == 1 and names["$pageleave"] == 1
    assert not errors, errors
    assert any(r.startswith(f"{system.url}/e/") for r in requests), requests
    assert all(r.startswith(("http://127.0.0.1:", "data:")) for r in requests), "a request left the machine"
