"""The web dashboard end to end in headless Chromium (Debian's `chromium` driven by Playwright): a real API
(uvicorn), landing worker, dashboard server and alert evaluator as processes, over the session database.

Screenshots of every page go to test-output/screenshots/ (not committed).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from alerting.signing import verify
from benchmarks import dashboard as bench
from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from benchmarks.harness import free_port, http_ok, stop_processes, wait_for
from tests.fixtures.postgres import TABLES
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.system import LOG_DIR, System, make_settings, settings_env
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from tests.utils.tools import require, skip_unless_installed
from warehouse.aggregates import rebuild_day
from warehouse.tenants import create_api_key, ensure_project

CHROMIUM = bench.chromium_path()
pytestmark = [pytest.mark.browser, skip_unless_installed(CHROMIUM is None, "Debian's chromium")]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
BROWSER_TZ = "Europe/Berlin"

OVERVIEW = """
query($p: ID!, $from: Date!, $to: Date!, $g: Granularity!, $tz: String) {
  eventCounts(projectId: $p, from: $from, to: $to, granularity: $g, timezone: $tz) {
    total buckets { localDate localTime value }
  }
  dau: activeUsers(projectId: $p, from: $from, to: $to, kind: DAU, timezone: $tz) { days { date value } }
  mau: activeUsers(projectId: $p, from: $from, to: $to, kind: MAU, timezone: $tz) { days { date value } }
  topEvents(projectId: $p, from: $from, to: $to, limit: 10, timezone: $tz) { eventName count }
  totalEvents(projectId: $p, from: $from, to: $to, timezone: $tz)
}"""


class Receiver(http.server.BaseHTTPRequestHandler):
    calls: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@dataclass
class Stack:
    url: str
    api_url: str
    key: str  # org-wide read key: both projects
    ingest_key: str
    web: uuid.UUID
    mobile: uuid.UUID
    hook_url: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def gql(self, query: str, variables: dict) -> dict:
        r = httpx.post(f"{self.api_url}/graphql", json={"query": query, "variables": variables},
                       headers={"X-API-Key": self.key}, timeout=30)  # fmt: skip
        body = r.json()
        assert "errors" not in body, body
        return body["data"]


def _spawn(env: dict[str, str], name: str, *args: str) -> subprocess.Popen:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{name}-{uuid.uuid4().hex[:6]}.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=log, stderr=log)


@pytest.fixture(scope="module")
def stack(database_url: str, broker: str) -> Iterator[Stack]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} CASCADE")
        t = make_tenant(conn, "acme", "web")
        mobile = ensure_project(conn, t["org_id"], "mobile")  # stays empty: the empty state
        _, org_key = create_api_key(conn, org_id=t["org_id"], project_id=None, kind="read", name="dashboard")
        config = GeneratorConfig(
            seed=11, end=END, days=14, total_events=5_000, late_ratio=0.0, duplicate_ratio=0.0,
            tenants=[TenantSpec("hot", 1.0, 300)],
        )  # fmt: skip
        rows = landing_rows(generate(config), {"hot": (t["org_id"], t["project_id"])}, received_at=END)
        land_rows(conn, rows)
        for day in sorted({r[1].date() for r in rows})[:-3]:
            rebuild_day(conn, day, run_id=f"run-{day.isoformat()}")
        conn.execute(
            "INSERT INTO dead_letters (reason, detail, org_id, project_id, payload, payload_sha256, source_topic, "
            "source_partition, source_offset) VALUES ('invalid_json', 'unexpected end', %s, %s, %s, 'h', 'events-raw', 0, 7)",
            (t["org_id"], t["project_id"], b'{"event": "signup", "distinct_id": '),
        )
    Receiver.calls = []
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()

    settings = make_settings(database_url, broker, REDIS_URL)
    system = System(settings)
    system.start_ingest()
    system.start_worker()
    port = free_port()
    env = {
        **settings_env(settings),
        "PULSEOPS_DASHBOARD__PORT": str(port),
        "PULSEOPS_DASHBOARD__API_URL": system.url,
        "PULSEOPS_DASHBOARD__DAGSTER_URL": "http://127.0.0.1:3999",
        "PULSEOPS_ALERTS__INTERVAL_S": "1",
        "PULSEOPS_ALERTS__TICK_S": "0.2",
        "PULSEOPS_ALERTS__ALLOW_PRIVATE_TARGETS": "true",  # the test's webhook receiver listens on 127.0.0.1
    }
    procs = [_spawn(env, "dashboard", "-m", "dashboards"), _spawn(env, "alerts", "-m", "alerting")]
    s = Stack(f"http://127.0.0.1:{port}", system.url, org_key, t["ingest_key"], t["project_id"], mobile,
              f"http://127.0.0.1:{hook.server_port}/hook", procs)  # fmt: skip
    try:
        wait_for(lambda: http_ok(f"{s.url}/healthz"), 30, "dashboard /healthz")
        yield s
    finally:
        stop_processes(procs)
        system.stop()
        hook.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    require(CHROMIUM is None, "Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, stack: Stack) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id=BROWSER_TZ)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The browser logs every 401 as an error; the bad-key sign-in causes one on purpose.
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "status of 401" not in m.text else None,
    )
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, stack: Stack, key: str | None = None) -> None:
    page.goto(stack.url)
    page.get_by_label("Read key").fill(key or stack.key)
    page.get_by_role("button", name="Sign in").click()
    if key is None:
        page.get_by_label("Project").select_option(label="acme/web")


def chart_data(page, name: str) -> list[dict]:
    page.wait_for_function(
        "n => { const c = document.querySelector(`[data-chart=\"${n}\"]`); return c && c.data && c.querySelector('.main-svg'); }",
        arg=name,
    )
    return page.evaluate(
        'n => document.querySelector(`[data-chart="${n}"]`).data.map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)}))',
        name,
    )


def wait_loaded(page, tz: str) -> None:
    page.wait_for_function(
        "tz => document.querySelector('main').dataset.loading === 'false' && document.querySelector('main').dataset.loadedTz === tz",
        arg=tz,
    )


def today_in(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def test_sign_in_overview_charts_equal_graphql(page, stack: Stack) -> None:
    sign_in(page, stack, key="not-a-key")
    page.get_by_role("alert").filter(has_text="unknown or revoked").wait_for()
    shot(page, "signin-bad-key")
    page.get_by_label("Read key").fill(stack.key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Project").select_option(label="acme/web")
    wait_loaded(page, BROWSER_TZ)
    assert page.get_by_label("Time zone").input_value() == BROWSER_TZ  # the browser's zone by default
    assert stack.key not in page.url
    assert page.evaluate("sessionStorage.getItem('pulseops.key')") == stack.key
    shot(page, "overview")

    to = today_in(BROWSER_TZ)
    v = {
        "p": str(stack.web),
        "from": (to - timedelta(days=6)).isoformat(),
        "to": to.isoformat(),
        "g": "DAY",
        "tz": BROWSER_TZ,
    }
    want = stack.gql(OVERVIEW, v)
    assert want["totalEvents"] > 0
    (events,) = chart_data(page, "events")
    assert events["x"] == [f"{b['localDate']} {b['localTime']}" for b in want["eventCounts"]["buckets"]]
    assert events["y"] == [b["value"] for b in want["eventCounts"]["buckets"]]
    assert sum(events["y"]) == want["totalEvents"]
    assert page.get_by_test_id("total-events").inner_text().replace(",", "").replace(".", "") == str(
        want["totalEvents"]
    )
    users = {t["name"]: t for t in chart_data(page, "active-users")}
    assert users["DAU"]["y"] == [d["value"] for d in want["dau"]["days"]]
    assert users["MAU"]["y"] == [d["value"] for d in want["mau"]["days"]]
    (top,) = chart_data(page, "top-events")
    assert list(zip(reversed(top["y"]), reversed(top["x"]), strict=True)) == [
        (t["eventName"], t["count"]) for t in want["topEvents"]
    ]

    page.get_by_label("Project").select_option(label="acme/mobile")  # switcher; the empty project
    page.get_by_text("No events in this range yet").wait_for()
    shot(page, "overview-empty-project")


def test_changing_the_time_zone_moves_the_buckets(page, stack: Stack) -> None:
    sign_in(page, stack)
    wait_loaded(page, BROWSER_TZ)
    page.get_by_label("Date range").select_option("30d")
    plotted = {}
    for tz in ("UTC", "Asia/Kolkata"):
        page.get_by_label("Time zone").select_option(tz)
        wait_loaded(page, tz)
        to = today_in(tz)
        v = {
            "p": str(stack.web),
            "from": (to - timedelta(days=29)).isoformat(),
            "to": to.isoformat(),
            "g": "DAY",
            "tz": tz,
        }
        want = stack.gql(OVERVIEW, v)["eventCounts"]["buckets"]
        (events,) = chart_data(page, "events")
        assert events["y"] == [b["value"] for b in want], tz
        plotted[tz] = dict(zip(events["x"], events["y"], strict=True))
    common = set(plotted["UTC"]) & set(plotted["Asia/Kolkata"])
    assert any(plotted["UTC"][d] != plotted["Asia/Kolkata"][d] for d in common if plotted["UTC"][d])
    page.get_by_label("Granularity").select_option("HOUR")
    wait_loaded(page, "Asia/Kolkata")
    (hourly,) = chart_data(page, "events")
    assert all(x.endswith(":00") for x in hourly["x"])  # local hours, though Kolkata is UTC+05:30
    shot(page, "overview-kolkata-hourly")


def test_custom_metric_with_a_dimension_is_created_and_charted(page, stack: Stack) -> None:
    sign_in(page, stack)
    page.get_by_role("link", name="Metrics").click()
    page.get_by_text("No custom metrics yet").wait_for()
    page.get_by_label("Name", exact=True).fill("Events by plan")
    page.get_by_label("Aggregation").select_option("UNIQUE_USERS")
    page.get_by_label("Dimensions").fill("plan")
    page.get_by_role("button", name="Create metric").click()
    page.get_by_role("cell", name="Events by plan", exact=True).wait_for()
    traces = chart_data(page, "metric")
    metric_id = stack.gql(
        "query($p: ID!) { metricDefinitions(projectId: $p) { id name dimensions } }", {"p": str(stack.web)}
    )["metricDefinitions"][0]
    assert metric_id["dimensions"] == ["plan"]
    to = today_in(BROWSER_TZ)
    points = stack.gql(
        "query($m: ID!, $from: Date!, $to: Date!, $tz: String) { metricSeries(metricId: $m, from: $from, to: $to, "
        "timezone: $tz) { points { localDate dimensions value } } }",
        {
            "m": metric_id["id"],
            "from": (to - timedelta(days=29)).isoformat(),
            "to": to.isoformat(),
            "tz": BROWSER_TZ,
        },
    )["metricSeries"]["points"]
    want: dict[str, dict[str, float]] = {}
    for p in points:
        want.setdefault(f'plan="{p["dimensions"]["plan"]}"', {})[p["localDate"]] = p["value"]
    assert len(want) >= 2  # grouped: one series per plan
    assert {t["name"]: dict(zip(t["x"], t["y"], strict=True)) for t in traces} == want
    shot(page, "metrics")

    page.get_by_role("button", name="Edit Events by plan").click()
    page.get_by_label("Name", exact=True).fill("Users by plan")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_role("cell", name="Users by plan", exact=True).wait_for()
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete Users by plan").click()
    page.get_by_text("No custom metrics yet").wait_for()
    assert stack.gql("query($p: ID!) { metricDefinitions(projectId: $p) { id } }", {"p": str(stack.web)}) == {
        "metricDefinitions": []
    }


def test_saved_dashboard_keeps_panels_with_their_own_ranges(page, stack: Stack) -> None:
    sign_in(page, stack)
    page.get_by_role("link", name="Dashboards").click()
    page.get_by_label("New dashboard").fill("Growth")
    page.get_by_role("button", name="Create").click()
    page.get_by_role("heading", name="Growth").wait_for()
    for title, preset, kind in (("Week of events", "7d", "events"), ("DAU, 30 days", "30d", "active_users")):
        page.get_by_text("Add a panel").click()
        page.get_by_label("Title", exact=True).fill(title)
        page.get_by_label("Kind", exact=True).select_option(kind)
        page.get_by_label("Panel range").select_option(preset)
        page.get_by_role("button", name="Add panel").click()
        page.get_by_role("heading", name=title).wait_for()
    page.reload()
    page.get_by_role("heading", name="DAU, 30 days").wait_for()
    week = chart_data(page, "panel-0")[0]
    month = chart_data(page, "panel-1")[0]
    assert len(week["x"]) == 7 and len(month["x"]) == 30
    saved = stack.gql("query($p: ID!) { dashboards(projectId: $p) { name panels } }", {"p": str(stack.web)})[
        "dashboards"
    ]
    assert [p["range"] for p in saved[0]["panels"]] == [{"preset": "7d"}, {"preset": "30d"}]
    shot(page, "dashboards")


def test_alert_fires_signed_webhook_and_history(page, stack: Stack) -> None:
    sign_in(page, stack)
    page.get_by_role("link", name="Alerts").click()
    page.get_by_text("No alert rules yet").wait_for()
    page.get_by_label("Name", exact=True).fill("Busy week")
    page.get_by_label("Metric", exact=True).select_option("EVENTS")
    page.get_by_label("Comparison").select_option("GT")
    page.get_by_label("Threshold").fill("100")
    page.get_by_label("Window", exact=True).select_option("604800")
    page.get_by_label("Webhook URL (signed)").fill(stack.hook_url)
    page.get_by_role("button", name="Create rule").click()
    secret = page.get_by_test_id("webhook-secret").inner_text()
    wait_for(lambda: Receiver.calls, 20, "signed webhook call")
    headers, body = Receiver.calls[0]
    assert verify(secret, headers, body)
    assert not verify("another-secret-of-some-length", headers, body)
    assert b'"name":"Busy week"' in body
    page.get_by_test_id("state-Busy week").filter(has_text="FIRING").wait_for()
    page.wait_for_function("() => Number(document.querySelector('[data-firings]')?.dataset.firings) >= 1")
    assert "webhook http://127.0.0.1" in page.locator("[data-firings]").inner_text()
    rules = stack.gql(
        "query($p: ID!) { alertRules(projectId: $p) { channels { secret } } }", {"p": str(stack.web)}
    )
    assert rules["alertRules"][0]["channels"][0]["secret"] is None  # shown once, never again
    shot(page, "alerts")


def test_live_count_rises_after_events_are_sent(page, stack: Stack) -> None:
    sign_in(page, stack)
    wait_loaded(page, BROWSER_TZ)
    page.wait_for_function("() => /\\d/.test(document.querySelector('[data-testid=live-today]').textContent)")
    before = int(page.get_by_test_id("live-today").inner_text().replace(",", "").replace(".", ""))
    now = datetime.now(UTC).isoformat()
    batch = [
        {"event": "live_test", "distinct_id": f"u-{i}", "event_id": str(uuid.uuid4()), "timestamp": now}
        for i in range(25)
    ]
    r = httpx.post(
        f"{stack.api_url}/v1/batch",
        json={"batch": batch},
        headers={"X-API-Key": stack.ingest_key},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=live-today]').textContent.replace(/\\D/g, '')) >= n",
        arg=before + 25,
    )
    shot(page, "overview-live")


def test_closing_a_page_mid_subscription_ends_quietly(browser, stack: Stack) -> None:
    """A browser closing its page while `liveEventCounts` streams is a normal disconnect: no traceback in the
    dashboard relay's log nor the API's, and the API counts it in /metrics."""
    logs = [*LOG_DIR.glob("dashboard-*.log"), *LOG_DIR.glob("ingest-*.log")]
    sizes = {p: p.stat().st_size for p in logs}

    def disconnects() -> float:
        text = httpx.get(f"{stack.api_url}/metrics", timeout=10).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("pulseops_graphql_ws_disconnects_total")
        )

    before = disconnects()
    for _ in range(3):  # a few times: the race between a push and the close is what used to log a traceback
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id=BROWSER_TZ)
        page = context.new_page()
        sign_in(page, stack)
        page.wait_for_function(
            "() => /\\d/.test(document.querySelector('[data-testid=live-today]').textContent)"
        )
        page.wait_for_timeout(1500)  # at least one more push in flight
        page.close()
        context.close()
    wait_for(
        lambda: disconnects() >= before + 3, 10, f"disconnects counted in the API's /metrics (from {before})"
    )
    time.sleep(2)  # anything the servers log after the close
    for path in logs:
        with path.open("rb") as f:
            f.seek(sizes[path])
            tail = f.read().decode(errors="replace")
        assert "Traceback" not in tail and "Exception in ASGI" not in tail, f"{path}:\n{tail}"


def test_pipeline_health_shows_lag_dead_letters_and_dagster_runs(page, stack: Stack) -> None:
    sign_in(page, stack)
    page.get_by_role("link", name="Pipeline health").click()
    page.get_by_role("cell", name="invalid_json", exact=True).wait_for()
    page.get_by_role("button", name="Show samples of invalid_json").click()
    page.get_by_text('{"event": "signup", "distinct_id":').wait_for()
    link = page.get_by_role("link", name="run-").first
    assert link.get_attribute("href").startswith("http://127.0.0.1:3999/runs/run-")
    chart_data(page, "late-share")
    assert page.get_by_test_id("landing-lag").inner_text() != "…"
    shot(page, "health")


def test_phone_width_and_labelled_controls(browser, stack: Stack) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, timezone_id=BROWSER_TZ, is_mobile=True
    )
    page = context.new_page()
    sign_in(page, stack)
    wait_loaded(page, BROWSER_TZ)
    chart_data(page, "events")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "overview-phone")
    for section in ("metrics", "alerts", "dashboards", "health"):
        page.goto(f"{stack.url}/#/{section}")
        page.wait_for_timeout(500)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')].filter(e =>
                 !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)"""
        )
        assert unlabelled == [], (section, unlabelled)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), section
        shot(page, f"{section}-phone")
    context.close()


def test_keyboard_only_sign_in_and_navigation(page, stack: Stack) -> None:
    page.goto(stack.url)
    page.get_by_label("Read key").wait_for()
    assert (
        page.evaluate("document.activeElement.getAttribute('type')") == "password"
    )  # focus starts at the key
    page.keyboard.type(stack.key)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Overview", exact=False).wait_for()
    page.reload()  # focus navigation starts at the top of the page
    page.get_by_role("heading", name="Overview", exact=False).wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(4):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Alerts"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # visible focus
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Alerts", exact=True).wait_for()
    assert page.get_by_role("link", name="Alerts").get_attribute("aria-current") == "page"


def test_api_down_shows_an_error_state(browser, stack: Stack, tmp_path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PULSEOPS_DASHBOARD__PORT": str(port),
        "PULSEOPS_DASHBOARD__API_URL": f"http://127.0.0.1:{free_port()}",
    }
    proc = _spawn(env, "dashboard-no-api", "-m", "dashboards")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "dashboard /healthz")
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_label("Read key").fill(stack.key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("alert").filter(has_text="not answering").wait_for()
        shot(page, "api-down")
        context.close()
    finally:
        stop_processes([proc])


def test_browser_benchmark_time_to_first_chart(browser, stack: Stack) -> None:
    result = bench.measure(stack.url, stack.key, runs=3, project=str(stack.web), browser=browser)
    print("\n" + bench.report(result))
    assert result["bytes_cold"] > result["bytes_warm"]  # plotly is cached after the first load
    assert result["first_chart_ms_median"] > 0
