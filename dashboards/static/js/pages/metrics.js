// Custom metrics: create, edit, delete (dimensions = property keys) and a grouped chart per metric.
import { gql, session } from "../api.js";
import { chart, el, emptyState, field, fmt, rangeControls, resolveRange, select, table } from "../ui.js";

const FIELDS = "id name description eventName filters aggregation property dimensions updatedAt";
const LIST = `query($p: ID!) { metricDefinitions(projectId: $p) { ${FIELDS} } }`;
const CREATE = `mutation($p: ID!, $i: MetricInput!) { createMetric(projectId: $p, input: $i) { ${FIELDS} } }`;
const UPDATE = `mutation($id: ID!, $i: MetricInput!) { updateMetric(id: $id, input: $i) { ${FIELDS} } }`;
const DELETE = `mutation($id: ID!) { deleteMetric(id: $id) }`;
export const SERIES = `
query($m: ID!, $from: Date!, $to: Date!, $g: Granularity!, $tz: String) {
  metricSeries(metricId: $m, from: $from, to: $to, granularity: $g, timezone: $tz) {
    points { localDate localTime utcOffset dimensions value events }
  }
}`;
const AGGREGATIONS = [["COUNT", "Count of events"], ["UNIQUE_USERS", "Unique users"], ["SUM", "Sum of a property"],
  ["AVG", "Average of a property"]];

export const dimensionLabel = (dims) => {
  const entries = Object.entries(dims || {});
  return entries.length ? entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ") : "(no dimension value)";
};

// One trace per combination of dimension values: a grouped chart.
export function metricTraces(points, granularity, kind = "bar") {
  const groups = new Map();
  for (const p of points) {
    const label = dimensionLabel(p.dimensions);
    if (!groups.has(label)) groups.set(label, { type: kind === "line" ? "scatter" : "bar", mode: "lines+markers", name: label, x: [], y: [] });
    const g = groups.get(label);
    g.x.push(granularity === "HOUR" ? `${p.localDate} ${p.localTime}` : p.localDate);
    g.y.push(p.value);
  }
  return [...groups.values()];
}

function parseFilters(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf("=");
    if (i < 1) throw new Error(`Filter "${line}" is not key=value`);
    const raw = line.slice(i + 1).trim();
    let value = raw;
    try { value = JSON.parse(raw); } catch { /* a plain string */ }
    out[line.slice(0, i).trim()] = value;
  }
  return out;
}

export function render(root, ctx) {
  const project = ctx.project;
  const list = el("div");
  const formBox = el("section", { class: "panel", "aria-labelledby": "metric-form-h" });
  const chartBox = el("section", { class: "panel", "aria-labelledby": "metric-chart-h" });
  let metrics = [];
  let selected = session.get("metrics.selected");
  const view = { range: { preset: "30d" }, granularity: "DAY" };

  root.append(el("h1", { text: "Custom metrics" }),
    el("div", { class: "grid" }, el("section", { class: "panel", "aria-labelledby": "metric-list-h" },
      el("h2", { id: "metric-list-h", text: "Metrics" }), list), formBox), chartBox);

  function showForm(metric = null) {
    const name = el("input", { value: metric?.name || "", required: true, maxlength: 200, name: "name" });
    const aggregation = select(AGGREGATIONS, metric?.aggregation || "COUNT", { name: "aggregation" });
    const eventName = el("input", { value: metric?.eventName || "", name: "eventName", placeholder: "all events" });
    const property = el("input", { value: metric?.property || "", name: "property", placeholder: "e.g. amount" });
    const dimensions = el("input", { value: (metric?.dimensions || []).join(", "), name: "dimensions", placeholder: "e.g. plan, country" });
    const filters = el("textarea", { rows: 2, name: "filters", placeholder: "plan=pro" },
      Object.entries(metric?.filters || {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n"));
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const form = el("form", {
      class: "stack",
      onsubmit: async (e) => {
        e.preventDefault();
        error.hidden = true;
        try {
          const input = {
            name: name.value.trim(), aggregation: aggregation.value,
            eventName: eventName.value.trim() || null,
            property: ["SUM", "AVG"].includes(aggregation.value) ? property.value.trim() || null : null,
            dimensions: dimensions.value.split(",").map((x) => x.trim()).filter(Boolean),
            filters: parseFilters(filters.value),
          };
          const d = metric
            ? await gql(UPDATE, { id: metric.id, i: input })
            : await gql(CREATE, { p: project.id, i: input });
          const saved = d.createMetric || d.updateMetric;
          selected = saved.id;
          session.set("metrics.selected", saved.id);
          showForm();
          await load();
        } catch (err) {
          error.textContent = err.message;
          error.hidden = false;
        }
      },
    },
    field("Name", name), field("Aggregation", aggregation), field("Event name", eventName, "Empty: every event"),
    field("Property (sum/average)", property), field("Dimensions", dimensions, "Property keys, comma-separated (up to 5)"),
    el("div", { class: "field wide" }, el("label", { for: "metric-filters", text: "Filters (key=value per line)" }), filters),
    error,
    el("div", { class: "row-actions wide" },
      el("button", { type: "submit", text: metric ? "Save changes" : "Create metric" }),
      metric ? el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => showForm() }) : null));
    filters.id = "metric-filters";
    formBox.replaceChildren(el("h2", { id: "metric-form-h", text: metric ? `Edit “${metric.name}”` : "New metric" }), form);
    if (metric) name.focus();
  }

  async function load() {
    try {
      metrics = (await gql(LIST, { p: project.id })).metricDefinitions;
    } catch (err) { return ctx.handleError(err, list); }
    if (!metrics.length) {
      list.replaceChildren(emptyState("No custom metrics yet. Create one with the form."));
      chartBox.replaceChildren(el("h2", { id: "metric-chart-h", text: "Chart" }), emptyState("Create a metric to chart it."));
      return;
    }
    list.replaceChildren(table(["Name", "Aggregation", "Event", "Dimensions", ""], metrics.map((m) => [
      m.name, m.aggregation.toLowerCase() + (m.property ? `(${m.property})` : ""), m.eventName || "all",
      m.dimensions.join(", ") || "–",
      el("div", { class: "row-actions" },
        el("button", { type: "button", class: "secondary", text: "Chart", "aria-label": `Chart ${m.name}`, onclick: () => { selected = m.id; session.set("metrics.selected", m.id); drawChart(); } }),
        el("button", { type: "button", class: "secondary", text: "Edit", "aria-label": `Edit ${m.name}`, onclick: () => showForm(m) }),
        el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${m.name}`, onclick: async () => {
          if (!confirm(`Delete metric “${m.name}”?`)) return;
          try { await gql(DELETE, { id: m.id }); await load(); } catch (err) { ctx.handleError(err, list); }
        } })),
    ]), "Custom metrics"));
    if (!metrics.some((m) => m.id === selected)) selected = metrics[0].id;
    drawChart();
  }

  async function drawChart() {
    const metric = metrics.find((m) => m.id === selected);
    if (!metric) return;
    const box = el("div");
    const gran = select([["DAY", "Day"], ["HOUR", "Hour"], ["WEEK", "Week"], ["MONTH", "Month"]], view.granularity);
    gran.addEventListener("change", () => { view.granularity = gran.value; drawChart(); });
    chartBox.replaceChildren(
      el("h2", { id: "metric-chart-h", text: `${metric.name}${metric.dimensions.length ? ` by ${metric.dimensions.join(", ")}` : ""}` }),
      el("div", { class: "controls" }, rangeControls(view.range, ctx.tz, (r) => { view.range = r; drawChart(); }), field("Granularity", gran)),
      box);
    const { from, to } = resolveRange(view.range, ctx.tz);
    try {
      const d = await gql(SERIES, { m: metric.id, from, to, g: view.granularity, tz: ctx.tz });
      const points = d.metricSeries.points;
      if (!points.length) return box.replaceChildren(emptyState("No matching events in this range yet."));
      chart(box, "metric", metricTraces(points, view.granularity), { barmode: "group", yTitle: metric.aggregation.toLowerCase() });
      box.append(el("p", { class: "muted", text: `${fmt(points.length)} points in ${ctx.tz}` }));
    } catch (err) { ctx.handleError(err, box); }
  }

  showForm();
  load();
  return () => {};
}

