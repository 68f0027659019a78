// DOM, dates and chart helpers shared by the pages.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

let fieldSeq = 0;
export function field(label, control, hint) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return el("div", { class: "field" }, el("label", { for: id, text: label }), control,
    hint ? el("small", { id: hintId, class: "muted", text: hint }) : null);
}

export function select(options, value, attrs = {}) {
  const s = el("select", attrs);
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    s.append(el("option", { value: v, text: label, selected: String(v) === String(value) }));
  }
  return s;
}

const number = new Intl.NumberFormat();
export const fmt = (n) => (n === null || n === undefined ? "–" : number.format(n));
export const fmtTime = (iso, tz) => iso
  ? new Date(iso).toLocaleString(undefined, { timeZone: tz, dateStyle: "medium", timeStyle: "medium" }) : "–";

export function announce(text) {
  const s = document.getElementById("status");
  if (s) s.textContent = text;
}

export function banner(message, kind = "error") {
  const b = document.getElementById("banner");
  if (!message) { b.hidden = true; b.textContent = ""; return; }
  b.className = kind === "info" ? "info" : "";
  b.textContent = message;
  b.hidden = false;
}

export function emptyState(text) { return el("div", { class: "empty", text }); }
export function errorState(err) {
  return el("div", { class: "error", role: "alert", text: err?.message || String(err) });
}

// --- time zones and date ranges ---------------------------------------------------------------------------

export const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

// Zones the API knows (from /config.json), plus the browser's own.
export function zones(known = []) {
  return Array.from(new Set(["UTC", browserZone(), ...known])).sort();
}

export function todayIn(tz) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date());
}

export function addDays(iso, days) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

export const PRESETS = [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"],
  ["90d", "Last 90 days"], ["custom", "Custom range"]];

// A preset covers whole local days ending today in `tz` (24 h: yesterday and today).
export function resolveRange(range, tz) {
  if (range.from && range.to) return { from: range.from, to: range.to };
  const today = todayIn(tz);
  const days = { "24h": 2, "7d": 7, "30d": 30, "90d": 90 }[range.preset || "7d"];
  return { from: addDays(today, 1 - days), to: today };
}

// Range picker: preset select plus two date inputs for a custom range. Calls onChange({preset} | {from, to}).
export function rangeControls(range, tz, onChange, label = "Date range") {
  const current = resolveRange(range, tz);
  const preset = select(PRESETS, range.from ? "custom" : range.preset || "7d");
  const from = el("input", { type: "date", value: current.from });
  const to = el("input", { type: "date", value: current.to });
  const custom = el("div", { class: "controls", hidden: !range.from },
    field("From", from), field("To", to));
  const emit = () => {
    if (preset.value === "custom") {
      custom.hidden = false;
      if (from.value && to.value && from.value <= to.value) onChange({ from: from.value, to: to.value });
    } else {
      custom.hidden = true;
      onChange({ preset: preset.value });
    }
  };
  preset.addEventListener("change", emit);
  from.addEventListener("change", emit);
  to.addEventListener("change", emit);
  return [field(label, preset), custom];
}

// --- charts (plotly.js from the installed wheel) ----------------------------------------------------------

// plotly.js is downloaded early (<link rel=preload>) but evaluated only when a page has sent its queries:
// evaluating it is the most expensive step of the first load, and the API answers meanwhile.
let plotly = null;
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  plotly ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = document.querySelector('meta[name="plotly"]').content;
    script.onload = () => { performance.mark("pulseops:plotly-ready"); resolve(window.Plotly); };
    script.onerror = () => { plotly = null; reject(new Error("Could not load the charting library.")); };
    document.head.append(script);
  });
  return plotly;
}

const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

// Buckets are plotted at their local wall time in the query's zone (plotly has no zones of its own).
export const bucketX = (b) => `${b.localDate} ${b.localTime}`;

export function chart(container, name, traces, { title = "", yTitle = "", barmode, horizontal = false } = {}) {
  const div = el("div", { class: "chart", role: "img", dataset: { chart: name } });
  const points = traces.reduce((n, t) => n + (t.y?.length || 0), 0);
  div.setAttribute("aria-label", `${title || name}: chart with ${traces.length} series and ${points} points`);
  container.replaceChildren(div);
  const layout = {
    margin: { l: horizontal ? 140 : 56, r: 16, t: title ? 36 : 12, b: 48 },
    title: title ? { text: title, font: { size: 14 } } : undefined,
    xaxis: { automargin: true }, yaxis: { title: { text: yTitle }, automargin: true, rangemode: "tozero" },
    legend: { orientation: "h", y: -0.2 }, barmode, hovermode: "closest",
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
  };
  loadPlotly().then((P) => P.newPlot(div, traces, layout, CONFIG))
    .then(() => { if (!performance.getEntriesByName("pulseops:first-chart").length) performance.mark("pulseops:first-chart"); })
    .catch((err) => container.replaceChildren(errorState(err)));
  return div;
}

export function table(headers, rows, caption) {
  return el("div", { class: "table-wrap" }, el("table", {},
    caption ? el("caption", { class: "sr-only", text: caption }) : null,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))))));
}
