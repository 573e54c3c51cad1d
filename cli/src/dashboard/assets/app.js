// The Airlock dashboard page. Everything that came from traffic (model, app, error text) is put in
// the page with textContent, never as HTML. Charts are SVG drawn (and escaped) by the server, parsed
// as XML and imported. The page talks only to its own origin; the token travels in an HttpOnly cookie.
"use strict";

const state = { records: new Map(), order: [], selected: null, overview: null, usageLoaded: false };
const MAX_ROWS = 1000;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const $ = (id) => document.getElementById(id);
const fmtTime = (t) => { try { return new Date(t).toLocaleTimeString(); } catch (_) { return String(t); } };
const fmtUsd = (v) => v == null ? "—" : (v === 0 ? "$0" : (v < 0.01 ? "$" + v.toFixed(6) : "$" + v.toFixed(4)));
const tokens = (r) => r.usage ? (r.usage.input_tokens || 0) + (r.usage.output_tokens || 0) : 0;
const reason = (r) => r.outcome === "completed" ? "" : (r.error || r.upstream_error || r.decided_by || "");

function badge(outcome) {
  const known = ["completed", "rejected", "failed", "upstream_error"];
  return el("span", { class: "badge b-" + (known.includes(outcome) ? outcome : "other"), text: outcome || "?" });
}

// ---- views
function show(view) {
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.classList.toggle("hidden", s.id !== "view-" + view);
  if (view === "usage") loadUsage();
  if (view === "ca") loadTrust();
  if (view === "policy" && state.overview && state.overview.agent.up) renderPolicy(state.overview.policy, state.overview.health, state.overview.pause);
  document.body.dataset.view = view;
}

// ---- live requests
const FILTERS = { provider: "f-provider", model: "f-model", app: "f-app", outcome: "f-outcome" };
function addOption(field, value) {
  if (value == null || value === "") return;
  const sel = $(FILTERS[field]);
  for (const o of sel.options) if (o.value === value) return;
  sel.append(el("option", { value: value, text: value }));
}
function matches(r) {
  for (const [f, id] of Object.entries(FILTERS)) { const v = $(id).value; if (v && (r[f] || "") !== v) return false; }
  return true;
}
function row(r) {
  const tr = el("tr", { "data-id": r.id, "data-outcome": r.outcome || "" },
    el("td", { text: fmtTime(r.started_at) }), el("td", { text: r.provider || "" }),
    el("td", { class: "model", text: r.model || "(none)" }), el("td", { text: r.app || "" }),
    el("td", {}, badge(r.outcome)), el("td", { text: r.status == null ? "" : String(r.status) }),
    el("td", { class: "num", text: String(tokens(r)) }), el("td", { class: "num", text: fmtUsd(r.cost_usd) }),
    el("td", { class: "reason", text: reason(r) }));
  tr.addEventListener("click", () => select(r.id));
  if (r.id === state.selected) tr.classList.add("selected");
  return tr;
}
function addRecord(r) {
  if (!r || !r.id || state.records.has(r.id)) return;
  state.records.set(r.id, r);
  state.order.push(r.id);
  if (state.order.length > MAX_ROWS) state.records.delete(state.order.shift());
  for (const f of Object.keys(FILTERS)) addOption(f, r[f]);
  if (matches(r)) { const body = $("requests").tBodies[0]; body.insertBefore(row(r), body.firstChild); }
  if (r.guardrails && r.guardrails.length) renderGuardrails();
  $("live-count").textContent = state.records.size + " requests";
}
function renderRequests() {
  const body = $("requests").tBodies[0];
  body.replaceChildren(...state.order.filter((id) => matches(state.records.get(id))).reverse().map((id) => row(state.records.get(id))));
}
function select(id) {
  state.selected = id;
  const r = state.records.get(id);
  for (const tr of $("requests").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === id);
  $("detail").classList.remove("hidden");
  $("d-id").textContent = id;
  const pol = r.policy ? r.policy.name + (r.policy.version != null ? " v" + r.policy.version : " (local, unversioned)") : "—";
  const reserved = r.reserved ? r.reserved.tokens + " tokens" + (r.reserved.usd != null ? ", " + fmtUsd(r.reserved.usd) : "") : "none";
  const trail = [["Outcome", badge(r.outcome)], ["Status", r.status], ["Decided by", r.decided_by || "passed every stage"],
    ["Reason", reason(r) || "—"], ["Reserved budget", reserved], ["Policy", pol], ["Model", r.model],
    ["Response model", r.response_model], ["App", r.app ? r.app + " (pid " + r.pid + ")" : null], ["User", r.user],
    ["Cost", fmtUsd(r.cost_usd) + (r.cost_status ? " (" + r.cost_status + ")" : "")], ["Latency", r.latency_ms == null ? null : r.latency_ms.toFixed(1) + " ms"]];
  $("d-trail").replaceChildren(...trail.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : (v == null ? "—" : String(v)))]));
  const g = r.guardrails || [];
  $("d-guardrails").replaceChildren(g.length ? el("ul", {}, ...g.map((h) => el("li", { text: `${h.rule} (${h.category}, ${h.direction}): ${h.action} ×${h.count} ${h.preview || ""}` }))) : "none");
  $("d-json").textContent = JSON.stringify(r, null, 2);
}

// ---- guardrail events
function renderGuardrails() {
  const rows = [];
  for (const id of state.order.slice().reverse()) {
    const r = state.records.get(id);
    for (const h of r.guardrails || []) rows.push(el("tr", {}, el("td", { text: fmtTime(r.started_at) }), el("td", { text: r.id }),
      el("td", { text: r.model || "" }), el("td", { text: r.app || "" }), el("td", { text: h.rule }), el("td", { text: h.category }),
      el("td", { text: h.direction }), el("td", {}, badge(h.action === "block" ? "rejected" : h.action)),
      el("td", { class: "num", text: String(h.count) }), el("td", { text: h.preview || "" })));
  }
  $("guard-events").tBodies[0].replaceChildren(...rows);
  $("guard-empty").classList.toggle("hidden", rows.length > 0);
}

// ---- overview: agent, budgets, policy, CA
function agentState(up, message) {
  const p = $("agent-state");
  p.textContent = up ? "agent up" : "agent down";
  p.className = "pill " + (up ? "up" : "down");
  const b = $("banner");
  b.classList.toggle("hidden", up);
  if (!up) b.textContent = "The Airlock agent is not answering: " + (message || "unknown reason") + ". This page keeps trying and recovers when it is back.";
}
const num = (v) => v == null ? "—" : (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(6) : String(v));
function renderBudgets(g) {
  const budgets = (g && g.budgets) || [];
  const none = (cols, text) => [el("tr", {}, el("td", { class: "empty", colspan: String(cols), text: text }))];
  $("budgets").tBodies[0].replaceChildren(...(budgets.length ? [] : none(9, "The policy sets no budgets.")), ...budgets.map((b) => {
    const tok = b.limit_tokens != null, limit = tok ? b.limit_tokens : b.limit_usd, used = tok ? b.used_tokens : b.used_usd;
    const unit = tok ? " tokens" : " USD", headroom = limit == null ? null : Math.max(0, limit - used - (tok ? b.reserved_tokens || 0 : 0));
    const frac = limit ? Math.min(1, used / limit) : 0, meter = el("div", { class: "meter" + (frac > 0.8 ? " hot" : "") }, el("div"));
    meter.firstChild.style.width = (frac * 100).toFixed(1) + "%";
    return el("tr", { "data-budget": b.name }, el("td", { text: b.name }), el("td", { text: b.scope || "everyone" }), el("td", { text: b.window }),
      el("td", { class: "num", text: num(used) + unit }), el("td", { class: "num", text: num(b.reserved_tokens) }),
      el("td", { class: "num", text: num(limit) + unit }), el("td", { class: "num headroom", text: num(headroom) + unit }),
      el("td", {}, meter), el("td", { text: b.resets_at ? new Date(b.resets_at).toLocaleString() : "—" }));
  }));
  const rates = (g && g.rate_limits) || [];
  $("rates").tBodies[0].replaceChildren(...(rates.length ? [] : none(7, "The policy sets no rate limits.")), ...rates.map((r) => {
    const rpm = r.requests_per_minute;
    return el("tr", { "data-rate": r.name }, el("td", { text: r.name }), el("td", { text: r.scope || "everyone" }), el("td", { class: "num", text: rpm ? String(rpm.used) : "—" }),
      el("td", { class: "num", text: rpm ? String(rpm.limit) : "—" }), el("td", { class: "num", text: rpm ? String(Math.max(0, rpm.limit - rpm.used)) : "—" }),
      el("td", { class: "num", text: num(r.in_flight) }), el("td", { class: "num", text: num(r.concurrency) }));
  }));
}
function dl(target, pairs) {
  target.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : (v == null || v === "" ? "—" : String(v)))]));
}
function lastRefused() {
  for (let i = state.order.length - 1; i >= 0; i--) {
    const r = state.records.get(state.order[i]);
    if (r.outcome === "rejected") return `${fmtTime(r.started_at)} ${r.model || ""} (${r.decided_by || "?"}): ${reason(r)}`;
  }
  return "none among the requests shown";
}
function renderPolicy(p, health, pause) {
  p = p || {};
  const lr = p.last_refusal;
  dl($("policy"), [["Name", p.name], ["Version", p.version == null ? "local policy (unversioned)" : p.version], ["Source", p.source],
    ["Fleet", p.fleet], ["Fail mode", p.fail_mode], ["Issued", p.bundle && p.bundle.issued_at], ["Expires", p.bundle && p.bundle.expires_at],
    ["Expired", p.expired ? el("span", { class: "bad", text: "yes" }) : "no"],
    ["Last refused bundle", lr ? (typeof lr === "string" ? lr : [lr.at, lr.reason, lr.message, lr.source].filter(Boolean).join(" — ")) : "none"],
    ["Last refused request", lastRefused()],
    ["Paused until", pause && pause.paused_until]]);
  const reasons = (health && health.reasons) || [];
  $("health").replaceChildren(health ? el("div", { class: health.state === "up" ? "ok" : "bad", text: "Agent health: " + health.state }) : el("div", { class: "muted", text: "This agent does not report health." }),
    ...reasons.map((r) => el("div", { text: r.code + ": " + r.message })));
}
function renderCa(ca) {
  ca = ca || {};
  dl($("ca"), [["Subject", ca.subject], ["SHA-256", ca.fingerprint_sha256], ["Valid until", ca.not_after], ["Certificate", ca.cert_path],
    ["May sign for", (ca.permitted_domains || []).join(", ")], ["Not covered", (ca.uncovered_hosts || []).join(", ") || "none"]]);
}
async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}
async function loadOverview() {
  try {
    const o = await getJson("/api/overview");
    state.overview = o;
    agentState(o.agent.up, o.agent.message);
    if (o.agent.up) { renderBudgets(o.governance); renderPolicy(o.policy, o.health, o.pause); renderCa(o.ca); }
  } catch (e) { agentState(false, "the dashboard itself is not answering (" + e.message + ")"); }
}
async function loadTrust() {
  try {
    const t = await getJson("/api/trust");
    if (!t.ok) { $("stores-note").textContent = t.message; return; }
    if (!state.overview || !state.overview.agent.up) renderCa(t.ca);
    $("stores").tBodies[0].replaceChildren(...t.stores.map((s) => {
      let word, cls;
      if (s.current) { word = "trusted" + (s.stale && s.stale.length ? "; also holds old Airlock CAs " + s.stale.join(", ") : ""); cls = "ok"; }
      else if (s.error) { word = "cannot check: " + s.error; cls = "muted"; }
      else { word = "NOT trusted: run `" + (s.writable ? "" : "sudo ") + "airlock setup`"; cls = "bad"; }
      return el("tr", {}, el("td", { text: s.kind }), el("td", { text: s.store }), el("td", { class: cls, text: word }));
    }));
    $("stores-note").textContent = "Device CA " + t.ca.serial + " (SHA-256 " + t.ca.fingerprint_sha256 + ")";
  } catch (e) { $("stores-note").textContent = "cannot read the trust stores: " + e.message; }
}
async function loadUsage() {
  try {
    const u = await getJson("/api/usage?range=" + encodeURIComponent($("u-range").value));
    if (!u.ok) { $("charts").replaceChildren(el("p", { class: "bad", text: u.message })); return; }
    const t = u.totals;
    $("u-totals").textContent = `${t.requests} requests, ${t.tokens} tokens, ${fmtUsd(t.cost_usd)}, ${t.refused} refused`;
    const parser = new DOMParser();
    $("charts").replaceChildren(...u.charts.map((c) => {
      const doc = parser.parseFromString(c.svg, "image/svg+xml");
      const box = el("div", { class: "chart", id: "chart-" + c.id });
      if (doc.documentElement.nodeName === "svg") box.append(document.importNode(doc.documentElement, true));
      return box;
    }));
    state.usageLoaded = true;
    document.body.dataset.usageLoaded = "1";
  } catch (e) { $("charts").replaceChildren(el("p", { class: "bad", text: "cannot load usage: " + e.message })); }
}

// ---- start
function start() {
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
  for (const id of Object.values(FILTERS)) $(id).addEventListener("change", renderRequests);
  $("u-range").addEventListener("change", loadUsage);
  // The token is in the HttpOnly cookie now: drop it from the address bar and history.
  if (location.search) history.replaceState(null, "", location.pathname + location.hash);
  const es = new EventSource("/api/events");
  es.addEventListener("record", (e) => addRecord(JSON.parse(e.data)));
  es.addEventListener("agent", (e) => { const a = JSON.parse(e.data); agentState(a.up, a.message); if (a.up) loadOverview(); });
  es.addEventListener("open", () => { document.body.dataset.live = "1"; });
  loadOverview();
  setInterval(loadOverview, 5000);
  setInterval(() => { if (document.body.dataset.view === "usage") loadUsage(); }, 15000);
  show((location.hash || "#live").slice(1) || "live");
}
document.addEventListener("DOMContentLoaded", start);
