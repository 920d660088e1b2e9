// The grants view: active grants (subject, scope, secret, uses, expiry, issuer) with a Revoke
// button, and a form to issue one. Uses `api`, `el`, `me` from inbox.js; renders with
// textContent only.
"use strict";

function scopeText(s) {
  const list = (v) => (v && v.length ? v.join(",") : "any");
  return "hosts " + list(s.hosts) + " · repos " + list(s.repos) + " · envs " + list(s.envs) + " · actions " + list(s.actions);
}

function grantCard(g) {
  const c = el("article", { class: "card grant", "data-id": g.id, "data-state": g.state });
  c.append(el("h3", {}, g.id + " → " + g.subject.kind + " " + g.subject.id));
  c.append(el("div", { class: "meta" },
    el("span", { class: "state" }, g.state), " · issued by ", g.issued_by, " (", g.source, ")",
    g.approval ? " via " + g.approval : "", " · ", g.created_at));
  const dl = el("dl", {});
  field(dl, "Scope", scopeText(g.scope));
  field(dl, "Secret", g.secret);
  field(dl, "Uses", String(g.uses) + (g.max_uses ? " of " + g.max_uses : " (unlimited)"));
  field(dl, "Expires", g.expires_at || "never");
  field(dl, "Reason", g.reason);
  c.append(dl);
  if (g.state === "active") {
    const revoke = el("button", { class: "deny revoke", type: "button" }, "Revoke");
    const out = el("span", { class: "result" });
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await api("POST", "/v1/grants/" + encodeURIComponent(g.id) + "/revoke", {});
        refreshGrants();
      } catch (e) {
        out.textContent = e.message;
        out.className = "result error";
        revoke.disabled = false;
      }
    });
    c.append(el("div", { class: "actions" }, revoke, out));
  }
  return c;
}

let grantsGen = 0;

async function refreshGrants() {
  const gen = ++grantsGen;
  try {
    const list = await api("GET", "/v1/grants");
    if (gen !== grantsGen) return;
    $("grants").replaceChildren(...list.map(grantCard));
    $("grants-empty").className = list.length ? "hidden" : "meta";
  } catch (e) {
    setStatus(e.message, true);
  }
}

function splitList(v) {
  return v.split(",").map((x) => x.trim()).filter((x) => x);
}

$("grant-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {
    hosts: splitList($("g-hosts").value),
    repos: splitList($("g-repos").value),
    envs: splitList($("g-envs").value),
    actions: splitList($("g-actions").value),
    reason: $("g-reason").value,
  };
  body[$("g-kind").value] = $("g-subject").value.trim();
  if ($("g-secret").value.trim()) body.secret = $("g-secret").value.trim();
  if ($("g-expires").value.trim()) body.expires = $("g-expires").value.trim();
  if ($("g-max").value.trim()) body.max_uses = Number($("g-max").value);
  const out = $("grant-result");
  try {
    const g = await api("POST", "/v1/grants", body);
    out.textContent = "issued " + g.id;
    out.className = "result";
    refreshGrants();
  } catch (e) {
    out.textContent = e.message;
    out.className = "result error";
  }
});
