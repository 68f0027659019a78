// Saved dashboards: several panels, each with its own kind, range and granularity; stored through GraphQL.
import { gql, session } from "../api.js";
import { bucketX, chart, el, emptyState, field, rangeControls, resolveRange, select } from "../ui.js";
import { SERIES, metricTraces } from "./metrics.js";

const FIELDS = "id name panels updatedAt";
const LIST = `query($p: ID!) { dashboards(projectId: $p) { ${FIELDS} } metricDefinitions(projectId: $p) { id name dimensions } }`;
const CREATE = `mutation($p: ID!, $i: DashboardInput!) { createDashboard(projectId: $p, input: $i) { ${FIELDS} } }`;
const UPDATE = `mutation($id: ID!, $i: DashboardInput!) { updateDashboard(id: $id, input: $i) { ${FIELDS} } }`;
const DELETE = `mutation($id: ID!) { deleteDashboard(id: $id) }`;
const EVENTS = `query($p: ID!, $from: Date!, $to: Date!, $g: Granularity!, $tz: String, $n: [String!]) {
  eventCounts(projectId: $p, from: $from, to: $to, granularity: $g, timezone: $tz, eventNames: $n) { buckets { localDate localTime utcOffset value } } }`;
const USERS = `query($p: ID!, $from: Date!, $to: Date!, $k: ActiveUsersKind!, $tz: String) {
  activeUsers(projectId: $p, from: $from, to: $to, kind: $k, timezone: $tz) { days { date value } } }`;
const KINDS = [["events", "Events"], ["active_users", "Active users"], ["metric", "Custom metric"]];

export function render(root, ctx) {
  const project = ctx.project;
  let boards = [];
  let metrics = [];
  let current = null;
  const picker = el("div", { class: "controls" });
  const body = el("div");
  root.append(el("h1", { text: "Dashboards" }), picker, body);

  async function load(selectId = session.get("dashboards.selected")) {
    try {
      const d = await gql(LIST, { p: project.id });
      boards = d.dashboards;
      metrics = d.metricDefinitions;
    } catch (err) { return ctx.handleError(err, body); }
    const name = el("input", { required: true, maxlength: 200, placeholder: "e.g. Growth" });
    const choose = select([["", boards.length ? "Choose a dashboard" : "No dashboards yet"], ...boards.map((b) => [b.id, b.name])], selectId || "");
    choose.addEventListener("change", () => show(boards.find((b) => b.id === choose.value)));
    picker.replaceChildren(field("Dashboard", choose), el("form", {
      class: "controls",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const d = await gql(CREATE, { p: project.id, i: { name: name.value.trim(), panels: [] } });
          await load(d.createDashboard.id);
        } catch (err) { ctx.handleError(err, body); }
      },
    }, field("New dashboard", name), el("button", { type: "submit", text: "Create" })));
    show(boards.find((b) => b.id === selectId) || null);
  }

  async function save(panels, name = current.name) {
    const d = await gql(UPDATE, { id: current.id, i: { name, panels } });
    const saved = d.updateDashboard;
    boards = boards.map((b) => (b.id === saved.id ? saved : b));
    show(saved);
  }

  function show(board) {
    current = board;
    if (!board) {
      body.replaceChildren(emptyState(boards.length ? "Choose a dashboard above." : "Create a dashboard, then add panels to it."));
      return;
    }
    session.set("dashboards.selected", board.id);
    const grid = el("div", { class: "grid" });
    body.replaceChildren(
      el("div", { class: "row-actions" },
        el("h2", { text: board.name }),
        el("button", { type: "button", class: "danger", text: "Delete dashboard", onclick: async () => {
          if (!confirm(`Delete dashboard “${board.name}”?`)) return;
          try { await gql(DELETE, { id: board.id }); session.set("dashboards.selected", ""); await load(""); } catch (err) { ctx.handleError(err, body); }
        } })),
      panelForm(board), grid);
    if (!board.panels.length) grid.append(emptyState("No panels yet: add one with the form above."));
    board.panels.forEach((p, i) => grid.append(panelView(p, i, board)));
  }

  function panelForm(board) {
    const title = el("input", { maxlength: 200, placeholder: "Panel title" });
    const kind = select(KINDS, "events");
    const names = el("input", { placeholder: "all events (comma-separated names)" });
    const windowSel = select(["DAU", "WAU", "MAU"], "DAU");
    const metric = select(metrics.map((m) => [m.id, m.name]), metrics[0]?.id);
    const gran = select([["day", "Day"], ["hour", "Hour"], ["week", "Week"], ["month", "Month"]], "day");
    let range = { preset: "7d" };
    const rangeEls = rangeControls(range, ctx.tz, (r) => { range = r; }, "Panel range");
    const namesField = field("Event names", names);
    const windowField = field("Window", windowSel);
    const metricField = field("Metric", metric);
    const sync = () => {
      namesField.hidden = kind.value === "metric";
      windowField.hidden = kind.value !== "active_users";
      metricField.hidden = kind.value !== "metric";
    };
    kind.addEventListener("change", sync);
    sync();
    const error = el("p", { class: "error", role: "alert", hidden: true });
    return el("details", { class: "panel" }, el("summary", { text: "Add a panel" }), el("form", {
      class: "stack",
      onsubmit: async (e) => {
        e.preventDefault();
        error.hidden = true;
        const panel = { title: title.value.trim(), kind: kind.value, granularity: gran.value, chart: "line", range };
        if (kind.value === "metric") panel.metricId = metric.value;
        else panel.eventNames = names.value.split(",").map((x) => x.trim()).filter(Boolean);
        if (kind.value === "active_users") panel.window = windowSel.value;
        try { await save([...board.panels, panel]); } catch (err) { error.textContent = err.message; error.hidden = false; }
      },
    }, field("Title", title), field("Kind", kind), namesField, windowField, metricField, field("Granularity", gran),
    rangeEls, error, el("div", { class: "wide" }, el("button", { type: "submit", text: "Add panel" }))));
  }

  function panelView(p, index, board) {
    const box = el("div");
    const { from, to } = resolveRange(p.range, ctx.tz);
    const label = p.range.preset ? `last ${p.range.preset}` : `${from} – ${to}`;
    const section = el("section", { class: "panel", "aria-label": p.title || `Panel ${index + 1}` },
      el("header", {}, el("h2", { text: p.title || KINDS.find((k) => k[0] === p.kind)[1] }),
        el("span", { class: "muted", text: `${label}, per ${p.granularity}` }),
        el("button", { type: "button", class: "secondary", text: "Remove", "aria-label": `Remove panel ${p.title || index + 1}`,
          onclick: () => save(board.panels.filter((_, i) => i !== index)).catch((err) => ctx.handleError(err, box)) })),
      box);
    const g = p.granularity.toUpperCase();
    (async () => {
      try {
        if (p.kind === "events") {
          const d = await gql(EVENTS, { p: project.id, from, to, g, tz: ctx.tz, n: p.eventNames?.length ? p.eventNames : null });
          const b = d.eventCounts.buckets;
          if (!b.some((x) => x.value)) return box.replaceChildren(emptyState("No events in this range."));
          chart(box, `panel-${index}`, [{ type: "scatter", mode: "lines", name: "events", x: b.map(bucketX), y: b.map((x) => x.value) }]);
        } else if (p.kind === "active_users") {
          const d = await gql(USERS, { p: project.id, from, to, k: p.window || "DAU", tz: ctx.tz });
          const days = d.activeUsers.days;
          if (!days.some((x) => x.value)) return box.replaceChildren(emptyState("No active users in this range."));
          chart(box, `panel-${index}`, [{ type: "scatter", mode: "lines+markers", name: p.window, x: days.map((x) => x.date), y: days.map((x) => x.value) }]);
        } else {
          const d = await gql(SERIES, { m: p.metricId, from, to, g, tz: ctx.tz });
          const points = d.metricSeries.points;
          if (!points.length) return box.replaceChildren(emptyState("No matching events in this range."));
          chart(box, `panel-${index}`, metricTraces(points, g), { barmode: "group" });
        }
      } catch (err) { ctx.handleError(err, box); }
    })();
    return section;
  }

  load();
  return () => {};
}
