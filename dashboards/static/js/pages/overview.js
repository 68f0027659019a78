// Overview: event trend, DAU/WAU/MAU, top events, total events, live counts; range, granularity, zone.
import { gql, session, subscribe } from "../api.js";
import {
  bucketX, chart, el, emptyState, field, fmt, loadPlotly, rangeControls, resolveRange, select, zones,
} from "../ui.js";

// Two requests in parallel: the trend (the first chart) does not wait for the distinct-user counts.
export const TREND = `
query Trend($p: ID!, $from: Date!, $to: Date!, $g: Granularity!, $tz: String) {
  eventCounts(projectId: $p, from: $from, to: $to, granularity: $g, timezone: $tz) {
    total buckets { start localDate localTime utcOffset value }
  }
}`;
export const USERS = `
query Users($p: ID!, $from: Date!, $to: Date!, $tz: String) {
  dau: activeUsers(projectId: $p, from: $from, to: $to, kind: DAU, timezone: $tz) { days { date value } }
  wau: activeUsers(projectId: $p, from: $from, to: $to, kind: WAU, timezone: $tz) { days { date value } }
  mau: activeUsers(projectId: $p, from: $from, to: $to, kind: MAU, timezone: $tz) { days { date value } }
  topEvents(projectId: $p, from: $from, to: $to, limit: 10, timezone: $tz) { eventName count }
}`;
const LIVE = `subscription Live($p: ID!) { liveEventCounts(projectId: $p) { second events eventsLastMinute eventsToday } }`;
const GRANULARITIES = [["HOUR", "Hour"], ["DAY", "Day"], ["WEEK", "Week"], ["MONTH", "Month"]];

function state() {
  return {
    range: JSON.parse(session.get("overview.range", '{"preset":"7d"}')),
    granularity: session.get("overview.granularity", "DAY"),
  };
}

export function render(root, ctx) {
  const s = state();
  const project = ctx.project;
  const cards = {
    total: el("div", { class: "value", "data-testid": "total-events", text: "…" }),
    dau: el("div", { class: "value", "data-testid": "dau", text: "…" }),
    wau: el("div", { class: "value", "data-testid": "wau", text: "…" }),
    mau: el("div", { class: "value", "data-testid": "mau", text: "…" }),
    minute: el("div", { class: "value", "data-testid": "live-minute", text: "…" }),
    today: el("div", { class: "value", "data-testid": "live-today", text: "…" }),
  };
  const card = (label, value) => el("div", { class: "card" }, el("div", { class: "label", text: label }), value);
  const liveState = el("span", { class: "muted", text: "connecting…" });
  const trend = el("div");
  const users = el("div");
  const top = el("div");

  const tz = select(zones(ctx.config.zones), ctx.tz, { "data-testid": "timezone" });
  tz.addEventListener("change", () => { ctx.tz = tz.value; load(); });
  const gran = select(GRANULARITIES, s.granularity, { "data-testid": "granularity" });
  gran.addEventListener("change", () => { s.granularity = gran.value; session.set("overview.granularity", gran.value); load(); });
  const range = rangeControls(s.range, ctx.tz, (r) => {
    s.range = r;
    session.set("overview.range", JSON.stringify(r));
    if (r.preset === "24h" && s.granularity === "DAY") { s.granularity = "HOUR"; gran.value = "HOUR"; }
    load();
  });

  root.append(
    el("h1", { text: `Overview · ${project.orgSlug}/${project.slug}` }),
    el("div", { class: "controls" }, range, field("Granularity", gran), field("Time zone", tz)),
    el("div", { class: "cards" },
      card("Total events", cards.total), card("Daily active users (last day)", cards.dau),
      card("Weekly active users", cards.wau), card("Monthly active users", cards.mau),
      card("Events in the last minute (live)", cards.minute), card("Events today, UTC (live)", cards.today)),
    el("p", { class: "muted" }, "Live counts: ", liveState),
    el("div", { class: "grid" },
      el("section", { class: "panel", "aria-labelledby": "trend-h" }, el("h2", { id: "trend-h", text: "Events" }), trend),
      el("section", { class: "panel", "aria-labelledby": "users-h" }, el("h2", { id: "users-h", text: "Active users" }), users),
      el("section", { class: "panel", "aria-labelledby": "top-h" }, el("h2", { id: "top-h", text: "Top events" }), top)),
  );

  let seq = 0;
  async function load() {
    const mine = ++seq;
    const { from, to } = resolveRange(s.range, ctx.tz);
    const v = { p: project.id, from, to, tz: ctx.tz };
    root.dataset.loading = "true";
    performance.mark("pulseops:trend-sent");
    const trendQuery = gql(TREND, { ...v, g: s.granularity });
    const usersQuery = gql(USERS, v);
    loadPlotly().catch(() => {}); // evaluated while the API answers
    try {
      const d = await trendQuery;
      performance.mark("pulseops:trend-received");
      if (mine !== seq) return;
      cards.total.textContent = fmt(d.eventCounts.total); // = totalEvents, one resolver less
      if (!d.eventCounts.total) {
        trend.replaceChildren(emptyState("No events in this range yet. Send some to /v1/events with an ingest key, or pick a longer range."));
      } else {
        const b = d.eventCounts.buckets;
        chart(trend, "events", [{
          type: s.granularity === "HOUR" ? "scatter" : "bar", mode: "lines", name: "events",
          x: b.map(bucketX), y: b.map((x) => x.value),
          customdata: b.map((x) => `UTC${x.utcOffset}`), hovertemplate: "%{x} (%{customdata})<br>%{y} events<extra></extra>",
        }], { yTitle: `events per ${s.granularity.toLowerCase()} (${ctx.tz})` });
      }
      const u = await usersQuery;
      if (mine !== seq) return;
      const last = (series) => series.days.at(-1)?.value;
      cards.dau.textContent = fmt(last(u.dau));
      cards.wau.textContent = fmt(last(u.wau));
      cards.mau.textContent = fmt(last(u.mau));
      if (!d.eventCounts.total) {
        users.replaceChildren(emptyState("No active users in this range."));
        top.replaceChildren(emptyState("No events yet."));
      } else {
        const line = (series, name) => ({
          type: "scatter", mode: "lines+markers", name, x: series.days.map((x) => x.date), y: series.days.map((x) => x.value),
        });
        chart(users, "active-users", [line(u.dau, "DAU"), line(u.wau, "WAU"), line(u.mau, "MAU")], { yTitle: "users" });
        const t = [...u.topEvents].reverse();
        chart(top, "top-events", [{
          type: "bar", orientation: "h", x: t.map((x) => x.count), y: t.map((x) => x.eventName), name: "events",
        }], { horizontal: true });
      }
      root.dataset.loading = "false";
      root.dataset.loadedTz = ctx.tz;
    } catch (err) {
      if (mine !== seq) return;
      root.dataset.loading = "error";
      usersQuery.catch(() => {});
      ctx.handleError(err, trend);
    }
  }

  load();
  const stop = subscribe(LIVE, { p: project.id }, {
    next: (d) => {
      const c = d.liveEventCounts;
      cards.minute.textContent = fmt(c.eventsLastMinute);
      cards.today.textContent = fmt(c.eventsToday);
      liveState.textContent = `updated ${new Date(c.second).toLocaleTimeString()} (${fmt(c.events)} in that second)`;
    },
    error: (err) => { liveState.textContent = err.message; },
    status: (st) => { if (st !== "live") liveState.textContent = st; },
  });
  const refresh = setInterval(() => { if (document.visibilityState === "visible") load(); }, 60_000);
  return () => { stop(); clearInterval(refresh); seq++; };
}

