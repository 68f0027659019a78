"""Browser benchmark of the web dashboard: time to first chart and bytes downloaded, in headless Chromium.

    python -m benchmarks.dashboard --url http://127.0.0.1:8050 --key <read key> [--project <id>] [--runs 5]

Per run, in a fresh browser context: sign in through the form (time from the click to the overview's event
chart), then reload the signed-in tab twice: once after clearing the browser cache (cold: every byte is
downloaded again) and once with the cache (warm). Time to first chart = navigation start → the chart's SVG
exists with data (`performance.now()` in the page); the page's own marks say where the time went. Bytes =
encoded (wire) sizes of every response, from the Chrome DevTools protocol.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from dataclasses import dataclass

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FIRST_CHART = """() => new Promise((resolve, reject) => {
  setTimeout(() => reject(new Error("no chart within 30 s (no data in the project, or a bad key?)")), 30000);
  const done = () => {
    const c = document.querySelector('[data-chart="events"]');
    if (c && c.data && c.querySelector('.main-svg')) { resolve(performance.now()); return true; }
    return false;
  };
  if (!done()) { const t = setInterval(() => { if (done()) clearInterval(t); }, 5); }
})"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


MARKS = ("boot", "trend-sent", "trend-received", "plotly-ready", "first-chart")


@dataclass(frozen=True)
class PageLoad:
    first_chart_ms: float
    bytes_on_wire: int
    requests: int
    marks: dict[str, float]  # the page's own performance marks (ms since navigation start)


def _first_chart(page) -> float:
    return page.evaluate(FIRST_CHART)


def _marks(page) -> dict[str, float]:
    return page.evaluate(
        "names => Object.fromEntries(names.map(n => [n, performance.getEntriesByName('pulseops:' + n)[0]?.startTime]))",
        list(MARKS),
    )


def first_visit(context, url: str, key: str, project: str | None) -> PageLoad:
    """A fresh browser (no HTTP cache, no compiled code) whose tab already holds the key: everything cold."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    sizes: list[int] = []
    cdp.on("Network.loadingFinished", lambda e: sizes.append(int(e["encodedDataLength"])))
    script = f"sessionStorage.setItem('pulseops.key', {key!r});"
    if project:
        script += f"sessionStorage.setItem('pulseops.project', {project!r});"
    page.add_init_script(script)
    page.goto(f"{url}/#/overview")
    ms = _first_chart(page)
    page.wait_for_load_state("networkidle")
    load = PageLoad(ms, sum(sizes), len(sizes), _marks(page))
    page.close()
    return load


def run_once(context, url: str, key: str, project: str | None) -> tuple[float, PageLoad, PageLoad]:
    """Sign in, then a cold and a warm reload of the signed-in tab."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    sizes: list[int] = []
    cdp.on("Network.loadingFinished", lambda e: sizes.append(int(e["encodedDataLength"])))
    if project:
        page.add_init_script(
            f"sessionStorage.getItem('pulseops.project') || sessionStorage.setItem('pulseops.project', {project!r})"
        )
    page.goto(url)
    page.get_by_label("Read key").fill(key)
    clicked = page.evaluate("performance.now()")
    page.get_by_role("button", name="Sign in").click()
    signin_ms = _first_chart(page) - clicked
    page.wait_for_load_state("networkidle")
    loads = []
    for clear in (True, False):
        if clear:
            cdp.send("Network.clearBrowserCache")
        page.wait_for_timeout(200)
        sizes.clear()
        page.reload()
        ms = _first_chart(page)
        page.wait_for_load_state("networkidle")
        loads.append(PageLoad(ms, sum(sizes), len(sizes), _marks(page)))
    page.close()
    return signin_ms, loads[0], loads[1]


def measure(
    url: str, key: str, runs: int = 5, project: str | None = None, executable: str | None = None, browser=None
) -> dict:
    """Median figures over `runs`; uses `browser` if given (Playwright's sync API allows one driver per
    thread), else launches Chromium."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        executable = executable or chromium_path()
        if executable is None:
            raise RuntimeError("Chromium not found (apt-get install chromium)")
        with sync_playwright() as p:
            launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                return measure(url, key, runs, project, browser=launched)
            finally:
                launched.close()
    signin: list[float] = []
    fresh: list[PageLoad] = []
    cold: list[PageLoad] = []
    warm: list[PageLoad] = []
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        fresh.append(first_visit(context, url, key, project))
        context.close()
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        s, c, w = run_once(context, url, key, project)
        signin.append(s)
        cold.append(c)
        warm.append(w)
        context.close()
    times = sorted(r.first_chart_ms for r in cold)
    first = sorted(r.first_chart_ms for r in fresh)
    return {
        "runs": runs,
        "fresh_first_chart_ms_median": statistics.median(first),
        "fresh_first_chart_ms_max": first[-1],
        "bytes_fresh": fresh[-1].bytes_on_wire,
        "fresh_marks_median": {
            m: statistics.median(r.marks[m] for r in fresh if r.marks.get(m) is not None)
            for m in MARKS
            if any(r.marks.get(m) is not None for r in fresh)
        },
        "signin_to_chart_ms_median": statistics.median(signin),
        "first_chart_ms_median": statistics.median(times),
        "first_chart_ms_max": times[-1],
        "warm_first_chart_ms": statistics.median(r.first_chart_ms for r in warm),
        "bytes_cold": cold[-1].bytes_on_wire,
        "requests_cold": cold[-1].requests,
        "bytes_warm": warm[-1].bytes_on_wire,
        "marks_median": {
            m: statistics.median(r.marks[m] for r in cold if r.marks.get(m) is not None)
            for m in MARKS
            if any(r.marks.get(m) is not None for r in cold)
        },
    }


def report(result: dict) -> str:
    return (
        f"time to first chart, fresh browser (median of {result['runs']}): {result['fresh_first_chart_ms_median']:.0f} ms "
        f"(max {result['fresh_first_chart_ms_max']:.0f} ms; marks: "
        + ", ".join(f"{k} {v:.0f}" for k, v in result["fresh_marks_median"].items())
        + f"); reload of a signed-in tab: "
        f"cold cache {result['first_chart_ms_median']:.0f} ms "
        f"(max {result['first_chart_ms_max']:.0f} ms), warm cache {result['warm_first_chart_ms']:.0f} ms; "
        f"sign-in click to first chart {result['signin_to_chart_ms_median']:.0f} ms; "
        f"page weight: {result['bytes_cold'] / 1024:.0f} KiB on the wire in {result['requests_cold']} requests "
        f"(warm: {result['bytes_warm'] / 1024:.0f} KiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050", help="dashboard base URL")
    parser.add_argument("--key", required=True, help="a read key")
    parser.add_argument("--project", help="project id to open (default: the key's first project)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(report(measure(args.url.rstrip("/"), args.key, args.runs, args.project)))


if __name__ == "__main__":
    main()
