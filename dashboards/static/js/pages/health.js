// Pipeline health: landing lag, events/s, dead letters by reason with samples, late share, day builds.
import { gql, subscribe } from "../api.js";
import { addDays, chart, el, emptyState, fmt, fmtTime, table, todayIn } from "../ui.js";

const HEALTH = `query($p: ID!, $from: Date!, $to: Date!) {
  ingestionHealth(projectId: $p) { lastLandedAt secondsSinceLastLanded eventsToday consumerLag
    deadLettersLast24h { reason count } lateArrivals { date events late share } daysAwaitingRebuild }
  dayBuilds(projectId: $p, from: $from, to: $to) { date events landedVersion builtVersion builtAt runId stale buildFailures buildError nextAttemptAt }
}`;
const SAMPLES = `query($p: ID!, $r: String) { deadLetterSamples(projectId: $p, reason: $r, limit: 5) {
  id deadAt reason detail payload payloadBytes sourceTopic sourcePartition sourceOffset } }`;
const LIVE = `subscription($p: ID!) { liveEventCounts(projectId: $p) { second events eventsLastMinute } }`;

export function render(root, ctx) {
  const project = ctx.project;
  const v = (id) => el("div", { class: "value", "data-testid": id, text: "…" });
  const cards = { lag: v("landing-lag"), rate: v("events-per-s"), consumer: v("consumer-lag"), dead: v("dead-24h"), stale: v("stale-days") };
  const card = (label, value) => el("div", { class: "card" }, el("div", { class: "label", text: label }), value);
  const dead = el("div");
  const samples = el("div", { "aria-live": "polite" });
  const late = el("div");
  const builds = el("div");
  root.append(el("h1", { text: "Pipeline health" }),
    el("div", { class: "cards" }, card("Since last landed event", cards.lag), card("Events/s (last minute, live)", cards.rate),
      card("Broker messages waiting (all tenants)", cards.consumer), card("Dead letters, 24 h", cards.dead),
      card("Days awaiting rebuild", cards.stale)),
    el("div", { class: "grid" },
      el("section", { class: "panel", "aria-labelledby": "dl-h" }, el("h2", { id: "dl-h", text: "Dead letters by reason (24 h)" }), dead, samples),
      el("section", { class: "panel", "aria-labelledby": "late-h" }, el("h2", { id: "late-h", text: "Late-arrival share per UTC day" }), late)),
    el("section", { class: "panel", "aria-labelledby": "builds-h" }, el("h2", { id: "builds-h", text: "Daily aggregate builds (last 30 UTC days)" }), builds));

  async function showSamples(reason) {
    try {
      const d = await gql(SAMPLES, { p: project.id, r: reason });
      samples.replaceChildren(el("h3", { text: `Samples: ${reason}` }), ...d.deadLetterSamples.map((s) => el("div", {},
        el("p", { class: "muted", text: `${fmtTime(s.deadAt, ctx.tz)} · ${s.detail || "no detail"} · ${s.sourceTopic}[${s.sourcePartition}]@${s.sourceOffset} · ${fmt(s.payloadBytes)} bytes` }),
        el("pre", { class: "payload", text: s.payload }))));
    } catch (err) { ctx.handleError(err, samples); }
  }

  async function load() {
    const to = todayIn("UTC");
    try {
      const d = await gql(HEALTH, { p: project.id, from: addDays(to, -29), to });
      const h = d.ingestionHealth;
      const lag = h.secondsSinceLastLanded;
      cards.lag.textContent = lag === null ? "no data yet" : lag < 120 ? `${lag.toFixed(1)} s` : lag < 7200 ? `${(lag / 60).toFixed(0)} min` : `${(lag / 3600).toFixed(1)} h`;
      cards.consumer.textContent = fmt(h.consumerLag);
      cards.dead.textContent = fmt(h.deadLettersLast24h.reduce((n, x) => n + x.count, 0));
      cards.stale.textContent = fmt(h.daysAwaitingRebuild);
      dead.replaceChildren(h.deadLettersLast24h.length ? table(["Reason", "Count", ""], h.deadLettersLast24h.map((x) => [
        x.reason, fmt(x.count), el("button", { type: "button", class: "secondary", text: "Show samples", "aria-label": `Show samples of ${x.reason}`, onclick: () => showSamples(x.reason) }),
      ]), "Dead letters by reason") : emptyState("No dead letters in the last 24 hours."));
      if (h.lateArrivals.length) {
        chart(late, "late-share", [{ type: "bar", x: h.lateArrivals.map((x) => x.date), y: h.lateArrivals.map((x) => x.share * 100),
          customdata: h.lateArrivals.map((x) => `${fmt(x.late)} of ${fmt(x.events)}`), name: "late %",
          hovertemplate: "%{x}: %{y:.2f}% late (%{customdata})<extra></extra>" }], { yTitle: "% late" });
      } else late.replaceChildren(emptyState("No events in the last 7 days."));
      const link = (runId) => (runId && ctx.config.dagsterUrl
        ? el("a", { href: `${ctx.config.dagsterUrl}/runs/${encodeURIComponent(runId)}`, target: "_blank", rel: "noopener", text: runId.slice(0, 8) })
        : runId || "–");
      builds.replaceChildren(d.dayBuilds.length ? table(["UTC day", "Events", "Landed version", "Built version", "Built at", "Dagster run", "State"],
        d.dayBuilds.map((b) => [b.date, fmt(b.events), fmt(b.landedVersion), fmt(b.builtVersion), fmtTime(b.builtAt, ctx.tz), link(b.runId),
          b.buildFailures > 0
            // the sensors' retry ledger: rebuild runs keep failing for this day (warehouse/runs.py)
            ? el("span", { class: "badge error", title: b.buildError || "", text: b.nextAttemptAt
              ? `rebuild failed ${b.buildFailures}×, retry ${fmtTime(b.nextAttemptAt, ctx.tz)}` : `rebuild failed ${b.buildFailures}×, given up` })
            : el("span", { class: `badge ${b.builtVersion === null ? "pending" : b.stale ? "pending" : "ok"}`, text: b.builtVersion === null ? "not built" : b.stale ? "rebuild due" : "built" })]),
        "Daily builds") : emptyState("No landed days yet."));
    } catch (err) { ctx.handleError(err, builds); }
  }

  load();
  const stop = subscribe(LIVE, { p: project.id }, {
    next: (d) => { cards.rate.textContent = (d.liveEventCounts.eventsLastMinute / 60).toFixed(2); },
    error: () => { cards.rate.textContent = "unavailable"; },
  });
  const timer = setInterval(() => { if (document.visibilityState === "visible") load(); }, 10_000);
  return () => { stop(); clearInterval(timer); };
}
