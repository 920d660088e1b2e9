// The approval inbox: lists approvals, follows /v1/events, approves and denies.
// Everything is rendered with textContent (never innerHTML): agents choose the text.
"use strict";

const KEY = "clawser.token";
let token = sessionStorage.getItem(KEY) || "";
let me = null;
let streamAbort = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: Object.assign({ Authorization: "Bearer " + token },
      body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const msg = (data.error && data.error.message) || resp.statusText;
    const e = new Error(msg);
    e.status = resp.status;
    throw e;
  }
  return data;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function field(dl, name, value) {
  if (value === null || value === undefined || value === "") return;
  dl.append(el("dt", {}, name), el("dd", {}, String(value)));
}

function card(a) {
  const approvedBy = (a.decisions || []).filter((d) => d.verdict === "approve").map((d) => d.approver);
  const c = el("article", { class: "card approval", "data-id": a.id, "data-state": a.state });
  c.append(el("h2", {}, a.request.method + " " + a.request.url));
  c.append(el("div", { class: "meta" },
    el("span", { class: "state" }, a.state), " · ", a.id, " · created ", a.created_at, " · expires ", a.expires_at));
  const dl = el("dl", {});
  field(dl, "Agent", a.agent);
  field(dl, "On behalf of", a.on_behalf_of);
  field(dl, "Runtime", a.runtime);
  field(dl, "Job", a.job);
  field(dl, "Body", (a.request.body_size == null ? "unknown size" : a.request.body_size + " bytes") + ", sha256 " + a.request.body_sha256);
  for (const [name, value] of (a.request.headers || [])) field(dl, name, value);
  if (a.request.body_preview) {
    dl.append(el("dt", {}, "Body preview (redacted)"), el("dd", {}, el("pre", { class: "preview" }, a.request.body_preview)));
  }
  field(dl, "Needs", a.required.count + " × " + a.required.role);
  field(dl, "Approved by", approvedBy.join(", "));
  field(dl, "Intent", a.intent);
  field(dl, "Evidence", a.evidence);
  c.append(dl);
  const reasons = el("ul", { class: "reasons" });
  for (const r of a.reasons || []) reasons.append(el("li", {}, el("code", {}, r.code), " ", r.message || ""));
  c.append(el("div", {}, el("strong", {}, "Why it was held"), reasons));
  for (const d of a.decisions || []) {
    c.append(el("div", { class: "meta decision" }, d.approver + " said " + d.verdict + (d.reason ? ": " + d.reason : "") + " (" + d.at + ")"));
  }
  if (a.state === "pending" && me && me.kind === "approver") {
    const reason = el("input", { class: "reason", type: "text", placeholder: "reason (shown to the agent and recorded)" });
    // Approve for a window: also issue a grant scoped to this request (its host, repo, env).
    const windowSel = el("select", { class: "window", title: "approve once, or for a window" },
      el("option", { value: "" }, "once"), el("option", { value: "15m" }, "for 15 min"),
      el("option", { value: "1h" }, "for 1 hour"), el("option", { value: "8h" }, "for 8 hours"));
    const approve = el("button", { class: "approve", type: "button" }, "Approve");
    const deny = el("button", { class: "deny", type: "button" }, "Deny");
    const out = el("span", { class: "result" });
    const act = (verb) => async () => {
      approve.disabled = deny.disabled = true;
      try {
        const body = { reason: reason.value };
        if (verb === "approve" && windowSel.value) body.grant_for = windowSel.value;
        const r = await api("POST", "/v1/approvals/" + encodeURIComponent(a.id) + "/" + verb, body);
        out.textContent = verb === "approve" ? "approved (" + r.state + ")" + (r.grant && r.grant.id ? ", granted " + r.grant.id : "") : "denied";
        if (r.grant) refreshGrants();
        refresh();
      } catch (e) {
        out.textContent = e.message;
        out.className = "result error";
        approve.disabled = deny.disabled = false;
      }
    };
    approve.addEventListener("click", act("approve"));
    deny.addEventListener("click", act("deny"));
    c.append(el("div", { class: "actions" }, reason, windowSel, approve, deny), out);
  } else if (a.state === "pending") {
    c.append(el("p", { class: "meta" }, "Log in with an approver token to approve or deny."));
  }
  return c;
}

// Refreshes can overlap (the stream opening, then an event): only the last one started may
// draw, so an older, slower answer never replaces a newer one.
let refreshGen = 0;

async function refresh() {
  const gen = ++refreshGen;
  try {
    const all = await api("GET", "/v1/approvals");
    if (gen !== refreshGen) return;
    const pending = all.filter((a) => a.state === "pending");
    const recent = all.filter((a) => a.state !== "pending").reverse().slice(0, 20);
    // Keep the cards that did not change, so a reason being typed (or a chosen window)
    // survives a refresh caused by some other approval's event.
    const old = new Map();
    for (const c of document.querySelectorAll(".approval")) old.set(c.getAttribute("data-key"), c);
    const keep = (a) => {
      const key = a.id + "|" + a.state + "|" + (a.decisions || []).length;
      const c = old.get(key) || card(a);
      c.setAttribute("data-key", key);
      return c;
    };
    $("pending").replaceChildren(...pending.map(keep));
    $("recent").replaceChildren(...recent.map(keep));
    $("pending-count").textContent = "(" + pending.length + ")";
    $("empty").className = pending.length ? "hidden" : "meta";
  } catch (e) {
    setStatus(e.message, true);
    if (e.status === 401) logout();
  }
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
async function follow() {
  if (streamAbort) streamAbort.abort();
  streamAbort = new AbortController();
  const signal = streamAbort.signal;
  while (!signal.aborted) {
    try {
      const resp = await fetch("/v1/events", { headers: { Authorization: "Bearer " + token }, signal });
      if (resp.status === 401 || resp.status === 403) {
        logout();
        $("login-error").textContent = "Your token is no longer accepted; log in again.";
        return;
      }
      if (!resp.ok) throw new Error("events: " + resp.status);
      setStatus("live");
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      refresh();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          // The server ends the stream when access is revoked: check before reconnecting.
          try {
            await api("GET", "/v1/whoami");
          } catch (e) {
            if (e.status === 401 || e.status === 403) {
              logout();
              return;
            }
          }
          break;
        }
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const kind = (block.match(/^event: (.*)$/m) || [])[1] || "";
          // The event is published as the change is recorded, a moment before the store
          // shows it: refresh now and once more shortly after.
          if (kind.startsWith("approval.") || kind === "events.lagged") {
            refresh();
            setTimeout(refresh, 300);
          }
          if (kind.startsWith("grant.") || kind === "events.lagged") refreshGrants();
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      setStatus("reconnecting…", true);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function login(t) {
  token = t.trim();
  try {
    me = await api("GET", "/v1/whoami");
  } catch (e) {
    $("login-error").textContent = "Log in failed: " + e.message;
    token = "";
    return;
  }
  sessionStorage.setItem(KEY, token);
  $("login-error").textContent = "";
  $("whoami").textContent = me.kind === "approver" ? me.id + " (" + me.roles.join(", ") + ")" : "admin (read only)";
  $("login-view").className = "hidden";
  $("inbox-view").className = "";
  $("logout").className = "";
  await refresh();
  refreshGrants();
  follow();
}

function logout() {
  sessionStorage.removeItem(KEY);
  token = "";
  me = null;
  if (streamAbort) streamAbort.abort();
  $("login-view").className = "card";
  $("inbox-view").className = "hidden";
  $("logout").className = "hidden";
  $("whoami").textContent = "";
  setStatus("");
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  login($("token").value);
});
$("logout").addEventListener("click", logout);
if (token) login(token);
