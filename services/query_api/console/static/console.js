/* Millrace console: sign in, live board, machine history, alerts, dead letters, settings.
   Plain browser JavaScript, no build step; the chart is uPlot (served by Millrace itself). */
"use strict";

const UNITS = { temperature: "°C", pressure: "kPa", speed: "RPM" };
const SEV_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const PRESETS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const S = {
  token: null, refresh: null, exp: 0, user: null, perms: new Set(),
  machines: new Map(), alerts: new Map(), threshold: 120, trends: new Map(), acking: null,
  live: { ctrl: null, lastId: null, up: false, everUp: false, retry: 0 },
  view: null, filter: { location: "", factory: "", text: "" }, chart: null, chartState: null,
};
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (v) => (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) : "–");

function ago(ms) {
  if (ms == null) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

/* ---------- session ---------- */
function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
}
function setSession(body) {
  S.token = body.access_token;
  S.refresh = body.refresh_token || S.refresh;
  const c = claims(S.token);
  S.exp = c.exp * 1000;
  S.perms = new Set(c.permissions || []);
  S.user = { username: c.username, role: c.role };
  sessionStorage.setItem("millrace", JSON.stringify({ access_token: S.token, refresh_token: S.refresh }));
}
function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem("millrace") || "null");
    if (saved && saved.access_token) { setSession(saved); return true; }
  } catch (e) { /* a damaged entry is a signed-out session */ }
  return false;
}
async function refreshSession() {
  if (!S.refresh) return false;
  const resp = await fetch("/console/auth/refresh", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: S.refresh }),
  });
  if (!resp.ok) return false;
  setSession(await resp.json());
  return true;
}
async function ensureFresh() {
  if (S.exp - Date.now() < 60_000) await refreshSession();
}
function signOut() {
  const refresh = S.refresh, token = S.token;
  if (token) fetch("/console/auth/logout", { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ refresh_token: refresh }) }).catch(() => {});
  sessionStorage.removeItem("millrace");
  Object.assign(S, { token: null, refresh: null, exp: 0, user: null, perms: new Set() });
  stopLive();
  location.hash = "#/login";
}

async function api(path, opts = {}) {
  await ensureFresh();
  const go = () => fetch(path, { ...opts, headers: { ...(opts.headers || {}), Authorization: `Bearer ${S.token}`, ...(opts.body ? { "Content-Type": "application/json" } : {}) } });
  let resp = await go();
  if (resp.status === 401 && (await refreshSession())) resp = await go();
  if (resp.status === 401) { signOut(); throw new Error("signed out"); }
  const body = resp.status === 204 ? {} : await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.message || `HTTP ${resp.status}`);
  return body;
}

/* ---------- live stream: fetch streaming, the token in a header ---------- */
function banner(kind, text) {
  const b = $("#banner");
  b.className = kind; b.textContent = text; b.hidden = !text;
  if (kind === "back") setTimeout(() => { if (b.className === "back") b.hidden = true; }, 4000);
}
function liveState(up) {
  const el = $("#live-state");
  el.hidden = false;
  el.textContent = up ? "● live" : "○ reconnecting…";
  el.dataset.up = up ? "1" : "0";
  if (up && !S.live.up && S.live.everUp) banner("back", "Live connection restored — data since the gap reloaded from history.");
  if (up && !S.live.everUp && $("#banner").className === "lost") banner("back", "Live connection established — values are current.");
  if (!up && S.live.up) banner("lost", "Live connection lost — values shown may be out of date. Reconnecting…");
  if (!up && !S.live.everUp) banner("lost", "No live connection — values shown may be out of date. Retrying…");
  if (up) S.live.everUp = true;
  S.live.up = up;
}
function stopLive() { if (S.live.ctrl) S.live.ctrl.abort(); S.live.ctrl = null; }
async function startLive() {
  stopLive();
  const ctrl = new AbortController();
  S.live.ctrl = ctrl;
  try {
    await ensureFresh();
    const headers = { Authorization: `Bearer ${S.token}`, Accept: "text/event-stream" };
    if (S.live.lastId) headers["Last-Event-ID"] = S.live.lastId;
    const resp = await fetch("/api/v1/live", { headers, signal: ctrl.signal, cache: "no-store" });
    if (resp.status === 401) { await refreshSession(); throw new Error("token refreshed"); }
    if (!resp.ok || !resp.body) throw new Error(`live HTTP ${resp.status}`);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "", quietMs = 40_000;
    for (;;) {
      const { value, done } = await Promise.race([
        reader.read(),
        new Promise((_, fail) => setTimeout(() => fail(new Error("live stream silent")), quietMs)),
      ]);
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        let type = "message", data = "", id = null;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":"); const k = line.slice(0, i), v = line.slice(i + 1).replace(/^ /, "");
          if (k === "event") type = v; else if (k === "data") data += v; else if (k === "id") id = v;
        }
        if (id) S.live.lastId = id;
        if (type === "hello") {
          quietMs = 2500 * JSON.parse(data).heartbeat_s;
          const wasUp = S.live.everUp, retried = S.live.retry > 0;
          liveState(true); S.live.retry = 0;
          if (wasUp || retried) resync();
        }
        if (data) onLive(type, JSON.parse(data));
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
    ctrl.abort();
  }
  if (S.live.ctrl !== ctrl || !S.token) return;
  liveState(false);
  const wait = Math.min(10_000, 500 * 2 ** S.live.retry++);
  setTimeout(() => { if (S.live.ctrl === ctrl && S.token) startLive(); }, wait);
}

function onLive(type, d) {
  if (type === "reading") {
    const m = S.machines.get(d.machine_id);
    if (!m) return;
    const ts = Date.parse(d.timestamp);
    if (!m.last_seen || ts >= m.last_seen) { m.last_seen = ts; m.values = { ...(m.values || {}), ...d.fields }; m.online = true; }
    m.factory_id = m.factory_id || d.factory_id || null; // the registry's factory first
    trendAppend(m.id, ts, d.fields);
    if (S.chartState && S.chartState.machine === d.machine_id) appendPoint(ts, d.fields);
    touch(m);
  } else if (type === "status") {
    const m = S.machines.get(d.machine_id);
    if (m) { m.online = d.online; touch(m); }
  } else if (type === "alert") {
    if (d.state === "cleared") S.alerts.delete(d.id); else S.alerts.set(d.id, d);
    updateAlertCount();
    const m = S.machines.get(d.machine_id);
    if (m) touch(m);
    if (S.view === "alerts") renderAlerts();
    if (S.view === "machine" && S.chartState && S.chartState.machine === d.machine_id) loadMachineAlerts();
  } else if (type === "gap") {
    resync();
  } else if (type === "expired") {
    refreshSession();
  }
}
let pendingRender = false;
function touch() {
  if (S.view !== "board" || pendingRender) return;
  pendingRender = true;
  // Still the board when the frame comes (not signed out or gone elsewhere meanwhile).
  requestAnimationFrame(() => { pendingRender = false; if (S.view === "board" && S.token) renderBoard(); });
}
async function resync() {
  await loadStatus();
  await loadOpenAlerts();
  if (S.view === "board") renderBoard();
  if (S.view === "machine" && S.chartState) loadHistory();
}

/* ---------- data ---------- */
async function loadStatus() {
  const body = await api("/api/v1/machines/status");
  S.threshold = body.online_threshold_s || 120;
  const seen = new Set();
  for (const r of body.machines) {
    seen.add(r.machine_id);
    const old = S.machines.get(r.machine_id) || {};
    const ls = r.last_seen ? Date.parse(r.last_seen) : null;
    S.machines.set(r.machine_id, {
      ...old, id: r.machine_id, name: r.name, location: r.location, sensor_type: r.sensor_type,
      status: r.status, online: r.online, factory_id: r.factory_id || old.factory_id || null,
      last_seen: old.last_seen && old.last_seen > (ls || 0) ? old.last_seen : ls,
      values: old.last_seen && old.last_seen > (ls || 0) ? old.values : r.last_values,
    });
  }
  for (const id of [...S.machines.keys()]) if (!seen.has(id)) S.machines.delete(id);
}
async function loadOpenAlerts() {
  if (!S.perms.has("read:alerts")) return;
  const body = await api("/api/v1/alerts?state=open&limit=500");
  S.alerts = new Map(body.alerts.map((a) => [a.id, a]));
  updateAlertCount();
}
function updateAlertCount() {
  const n = [...S.alerts.values()].filter((a) => a.state === "active").length;
  $("#alert-count").textContent = n ? String(n) : "";
}
function machineAlerts(id) { return [...S.alerts.values()].filter((a) => a.machine_id === id); }
function worst(alerts) {
  return alerts.reduce((w, a) => (w == null || SEV_RANK[a.severity] < SEV_RANK[w] ? a.severity : w), null);
}
function silentFor(m) { return m.last_seen ? Date.now() - m.last_seen : null; }
function isStale(m) { const s = silentFor(m); return s != null && s > S.threshold * 1000; }

/* ---------- views ---------- */
function setView(name) {
  S.view = name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.nav === name);
  if (name !== "machine" && S.chart) { S.chart.destroy(); S.chart = null; S.chartState = null; }
}

function renderLogin(message) {
  setView("login");
  $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = ""; $("#live-state").hidden = true;
  $("#main").innerHTML = `
    <form class="login" id="login-form">
      <h1>Sign in</h1>
      <label for="username">User name</label><input id="username" name="username" autocomplete="username" required>
      <label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
      <button class="act" type="submit">Sign in</button>
      <p class="error" id="login-error">${esc(message || "")}</p>
    </form>`;
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const resp = await fetch("/console/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("#username").value, password: $("#password").value }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { $("#login-error").textContent = body.message || `Sign-in failed (HTTP ${resp.status})`; return; }
    setSession(body);
    await enter();
    location.hash = "#/board";
  });
}

async function enter() {
  $("#nav").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = `${S.user.username} · ${S.user.role}`;
  for (const a of document.querySelectorAll("#nav a[data-perm]")) a.hidden = !S.perms.has(a.dataset.perm);
  await loadStatus();
  await loadOpenAlerts();
  startLive();
}

function tileHtml(m) {
  const alerts = machineAlerts(m.id);
  const sev = worst(alerts);
  const stale = isStale(m);
  const never = m.last_seen == null;
  const words = [];
  if (sev) words.push(`<span class="badge ${sev}">${sev}</span>`);
  if (alerts.some((a) => a.state === "acknowledged") && !alerts.some((a) => a.state === "active")) words.push(`<span class="badge acknowledged">acknowledged</span>`);
  words.push(never ? `<span class="muted">NEVER SEEN</span>` : stale ? `<span class="badge offline">offline</span>` : `<span>ONLINE</span>`);
  if (m.status !== "active") words.push(`<span class="muted">${esc(m.status.toUpperCase())}</span>`);
  const values = Object.entries(m.values || {}).map(([k, v]) =>
    `<span class="v${stale ? " stale" : ""}" data-field="${esc(k)}">${fmt(v)} <small>${esc(UNITS[k] || k)}</small></span>`).join("");
  const active = alerts.find((a) => a.state === "active");
  const acked = alerts.find((a) => a.state === "acknowledged");
  const ack = active && S.perms.has("ack:alerts") ? ackControl(active.id) : "";
  const ackedBy = !active && acked ? `<div class="acked">acknowledged by ${esc(acked.acknowledged_by)} · ${ago(Date.parse(acked.acknowledged_at))}${acked.ack_note ? ` — “${esc(acked.ack_note)}”` : ""}</div>` : "";
  return `<div class="tile${sev ? " sev-" + sev : ""}${stale && !sev ? " offline" : ""}" data-machine="${esc(m.id)}">
    <div class="name">${esc(m.name)}</div>
    <div class="loc">${esc(m.location)}${m.factory_id ? ` · <span class="factory">${esc(m.factory_id)}</span>` : ""}</div>
    <div class="state">${words.join(" ")}</div>
    <div class="values">${values || '<span class="muted">no readings yet</span>'}</div>
    ${trendHtml(m)}
    <div class="age" data-age="${m.last_seen ?? ""}">${never ? "" : (stale ? "STALE · last " : "") + ago(m.last_seen)}</div>
    ${ackedBy}${ack}
  </div>`;
}

/* Acknowledging asks for an optional note first (one more click, and the shift log is kept). */
function ackControl(id) {
  if (S.acking !== id) return `<button class="act" data-ack="${id}">Acknowledge</button>`;
  return `<form class="ack-form" data-ack-form="${id}">
    <input name="note" maxlength="500" placeholder="note (optional): what was done" aria-label="Acknowledgement note">
    <button class="act" type="submit">Confirm</button> <button class="act" type="button" data-ack-cancel>Cancel</button>
  </form>`;
}
function openAckForm(id) {
  S.acking = id;
  if (S.view === "board") renderBoard();
  else if (S.view === "alerts") renderAlerts();
  else if (S.view === "machine") loadMachineAlerts();
  const input = document.querySelector(`[data-ack-form="${id}"] input`);
  if (input) input.focus();
}
document.addEventListener("submit", async (ev) => {
  const form = ev.target.closest("[data-ack-form]");
  if (!form) return;
  ev.preventDefault();
  const note = form.note.value.trim();
  S.acking = null;
  try { await acknowledge(Number(form.dataset.ackForm), note); }
  catch (e) { banner("lost", `Acknowledge refused: ${e.message}`); }
});
document.addEventListener("click", (ev) => {
  if (!ev.target.closest("[data-ack-cancel]")) return;
  ev.stopPropagation();
  S.acking = null;
  if (S.view === "board") renderBoard();
  else if (S.view === "alerts") renderAlerts();
  else if (S.view === "machine") loadMachineAlerts();
}, true);

/* ---------- trend of the last hour on each tile (minute means, then every live reading) ---------- */
const TREND_S = 3600;
function trendField(m) {
  const keys = Object.keys(m.values || {}).filter((k) => typeof m.values[k] === "number");
  return keys.includes("temperature") ? "temperature" : keys[0] || null;
}
async function loadTrend(m) {
  const field = trendField(m);
  const have = S.trends.get(m.id);
  if (!field || (have && (have.loading || Date.now() - have.fetched < 60_000))) return;
  S.trends.set(m.id, { ...(have || { pts: [] }), field, loading: true, fetched: Date.now() });
  try {
    const q = new URLSearchParams({ start_time: new Date(Date.now() - TREND_S * 1000).toISOString(), interval: "1m", fields: field, limit: "100" });
    const body = await api(`/api/v1/data/machine/${m.id}?${q}`);
    const pts = body.data.filter((r) => typeof r[field] === "number").map((r) => [Date.parse(r.timestamp), r[field]]);
    const live = (S.trends.get(m.id) || { pts: [] }).pts.filter((p) => p[0] > (pts.length ? pts[pts.length - 1][0] + 60_000 : 0));
    S.trends.set(m.id, { field, pts: [...pts, ...live], fetched: Date.now(), loading: false });
  } catch (e) {
    S.trends.set(m.id, { field, pts: have ? have.pts : [], fetched: Date.now(), loading: false });
  }
  touch();
}
function trendAppend(id, ts, fields) {
  const t = S.trends.get(id);
  if (!t || typeof fields[t.field] !== "number") return;
  t.pts.push([ts, fields[t.field]]);
  const from = Date.now() - TREND_S * 1000;
  while (t.pts.length && t.pts[0][0] < from) t.pts.shift();
}
function trendHtml(m) {
  const t = S.trends.get(m.id);
  const from = Date.now() - TREND_S * 1000;
  const pts = t ? t.pts.filter((p) => p[0] >= from) : [];
  if (pts.length < 2) return `<div class="trend muted" data-trend-points="${pts.length}">${t && !t.loading ? "no trend in the last hour" : ""}</div>`;
  const vs = pts.map((p) => p[1]);
  let lo = Math.min(...vs), hi = Math.max(...vs);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const W = 160, H = 30;
  const line = pts.map((p) => `${((p[0] - from) / (TREND_S * 1000) * W).toFixed(1)},${(H - 2 - (p[1] - lo) / (hi - lo) * (H - 4)).toFixed(1)}`).join(" ");
  const delta = vs[vs.length - 1] - vs[0];
  const arrow = Math.abs(delta) < 0.05 * (Math.abs(vs[0]) || 1) ? "→ steady" : delta > 0 ? "↑ rising" : "↓ falling";
  const unit = UNITS[t.field] || "";
  return `<div class="trend" data-trend-points="${pts.length}" title="${esc(t.field)}, last hour: ${fmt(lo)}–${fmt(hi)} ${esc(unit)}">
    <span class="trend-span">1 h</span><svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" aria-hidden="true"><polyline points="${line}"/></svg>
    <span class="trend-word">${arrow} ${delta >= 0 ? "+" : ""}${fmt(delta)} ${esc(unit)}</span></div>`;
}

function sortedMachines() {
  const list = [...S.machines.values()].filter((m) =>
    (!S.filter.location || m.location === S.filter.location) &&
    (!S.filter.factory || m.factory_id === S.filter.factory) &&
    (!S.filter.text || `${m.name} ${m.location}`.toLowerCase().includes(S.filter.text.toLowerCase())));
  const key = (m) => {
    const sev = worst(machineAlerts(m.id));
    return [sev == null ? 9 : SEV_RANK[sev], isStale(m) ? 0 : 1, isStale(m) ? -(silentFor(m) || 0) : 0, m.last_seen == null ? 1 : 0];
  };
  return list.sort((a, b) => {
    const ka = key(a), kb = key(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
    return a.name.localeCompare(b.name);
  });
}

/* The toolbar is built once per visit; live updates redraw the tiles only (a filter being typed,
   a select held open or an acknowledgement note being written survive them). */
function renderBoard() {
  const fresh = S.view !== "board" || !$("#board");
  setView("board");
  const all = [...S.machines.values()];
  const locations = [...new Set(all.map((m) => m.location))].sort();
  const factories = [...new Set(all.map((m) => m.factory_id).filter(Boolean))].sort();
  if (fresh) {
    $("#main").innerHTML = `
      <div class="toolbar">
        <h1>Machines</h1>
        <label>Location <select id="f-location"></select></label>
        <label id="f-factory-box">Factory <select id="f-factory"></select></label>
        <label>Find <input id="f-text" type="search" value="${esc(S.filter.text)}" placeholder="name or location" size="16"></label>
        <span class="muted" id="board-count"></span>
      </div>
      <div class="board" id="board"></div>`;
    $("#f-location").addEventListener("change", (e) => { S.filter.location = e.target.value; renderBoard(); });
    $("#f-factory").addEventListener("change", (e) => { S.filter.factory = e.target.value; renderBoard(); });
    // Filters as the user types (the toolbar survives the redraw, so does the caret).
    let typing;
    $("#f-text").addEventListener("input", (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => { S.filter.text = e.target.value; renderBoard(); }, 150);
    });
    $("#board").addEventListener("click", onBoardClick);
  }
  fillSelect($("#f-location"), locations, S.filter.location);
  fillSelect($("#f-factory"), factories, S.filter.factory);
  // Machines without a factory (an older registry) leave the factory filter out.
  $("#f-factory-box").hidden = !factories.length;
  const list = sortedMachines();
  $("#board-count").textContent = `${list.length} machines · most urgent first`;
  $("#board-count").dataset.find = S.filter.text;
  keepDraft(() => { $("#board").innerHTML = list.map(tileHtml).join(""); });
  for (const m of list.slice(0, 200)) loadTrend(m);
}
function fillSelect(sel, values, current) {
  const key = values.join("\u0000");
  if (sel.dataset.values === key) return;
  sel.dataset.values = key;
  sel.innerHTML = `<option value="">all</option>${values.map((v) => `<option value="${esc(v)}"${v === current ? " selected" : ""}>${esc(v)}</option>`).join("")}`;
}
/* Redraw with ``draw`` keeping an acknowledgement note being written (text and focus). */
function keepDraft(draw) {
  const input = document.querySelector("[data-ack-form] input");
  const kept = input && { value: input.value, focused: document.activeElement === input };
  draw();
  const again = kept && document.querySelector("[data-ack-form] input");
  if (again) { again.value = kept.value; if (kept.focused) again.focus(); }
}
async function onBoardClick(ev) {
  const ack = ev.target.closest("[data-ack]");
  if (ack) { ev.stopPropagation(); openAckForm(Number(ack.dataset.ack)); return; }
  if (ev.target.closest("[data-ack-form]")) return;
  const tile = ev.target.closest("[data-machine]");
  if (tile) location.hash = `#/machine/${tile.dataset.machine}`;
}
async function acknowledge(id, note) {
  const body = await api(`/api/v1/alerts/${id}/acknowledge`, { method: "POST", body: JSON.stringify(note ? { note } : {}) });
  S.alerts.set(id, body.alert);
  updateAlertCount();
  if (S.view === "board") renderBoard();
  if (S.view === "alerts") renderAlerts();
  if (S.view === "machine") loadMachineAlerts();
}
async function clearAlert(id) {
  await api(`/api/v1/alerts/${id}/clear`, { method: "POST", body: "{}" });
  S.alerts.delete(id);
  updateAlertCount();
  if (S.view === "alerts") renderAlerts();
}

/* machine page */
function pickInterval(spanS) {
  if (spanS <= 6 * 3600) return "raw";
  if (spanS <= 2 * 86400) return "1m";
  if (spanS <= 8 * 86400) return "1h";
  return "1h";
}
function renderMachine(id) {
  setView("machine");
  const m = S.machines.get(id);
  if (!m) { $("#main").innerHTML = `<p class="error">Unknown machine.</p>`; return; }
  S.chartState = { machine: id, preset: "1h", start: null, end: null, fields: ["temperature", "pressure", "speed"], data: null, shown: new Set(), bands: [] };
  $("#main").innerHTML = `
    <p><a href="#/board">← Board</a></p>
    <h1 id="machine-name">${esc(m.name)}</h1>
    <div class="meta"><span>${esc(m.location)}</span><span>${esc(m.sensor_type)}</span><span>status: ${esc(m.status)}</span>
      <span id="m-online"></span><span class="muted">id ${esc(m.id)}</span></div>
    <div class="toolbar presets" id="presets">
      ${Object.keys(PRESETS).map((p) => `<button class="act${p === "1h" ? " on" : ""}" data-preset="${p}">${p}</button>`).join("")}
      <span class="tier" id="tier"></span><span class="muted">Drag on the chart to zoom (raw data when short enough); double-click to reset.</span>
    </div>
    <div class="chartbox" id="chart"></div>
    <div class="cols">
      <div><h2>Alerts of this machine</h2><div id="m-alerts"></div></div>
      <div><h2>Last readings</h2><div id="m-last"></div></div>
    </div>`;
  $("#presets").addEventListener("click", (e) => {
    const b = e.target.closest("[data-preset]");
    if (!b) return;
    for (const x of document.querySelectorAll("#presets [data-preset]")) x.classList.toggle("on", x === b);
    Object.assign(S.chartState, { preset: b.dataset.preset, start: null, end: null });
    loadHistory();
  });
  loadHistory();
  loadMachineAlerts();
}
async function loadHistory() {
  const st = S.chartState;
  if (!st) return;
  const end = st.end ?? Date.now() / 1000;
  const start = st.start ?? end - PRESETS[st.preset];
  const interval = pickInterval(end - start);
  const q = new URLSearchParams({ start_time: new Date(start * 1000).toISOString(), end_time: new Date(end * 1000 + 1000).toISOString(), interval, limit: "10000" });
  const path = `/api/v1/data/machine/${st.machine}?`;
  // Aggregated windows: the minimum and maximum of each window too, drawn as a band round the mean.
  const [body, low, high] = await Promise.all(interval === "raw" ? [api(path + q)] : [
    api(path + q),
    ...["min", "max"].map((agg) => { const qa = new URLSearchParams(q); qa.set("agg", agg); return api(path + qa); }),
  ]);
  if (S.chartState !== st) return;
  const rows = body.data;
  const fields = st.fields.filter((f) => rows.some((r) => typeof r[f] === "number"));
  st.fieldsShown = fields.length ? fields : ["temperature"];
  const num = (r, f) => (r && typeof r[f] === "number" ? r[f] : null);
  const data = [rows.map((r) => Date.parse(r.timestamp) / 1000), ...st.fieldsShown.map((f) => rows.map((r) => num(r, f)))];
  st.bands = [];
  if (low && high) {
    const lows = new Map(low.data.map((r) => [r.timestamp, r])), highs = new Map(high.data.map((r) => [r.timestamp, r]));
    st.fieldsShown.forEach((f, i) => {
      const hi = rows.map((r) => num(highs.get(r.timestamp), f)), lo = rows.map((r) => num(lows.get(r.timestamp), f));
      if (!hi.some((v) => v != null)) return;
      st.bands.push({ field: i + 1, hi: data.length, lo: data.length + 1 });
      data.push(hi, lo);
    });
  }
  st.data = data; st.range = [start, end]; st.live = st.start == null && interval === "raw";
  const tierWord = { raw: "raw readings", hourly: "hourly tier", daily: "daily tier" }[body.query.tier] || body.query.tier;
  $("#tier").textContent = `${rows.length} points · interval ${body.query.interval} · answered by the ${tierWord}${st.bands.length ? " · band: min–max of each window" : ""}${body.pagination.has_more ? " · more than shown" : ""}`;
  $("#tier").dataset.tier = body.query.tier;
  drawChart();
  renderLastReadings(rows);
  const m = S.machines.get(st.machine);
  $("#m-online").innerHTML = m && !isStale(m) && m.last_seen ? "ONLINE" : '<span class="badge offline">offline</span>';
}
function episodesPlugin() {
  return {
    hooks: {
      drawClear: (u) => {
        const st = S.chartState;
        if (!st) return;
        const ctx = u.ctx;
        ctx.save();
        for (const a of st.episodes || []) {
          const x0 = u.valToPos(Date.parse(a.started_at) / 1000, "x", true);
          const x1 = u.valToPos(a.cleared_at ? Date.parse(a.cleared_at) / 1000 : Date.now() / 1000, "x", true);
          ctx.fillStyle = a.state === "cleared" ? "rgba(198,40,40,0.08)" : "rgba(198,40,40,0.18)";
          ctx.fillRect(Math.max(x0, u.bbox.left), u.bbox.top, Math.max(2, Math.min(x1, u.bbox.left + u.bbox.width) - Math.max(x0, u.bbox.left)), u.bbox.height);
        }
        ctx.restore();
      },
    },
  };
}
function drawChart() {
  const st = S.chartState, box = $("#chart");
  if (!st || !box) return;
  if (S.chart) { S.chart.destroy(); S.chart = null; }
  const colours = ["#1d1d1d", "#1565c0", "#6a6a6a"];
  const width = box.clientWidth - 16;
  const height = Math.max(220, Math.min(380, window.innerHeight - 420));
  const shown = (i) => i === 0 || st.shown.has(st.fieldsShown[i]);
  const bandSeries = st.bands.flatMap((b) => {
    const f = st.fieldsShown[b.field - 1], colour = colours[(b.field - 1) % 3];
    const edge = (what) => ({ label: `${f} ${what}`, stroke: colour + "55", width: 0.5, scale: f, show: shown(b.field - 1), spanGaps: false, points: { show: false } });
    return [edge("max"), edge("min")];
  });
  const opts = {
    width, height, plugins: [episodesPlugin()],
    scales: { x: { time: true, min: st.range[0], max: st.range[1] } },
    series: [{}, ...st.fieldsShown.map((f, i) => ({ label: `${f} (${UNITS[f] || ""})`, stroke: colours[i % 3], width: 1.5, scale: f, show: shown(i), spanGaps: false, points: { show: st.data[0].length < 200 } })), ...bandSeries],
    bands: st.bands.map((b) => ({ series: [b.hi, b.lo], fill: b.field === 1 ? "rgba(29,29,29,0.12)" : "rgba(21,101,192,0.12)" })),
    axes: [{}, ...st.fieldsShown.map((f, i) => ({ scale: f, side: i === 0 ? 3 : 1, label: UNITS[f] || f, grid: { show: i === 0 } }))],
    cursor: { drag: { x: true, y: false } },
    hooks: {
      setSeries: [(u, i) => {
        if (i == null || i > st.fieldsShown.length) return;
        const f = st.fieldsShown[i - 1];
        if (u.series[i].show) st.shown.add(f); else st.shown.delete(f);
        // A field's band goes and comes with it.
        for (const b of st.bands) if (b.field === i) for (const j of [b.hi, b.lo]) if (u.series[j].show !== u.series[i].show) u.setSeries(j, { show: u.series[i].show });
        bandLegend(u);
      }],
      setSelect: [(u) => {
        if (u.select.width < 5) return;
        const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
        Object.assign(S.chartState, { start: a, end: b });
        loadHistory();
      }],
    },
  };
  S.chart = new uPlot(opts, st.data, box);
  box.dataset.points = String(st.data[0].length);
  box.dataset.bands = String(st.bands.length);
  bandLegend(S.chart);
  S.chart.over.addEventListener("dblclick", () => { Object.assign(S.chartState, { start: null, end: null }); loadHistory(); });
}
/* The legend lists a band's min and max (their values under the cursor) only while its field
   is shown: a hidden field's band would be two more greyed rows to read past. */
function bandLegend(u) {
  const rows = u.root.querySelectorAll(".u-legend .u-series");
  for (const b of S.chartState.bands) for (const j of [b.hi, b.lo]) if (rows[j]) rows[j].hidden = !u.series[b.field].show;
}
function appendPoint(ts, fields) {
  const st = S.chartState;
  if (!st || !st.data || !st.live || !S.chart) return;
  const t = ts / 1000;
  st.data[0].push(t);
  st.fieldsShown.forEach((f, i) => st.data[i + 1].push(typeof fields[f] === "number" ? fields[f] : null));
  st.range = [Math.max(st.range[0], Date.now() / 1000 - PRESETS[st.preset]), Math.max(st.range[1], t)];
  S.chart.setScale("x", { min: st.range[0], max: st.range[1] });
  S.chart.setData(st.data, false);
  S.chart.setScale("x", { min: st.range[0], max: st.range[1] });
  $("#chart").dataset.points = String(st.data[0].length);
}
function renderLastReadings(rows) {
  const last = rows.slice(-8).reverse();
  const fields = S.chartState.fieldsShown;
  $("#m-last").innerHTML = `<table><tr><th>time</th>${fields.map((f) => `<th>${esc(f)} (${esc(UNITS[f] || "")})</th>`).join("")}</tr>
    ${last.map((r) => `<tr><td>${when(r.timestamp)}</td>${fields.map((f) => `<td>${fmt(r[f])}</td>`).join("")}</tr>`).join("")}</table>`;
}
async function loadMachineAlerts() {
  const st = S.chartState;
  if (!st || !S.perms.has("read:alerts")) return;
  const body = await api(`/api/v1/alerts?machine_id=${st.machine}&limit=50`);
  st.episodes = body.alerts;
  if (S.chart) S.chart.redraw();
  keepDraft(() => { $("#m-alerts").innerHTML = alertTable(body.alerts, true); });
}

function alertTable(alerts, compact) {
  if (!alerts.length) return `<p class="muted">No alerts.</p>`;
  const canAck = S.perms.has("ack:alerts");
  return `<table class="alerts"><tr><th>severity</th>${compact ? "" : "<th>machine</th>"}<th>rule</th><th>value</th><th>since</th><th>state</th><th></th></tr>
    ${alerts.map((a) => {
      const m = S.machines.get(a.machine_id);
      const acked = a.acknowledged_at ? `acknowledged ${when(a.acknowledged_at)} by ${esc(a.acknowledged_by)}` : "";
      const who = a.state === "cleared" ? [acked, `cleared ${when(a.cleared_at)} by ${esc(a.cleared_by)}`].filter(Boolean).join("; ") : acked || "ACTIVE";
      const acts = a.state === "cleared" || !canAck ? "" : `${a.state === "active" ? ackControl(a.id) + " " : ""}<button class="act" data-clear="${a.id}">Clear</button>`;
      const value = a.kind === "offline" ? `silent ${fmt(a.value)} s` : `${fmt(a.value)} ${esc(UNITS[a.field] || "")} ${esc(a.comparison || "")} ${fmt(a.threshold)}`;
      return `<tr class="${a.state}" data-alert="${a.id}"><td><span class="badge ${esc(a.severity)}">${esc(a.severity)}</span></td>
        ${compact ? "" : `<td><a href="#/machine/${esc(a.machine_id)}">${esc(m ? m.name : a.machine_id)}</a></td>`}
        <td>${esc(a.rule_name)}</td><td>${value}</td><td>${when(a.raised_at)}</td><td>${who}${a.ack_note ? ` — “${esc(a.ack_note)}”` : ""}</td><td>${acts}</td></tr>`;
    }).join("")}</table>`;
}
document.addEventListener("click", async (ev) => {
  const inTable = ev.target.closest("table.alerts");
  if (!inTable) return;
  const ack = ev.target.closest("[data-ack]"), clr = ev.target.closest("[data-clear]");
  try {
    if (ack) openAckForm(Number(ack.dataset.ack));
    if (clr) await clearAlert(Number(clr.dataset.clear));
  } catch (e) { banner("lost", e.message); }
});

async function renderAlerts() {
  setView("alerts");
  const open = [...S.alerts.values()].sort((a, b) => (a.state === "active" ? 0 : 1) - (b.state === "active" ? 0 : 1) || SEV_RANK[a.severity] - SEV_RANK[b.severity] || Date.parse(b.raised_at) - Date.parse(a.raised_at));
  keepDraft(() => { $("#main").innerHTML = `<h1>Alerts</h1><h2>Open (${open.length})</h2><div id="open-alerts">${alertTable(open, false)}</div><h2>History</h2><div id="alert-history">loading…</div>`; });
  const body = await api("/api/v1/alerts?state=cleared&limit=50");
  if (S.view === "alerts") $("#alert-history").innerHTML = alertTable(body.alerts, false);
}

async function renderDeadLetters() {
  setView("deadletters");
  $("#main").innerHTML = `<h1>Dead letters</h1><div id="dl-stats">loading…</div><h2>Newest</h2><div id="dl-list"></div>`;
  const [stats, list] = await Promise.all([api("/api/v1/deadletters/stats"), api("/api/v1/deadletters?limit=50")]);
  const rows = stats.by_reason || [];
  $("#dl-stats").innerHTML = `<p>${stats.total} in all, ${stats.pending} not replayed.</p><table><tr><th>reason</th><th>total</th><th>not replayed</th><th></th></tr>${rows.map((r) => `<tr><td>${esc(r.key)}</td><td>${esc(r.total)}</td><td>${esc(r.pending)}</td><td>${r.pending ? `<button class="act" data-replay="${esc(r.key)}">Replay</button>` : ""}</td></tr>`).join("") || '<tr><td colspan="4" class="muted">No dead letters.</td></tr>'}</table>`;
  const letters = list.dead_letters || [];
  $("#dl-list").innerHTML = `<table><tr><th>time</th><th>reason</th><th>source</th><th>machine</th><th>error</th><th>replays</th></tr>${letters.map((l) => `<tr><td>${when(l.first_seen)}</td><td>${esc(l.reason)}</td><td>${esc(l.source)}</td><td>${esc(l.machine_id || "")}</td><td>${esc(l.error)}</td><td>${esc(l.replay_count)}${l.last_replay_error ? ` — ${esc(l.last_replay_error)}` : ""}</td></tr>`).join("")}</table>`;
  $("#dl-stats").addEventListener("click", async (e) => {
    const b = e.target.closest("[data-replay]");
    if (!b) return;
    try {
      const r = await api("/api/v1/deadletters/replay", { method: "POST", body: JSON.stringify({ reason: b.dataset.replay }) });
      banner("back", r.message || "Replayed.");
      renderDeadLetters();
    } catch (err) { banner("lost", `Replay refused: ${err.message}`); }
  });
}

async function renderSettings() {
  setView("settings");
  const mgmt = S.perms.has("read:config");
  $("#main").innerHTML = `<h1>Settings</h1><h2>Alert rules</h2><div id="rules">loading…</div>
    ${S.perms.has("write:alert_rules") ? `<form class="rule" id="rule-form">
      <input name="name" placeholder="name" required><select name="field"><option>temperature</option><option>pressure</option><option>speed</option></select>
      <select name="comparison"><option>&gt;</option><option>&gt;=</option><option>&lt;</option><option>&lt;=</option></select>
      <input name="threshold" type="number" step="any" placeholder="threshold" required><input name="clear_threshold" type="number" step="any" placeholder="clear at">
      <input name="duration_s" type="number" min="0" placeholder="hold (s)"><select name="severity"><option>critical</option><option selected>major</option><option>minor</option><option>warning</option></select>
      <button class="act">Add rule</button><span class="error" id="rule-error"></span></form>` : ""}
    ${mgmt ? `<h2>Configuration</h2><div id="config">loading…</div><h2>Configuration changes</h2><div id="config-audit">loading…</div><h2>Audit log</h2><div id="audit">loading…</div>` : ""}`;
  const rules = (await api("/api/v1/alerts/rules")).rules;
  $("#rules").innerHTML = `<table><tr><th>name</th><th>condition</th><th>clear</th><th>hold</th><th>severity</th><th>scope</th><th>by</th></tr>${rules.map((r) => `<tr class="${r.enabled ? "" : "cleared"}"><td>${esc(r.name)}${r.managed_by ? ` <span class="muted">(from ${esc(r.managed_by)})</span>` : ""}</td>
    <td>${r.kind === "offline" ? `silent &gt; ${r.offline_after_s} s` : `${esc(r.field)} ${esc(r.comparison)} ${fmt(r.threshold)}`}</td><td>${fmt(r.clear_threshold)}</td><td>${r.duration_s} s</td>
    <td><span class="badge ${esc(r.severity)}">${esc(r.severity)}</span></td><td>${esc(r.scope_type)}${r.scope_value ? ": " + esc(r.scope_value) : ""}</td><td>${esc(r.created_by)}</td></tr>`).join("")}</table>`;
  const form = $("#rule-form");
  if (form) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get("name"), field: f.get("field"), comparison: f.get("comparison"), threshold: Number(f.get("threshold")), severity: f.get("severity"), duration_s: Number(f.get("duration_s") || 0) };
    if (f.get("clear_threshold")) body.clear_threshold = Number(f.get("clear_threshold"));
    try { await api("/api/v1/alerts/rules", { method: "POST", body: JSON.stringify(body) }); renderSettings(); }
    catch (err) { $("#rule-error").textContent = err.message; }
  });
  if (!mgmt) return;
  // The configuration's own changes apart: in a busy plant they would drown among the rest.
  const [config, changes, audit] = await Promise.all([api("/api/v1/config"), api("/api/v1/audit?action=config.update&limit=10"), api("/api/v1/audit?limit=30")]);
  $("#config").innerHTML = `<table><tr><th>setting</th><th>value</th><th>changed</th><th>by</th></tr>${config.settings.map((s) => `<tr><td>${esc(s.name)}</td><td>${esc(JSON.stringify(s.value))}</td><td>${when(s.updated_at)}</td><td>${esc(s.updated_by)}</td></tr>`).join("")}</table>`;
  const auditTable = (entries) => entries.length ? `<table class="audit"><tr><th>time</th><th>who</th><th>action</th><th>target</th><th>old → new</th></tr>${entries.map((a) => `<tr><td>${when(a.time)}</td><td>${esc(a.username)} (${esc(a.role)})</td><td>${esc(a.action)}</td><td>${esc(a.target)}</td><td>${esc(JSON.stringify(a.old_value))} → ${esc(JSON.stringify(a.new_value))}</td></tr>`).join("")}</table>` : `<p class="muted">None yet.</p>`;
  $("#config-audit").innerHTML = auditTable(changes.entries);
  $("#audit").innerHTML = auditTable(audit.entries);
}

/* ---------- routing ---------- */
async function route() {
  const [, view, arg] = (location.hash || "#/board").split("/");
  if (!S.token) { renderLogin(); return; }
  try {
    if (view === "machine" && arg) renderMachine(arg);
    else if (view === "alerts") await renderAlerts();
    else if (view === "deadletters") await renderDeadLetters();
    else if (view === "settings") await renderSettings();
    else if (view === "login") { location.hash = "#/board"; }
    else renderBoard();
  } catch (e) {
    if (S.token) $("#main").insertAdjacentHTML("afterbegin", `<p class="error">${esc(e.message)}</p>`);
  }
}
setInterval(() => {
  for (const el of document.querySelectorAll("[data-age]")) {
    const ms = Number(el.dataset.age);
    if (!ms) continue;
    const stale = Date.now() - ms > S.threshold * 1000;
    el.textContent = (stale ? "STALE · last " : "") + ago(ms);
  }
}, 1000);
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { if (S.view === "machine") drawChart(); });
$("#logout").addEventListener("click", signOut);
(async () => {
  if (loadSession()) {
    try { await enter(); } catch (e) { renderLogin(); return; }
  }
  route();
})();
