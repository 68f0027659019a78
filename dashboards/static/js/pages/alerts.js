// Alerts: threshold rules with state, create/edit/delete, channels (signed webhook, Slack, e-mail), history.
import { gql } from "../api.js";
import { el, emptyState, field, fmt, fmtTime, select, table } from "../ui.js";

const RULE = `id name metric eventName metricId comparison threshold windowSeconds cooldownSeconds enabled state
  lastValue lastEvaluatedAt lastFiredAt lastError channels { id kind target secret }`;
const LIST = `query($p: ID!) {
  alertRules(projectId: $p) { ${RULE} }
  alertFirings(projectId: $p, limit: 50) { id ruleName firedAt value threshold comparison windowSeconds
    deliveries { kind target ok status error attempts } }
  metricDefinitions(projectId: $p) { id name }
}`;
const CREATE = `mutation($p: ID!, $i: AlertRuleInput!) { createAlertRule(projectId: $p, input: $i) { ${RULE} } }`;
const UPDATE = `mutation($id: ID!, $i: AlertRuleInput!) { updateAlertRule(id: $id, input: $i) { ${RULE} } }`;
const DELETE = `mutation($id: ID!) { deleteAlertRule(id: $id) }`;
const METRICS = [["EVENTS", "Events"], ["UNIQUE_USERS", "Unique users"], ["CUSTOM_METRIC", "Custom metric"],
  ["DEAD_LETTERS", "Dead letters"], ["SECONDS_SINCE_LAST_EVENT", "Seconds since last event"]];
const OPS = { GT: ">", GTE: "≥", LT: "<", LTE: "≤" };
const WINDOWS = [[300, "5 minutes"], [900, "15 minutes"], [3600, "1 hour"], [21600, "6 hours"], [86400, "24 hours"],
  [604800, "7 days"]];

export function render(root, ctx) {
  const project = ctx.project;
  const rulesBox = el("div");
  const historyBox = el("div");
  const formBox = el("section", { class: "panel", "aria-labelledby": "alert-form-h" });
  const notice = el("div", { role: "status" });
  let data = { alertRules: [], alertFirings: [], metricDefinitions: [] };
  let editing = null;
  let formShown = false;

  root.append(el("h1", { text: "Alerts" }),
    el("p", { class: "muted", text: `Rules are evaluated about every ${ctx.config.alertIntervalSeconds ?? 5} s by the alert evaluator.` }),
    notice,
    el("section", { class: "panel", "aria-labelledby": "rules-h" }, el("h2", { id: "rules-h", text: "Rules" }), rulesBox),
    formBox,
    el("section", { class: "panel", "aria-labelledby": "history-h" }, el("h2", { id: "history-h", text: "History of firings" }), historyBox));

  function showForm(rule = null) {
    editing = rule;
    const name = el("input", { required: true, maxlength: 200, value: rule?.name || "", name: "name" });
    const metric = select(METRICS, rule?.metric || "EVENTS", { name: "metric" });
    const eventName = el("input", { value: rule?.eventName || "", placeholder: "all events", name: "eventName" });
    const metricId = select(data.metricDefinitions.map((m) => [m.id, m.name]), rule?.metricId, { name: "metricId" });
    const comparison = select(Object.entries(OPS).map(([k, v]) => [k, `${v} (${k.toLowerCase()})`]), rule?.comparison || "GT", { name: "comparison" });
    const threshold = el("input", { type: "number", step: "any", required: true, value: rule?.threshold ?? "", name: "threshold" });
    const windowSel = select(WINDOWS, rule?.windowSeconds || 3600, { name: "window" });
    const cooldown = el("input", { type: "number", min: 0, max: 604800, value: rule?.cooldownSeconds ?? 3600, name: "cooldown" });
    const keep = (kind) => rule?.channels.find((c) => c.kind === kind);
    const webhook = el("input", { type: "url", placeholder: keep("WEBHOOK") ? `keep ${keep("WEBHOOK").target}` : "https://…", name: "webhook" });
    const slack = el("input", { type: "url", placeholder: keep("SLACK") ? `keep ${keep("SLACK").target}` : "https://hooks.slack.com/…", name: "slack" });
    const email = el("input", { type: "email", value: keep("EMAIL")?.target || "", name: "email" });
    const enabled = el("input", { type: "checkbox", checked: rule ? rule.enabled : true, name: "enabled" });
    const eventField = field("Event name", eventName, "Events / unique users only");
    const metricField = field("Custom metric", metricId);
    const sync = () => {
      eventField.hidden = !["EVENTS", "UNIQUE_USERS"].includes(metric.value);
      metricField.hidden = metric.value !== "CUSTOM_METRIC";
    };
    metric.addEventListener("change", sync);
    sync();
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const form = el("form", {
      class: "stack",
      onsubmit: async (e) => {
        e.preventDefault();
        error.hidden = true;
        const channels = [];
        const add = (kind, input, key) => {
          const value = input.value.trim();
          if (value) channels.push({ kind, [key]: value });
          else if (keep(kind) && kind !== "EMAIL") channels.push({ kind, id: keep(kind).id });
        };
        add("WEBHOOK", webhook, "url");
        add("SLACK", slack, "url");
        add("EMAIL", email, "to");
        const input = {
          name: name.value.trim(), metric: metric.value, comparison: comparison.value,
          threshold: Number(threshold.value), windowSeconds: Number(windowSel.value), cooldownSeconds: Number(cooldown.value),
          eventName: eventField.hidden ? null : eventName.value.trim() || null,
          metricId: metricField.hidden ? null : metricId.value || null,
          channels, enabled: enabled.checked,
        };
        try {
          const d = rule ? await gql(UPDATE, { id: rule.id, i: input }) : await gql(CREATE, { p: project.id, i: input });
          const saved = d.createAlertRule || d.updateAlertRule;
          const secrets = saved.channels.filter((c) => c.secret);
          notice.replaceChildren(...secrets.map((c) => el("div", { class: "panel" },
            el("p", {}, `Webhook signing secret for ${c.target} — shown once, store it with the receiver:`),
            el("p", { class: "secret", "data-testid": "webhook-secret", text: c.secret }))));
          showForm();
          await load();
        } catch (err) { error.textContent = err.message; error.hidden = false; }
      },
    },
    field("Name", name), field("Metric", metric), eventField, metricField, field("Comparison", comparison),
    field("Threshold", threshold), field("Window", windowSel), field("Cooldown (seconds)", cooldown, "Minimum time between notifications"),
    field("Webhook URL (signed)", webhook), field("Slack webhook URL", slack), field("E-mail", email, "Needs PULSEOPS_ALERTS__SMTP_HOST"),
    el("div", { class: "field" }, el("label", {}, enabled, " Enabled")),
    error,
    el("div", { class: "row-actions wide" }, el("button", { type: "submit", text: rule ? "Save rule" : "Create rule" }),
      rule ? el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => showForm() }) : null));
    formBox.replaceChildren(el("h2", { id: "alert-form-h", text: rule ? `Edit “${rule.name}”` : "New alert rule" }), form);
    if (rule) name.focus();
  }

  const describe = (r) => {
    const what = METRICS.find((m) => m[0] === r.metric)[1] + (r.eventName ? ` (${r.eventName})` : "")
      + (r.metricId ? ` (${data.metricDefinitions.find((m) => m.id === r.metricId)?.name || "metric"})` : "");
    const win = WINDOWS.find((w) => w[0] === r.windowSeconds)?.[1] || `${r.windowSeconds} s`;
    return `${what} over ${win} ${OPS[r.comparison]} ${fmt(r.threshold)}`;
  };

  async function load() {
    try { data = await gql(LIST, { p: project.id }); } catch (err) { return ctx.handleError(err, rulesBox); }
    if (!formShown) { formShown = true; showForm(); }
    rulesBox.replaceChildren(data.alertRules.length ? table(["Rule", "Condition", "State", "Last value", "Evaluated", "Channels", ""],
      data.alertRules.map((r) => [
        r.name, describe(r),
        el("span", { class: `badge ${r.state.toLowerCase()}`, "data-testid": `state-${r.name}`, text: r.enabled ? r.state : "DISABLED", title: r.lastError || null }),
        fmt(r.lastValue), fmtTime(r.lastEvaluatedAt, ctx.tz),
        r.channels.map((c) => `${c.kind.toLowerCase()} ${c.target}`).join(", ") || "none",
        el("div", { class: "row-actions" },
          el("button", { type: "button", class: "secondary", text: "Edit", "aria-label": `Edit ${r.name}`, onclick: () => showForm(r) }),
          el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${r.name}`, onclick: async () => {
            if (!confirm(`Delete alert “${r.name}” and its history?`)) return;
            try { await gql(DELETE, { id: r.id }); await load(); } catch (err) { ctx.handleError(err, rulesBox); }
          } })),
      ]), "Alert rules") : emptyState("No alert rules yet. Create one below."));
    historyBox.replaceChildren(data.alertFirings.length ? table(["Fired", "Rule", "Value", "Threshold", "Deliveries"],
      data.alertFirings.map((f) => [
        fmtTime(f.firedAt, ctx.tz), f.ruleName, fmt(f.value), `${OPS[f.comparison]} ${fmt(f.threshold)}`,
        f.deliveries.map((d) => `${d.kind.toLowerCase()} ${d.target}: ${d.ok ? `ok${d.status ? ` (${d.status})` : ""}` : `failed (${d.error})`}`).join("; ") || "no channels",
      ]), "Alert firings") : emptyState("No alert has fired yet."));
    historyBox.dataset.firings = String(data.alertFirings.length);
  }

  load();
  const timer = setInterval(() => { if (document.visibilityState === "visible") load(); }, 3000);
  return () => clearInterval(timer);
}
