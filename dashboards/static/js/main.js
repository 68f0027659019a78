// Bootstrap: sign-in, project switcher, hash routing (#/overview ...). Pages render into <main>.
import { ApiError, gql, session } from "./api.js";
import { announce, banner, browserZone, el, errorState, field } from "./ui.js";

const PAGES = {
  overview: ["Overview", () => import("./pages/overview.js")],
  metrics: ["Metrics", () => import("./pages/metrics.js")],
  dashboards: ["Dashboards", () => import("./pages/dashboards.js")],
  alerts: ["Alerts", () => import("./pages/alerts.js")],
  health: ["Pipeline health", () => import("./pages/health.js")],
};
const PROJECTS = "{ projects { id slug name orgSlug timezone } }";

const main = document.getElementById("main");
const header = document.querySelector("header.top");
const projectSelect = document.getElementById("project-select");
let cleanup = null;
let config = { dagsterUrl: "", alertIntervalSeconds: 5 };
let projects = [];

const ctx = {
  get project() { return projects.find((p) => p.id === session.get("project")) || projects[0]; },
  get projects() { return projects; },
  get config() { return config; },
  get tz() { return session.get("tz") || browserZone(); },
  set tz(value) { session.set("tz", value); },
  handleError(err, target) {
    if (err instanceof ApiError && err.kind === "auth") return signOut(err.message);
    if (err instanceof ApiError && err.kind === "down") banner(err.message);
    if (target) target.replaceChildren(errorState(err));
    return undefined;
  },
};

function signOut(message) {
  if (cleanup) cleanup();
  cleanup = null;
  session.clear();
  projects = [];
  header.hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  banner(null);
  const key = el("input", { type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false" });
  const error = el("p", { class: "error", role: "alert", hidden: !message, text: message || "" });
  const button = el("button", { type: "submit", text: "Sign in" });
  const form = el("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      error.hidden = true;
      try {
        const data = await gql(PROJECTS, {}, key.value.trim());
        if (!data.projects.length) throw new ApiError("forbidden", "This key reads no project.");
        session.key = key.value.trim();
        await start(data.projects);
      } catch (err) {
        error.textContent = err.kind === "forbidden" && err.status === 403
          ? "This is an ingest key; sign in with a read key." : err.message;
        error.hidden = false;
        button.disabled = false;
        key.focus();
      }
    },
  }, field("Read key", key, "Kept in this tab only (session storage); sent to the API in a header."), error, button);
  main.replaceChildren(el("section", { class: "signin", "aria-labelledby": "signin-title" },
    el("h1", { id: "signin-title", text: "Sign in to PulseOps" }),
    el("p", { class: "muted", text: "Use a read key (pulseops keys create --kind read, or the one printed by make up)." }),
    form));
  key.focus();
}

async function start(list) {
  projects = list;
  session.set("projects", JSON.stringify(list));
  if (!projects.some((p) => p.id === session.get("project"))) session.set("project", projects[0].id);
  projectSelect.replaceChildren(...projects.map((p) => el("option", {
    value: p.id, text: `${p.orgSlug}/${p.slug}`, selected: p.id === ctx.project.id,
  })));
  header.hidden = false;
  if (!location.hash.startsWith("#/")) location.hash = "#/overview";
  else route();
}

async function route() {
  if (!session.key || !projects.length) return;
  const name = location.hash.slice(2).split("?")[0] || "overview";
  const page = PAGES[name] ? name : "overview";
  for (const a of document.querySelectorAll(".top nav a")) {
    if (a.getAttribute("href") === `#/${page}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (cleanup) cleanup();
  cleanup = null;
  banner(null);
  document.title = `${PAGES[page][0]} · PulseOps`;
  const mod = await PAGES[page][1]();
  main.replaceChildren();
  for (const k of Object.keys(main.dataset)) delete main.dataset[k];
  cleanup = mod.render(main, ctx) || null;
  announce(`${PAGES[page][0]} loaded`);
}

projectSelect.addEventListener("change", () => {
  session.set("project", projectSelect.value);
  route();
});
document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => { route(); main.focus(); });

async function boot() {
  performance.mark("pulseops:boot");
  const configLoad = fetch("/config.json").then((r) => r.json()).then((c) => { config = c; }).catch(() => {});
  if (!session.key) return renderSignIn();
  // A reload of a signed-in tab renders at once from the cached project list and refreshes it meanwhile.
  const cached = JSON.parse(session.get("projects", "null"));
  const fresh = gql(PROJECTS);
  try {
    await configLoad;
    if (cached?.length) {
      await start(cached);
      fresh.then((d) => {
        if (JSON.stringify(d.projects) === JSON.stringify(cached)) return;
        start(d.projects); // re-renders with the new list
      }).catch((err) => { if (err.kind === "auth" || err.kind === "forbidden") signOut(err.message); });
      return;
    }
    await start((await fresh).projects);
  } catch (err) {
    if (err.kind === "auth" || err.kind === "forbidden") signOut(err.message);
    else {
      main.replaceChildren(errorState(err), el("button", { type: "button", text: "Retry", onclick: boot }));
      banner(err.message);
    }
  }
}
boot();
