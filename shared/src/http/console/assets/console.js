// The Keyport console's pages. Plain ES module, no build step, no third-party code.
//
// Everything a person sees is built with DOM calls (never from HTML strings), so no value from
// the API is ever interpreted as markup. The session cookie is HttpOnly: this script never
// sees it; it holds only the CSRF token the session answer hands it, in memory, and sends it
// with every change. No token of any provider ever reaches this page.

const API = "/console/api";
let session = null;
// A message for the next rendering of a connection's page ("Saved."), shown once.
let flash = null;

// ---- DOM helpers --------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// Replaces `element`'s children with those given, leaving out the absent (null) ones.
function fill(element, ...children) {
  element.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

function show(title, ...content) {
  document.title = `${title} · Keyport`;
  const main = document.getElementById("main");
  fill(main, h("h1", { text: title }), ...content);
  main.focus();
}

function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// Status in colour and in words.
const STATUS_WORDS = {
  valid: "Valid",
  expiring_soon: "Expiring soon",
  expired: "Expired",
  refresh_failing: "Refresh failing",
  refresh_failed: "Refresh failing",
  grant_ending: "Grant ending",
  needs_reauthorization: "Needs re-authorization",
  not_authorized: "Not authorized",
  active: "Active",
  disabled: "Disabled",
};

function badge(status) {
  const key = status || "not_authorized";
  return h("span", { class: `badge status-${key}`, text: STATUS_WORDS[key] || key });
}

// ---- the API ------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET") headers["x-keyport-csrf"] = session ? session.csrf_token : "";
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401 && path !== "/session") {
    await boot();
  }
  return { ok: response.ok, status: response.status, data };
}

function problem(result) {
  const message = result.data && result.data.message ? result.data.message : `The request failed (${result.status}).`;
  return h("p", { class: "problem", role: "alert", text: message });
}

// ---- navigation ---------------------------------------------------------------------------

function go(path) {
  history.pushState({}, "", path);
  route();
}

function link(path, text, attrs = {}) {
  return h("a", {
    href: path,
    ...attrs,
    onclick: (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey) return;
      event.preventDefault();
      go(path);
    },
  }, text);
}

window.addEventListener("popstate", () => route());

function chrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!session || !session.signed_in) {
    fill(nav);
    fill(who);
    return;
  }
  fill(nav,
    session.administrator ? link("/console/connections", "Connections") : null,
    session.administrator ? link("/console/transfer", "Export / import") : null,
    session.administrator ? link("/console/notifications", "Notifications") : null,
    link("/console/me", "My connections"),
  );
  fill(who,
    h("span", { class: "subject" }, "Signed in as ", h("strong", { text: session.subject }),
      session.administrator ? " (administrator)" : ""),
    h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
  );
}

async function signOut() {
  await api("POST", "/signout");
  session = null;
  history.replaceState({}, "", "/console/");
  await boot();
}

async function boot() {
  const result = await api("GET", "/session");
  session = result.ok ? result.data : { signed_in: false, sign_in: {} };
  chrome();
  route();
}

function route() {
  if (!session || !session.signed_in) return signInScreen();
  const path = location.pathname.replace(/\/+$/, "");
  const parts = path.split("/").filter(Boolean); // ["console", ...]
  if (parts[1] === "complete") return completeScreen();
  if (parts[1] === "me") return myConnections();
  if (parts[1] === "connections" && session.administrator) {
    if (parts[2] === "new") return wizard();
    if (parts[2]) return connectionPage(decodeURIComponent(parts[2]));
    return connectionsList();
  }
  if (parts[1] === "connections" && !session.administrator) return notAllowed();
  if (parts[1] === "transfer") return session.administrator ? transferPage() : notAllowed();
  if (parts[1] === "notifications") return session.administrator ? notificationsPage() : notAllowed();
  return session.administrator ? connectionsList() : myConnections();
}

function signInScreen() {
  const how = (session && session.sign_in) || {};
  show(
    "Sign in to Keyport",
    how.oidc
      ? h("p", {}, h("a", { class: "button", href: "/console/signin" }, "Sign in with your identity provider"))
      : null,
    how.links
      ? h("p", {}, "Open the sign-in link the ", h("code", { text: "keyport" }),
        " server printed when it started, or print one with ",
        h("code", { text: "keyport dev-login --sub <you> --roles <roles>" }), ".")
      : null,
  );
}

function notAllowed() {
  show("Not available", h("p", { text: "Managing connections needs the manage-connections permission, which your roles do not hold." }),
    h("p", {}, link("/console/me", "Go to my connections")));
}

// ---- connections list (administrators) ----------------------------------------------------

async function connectionsList() {
  show("Connections", h("p", { text: "Loading…" }));
  const result = await api("GET", "/connections?limit=1000");
  if (!result.ok) return show("Connections", problem(result));
  const connections = result.data.connections || [];
  const create = link("/console/connections/new", "Create a connection", { class: "button" });
  if (connections.length === 0) {
    return show("Connections", h("div", { class: "empty" },
      h("p", { text: "No connections yet — create one." }), create));
  }
  const search = h("input", { type: "search", id: "search", placeholder: "Name or provider" });
  const filter = h("select", { id: "status-filter" },
    h("option", { value: "" }, "Any status"),
    ...["valid", "expiring_soon", "refresh_failing", "grant_ending", "needs_reauthorization", "not_authorized", "expired"]
      .map((s) => h("option", { value: s }, STATUS_WORDS[s])));
  const body = h("tbody");
  const rows = connections.map((c) => {
    const health = c.token_health || { shared: {}, user_tokens: {} };
    const users = health.user_tokens || {};
    const row = h("tr", {},
      h("th", { scope: "row" }, link(`/console/connections/${encodeURIComponent(c.id)}`, c.name)),
      h("td", { text: c.provider }),
      h("td", { text: c.grant_type }),
      h("td", {}, badge(health.shared.status), h("div", { class: "muted", text: health.shared.expires_at ? `until ${when(health.shared.expires_at)}` : "" })),
      h("td", { text: `${users.total || 0} (${users.needs_attention || 0} need attention)` }),
      h("td", { text: invitedText(c) }),
      h("td", { text: when(health.last_refresh_at) }),
      h("td", { text: health.last_error ? health.last_error.message : "—" }),
    );
    row.dataset.search = `${c.name} ${c.provider}`.toLowerCase();
    row.dataset.status = health.shared.status || "not_authorized";
    return row;
  });
  body.append(...rows);
  const apply = () => {
    const text = search.value.trim().toLowerCase();
    for (const row of rows) {
      row.hidden = (text && !row.dataset.search.includes(text)) || (filter.value && row.dataset.status !== filter.value);
    }
  };
  search.addEventListener("input", apply);
  filter.addEventListener("change", apply);
  show("Connections",
    h("div", { class: "toolbar" },
      h("label", { for: "search" }, "Search"), search,
      h("label", { for: "status-filter" }, "Shared token"), filter,
      create),
    h("table", {},
      h("caption", { class: "visually-hidden", text: "Connections and their token health" }),
      h("thead", {}, h("tr", {}, ...["Name", "Provider", "Grant type", "Shared token", "User tokens", "Invited", "Last refresh", "Last error"].map((t) => h("th", { scope: "col", text: t })))),
      body));
}

// ---- export and import (administrators) ---------------------------------------------------

// The export is definitions only: secrets leave Keyport encrypted to an age recipient, through
// `keyport export --with-secrets`, never through a browser. An imported file is read here and
// sent as it is; its plan is shown before anything is applied.
function transferPage() {
  const status = h("p", { id: "transfer-status", role: "status" });
  const download = h("button", { type: "button", id: "export-download", onclick: async () => {
    download.disabled = true;
    const result = await api("GET", "/connections/export");
    download.disabled = false;
    if (!result.ok) return fill(status, problem(result));
    const file = new Blob([JSON.stringify(result.data, null, 2) + "\n"], { type: "application/json" });
    const url = URL.createObjectURL(file);
    const anchor = h("a", { href: url, download: "keyport-connections.json" });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
    fill(status, `Exported ${result.data.connections.length} connections (definitions only, no secrets).`);
  } }, "Download the export");
  const input = h("input", { type: "file", accept: "application/json,.json" });
  const plan = h("div", { id: "import-plan" });
  let uploaded = null;
  const confirm = h("button", { type: "button", id: "import-confirm", hidden: true, onclick: async () => {
    confirm.disabled = true;
    const result = await api("POST", "/connections/import?dry_run=false", uploaded);
    confirm.disabled = false;
    confirm.hidden = true;
    if (result.data && result.data.connections) fill(plan, planTable(result.data));
    if (!result.ok) return fill(status, problem(result));
    fill(status, "Imported: every change in the table is applied.");
  } }, "Apply this import");
  input.addEventListener("change", async () => {
    confirm.hidden = true;
    fill(plan);
    fill(status);
    const file = input.files[0];
    if (!file) return;
    try {
      uploaded = JSON.parse(await file.text());
    } catch {
      return fill(status, h("p", { class: "problem", role: "alert", text: "The file is not JSON (an export of Keyport's)." }));
    }
    const result = await api("POST", "/connections/import?dry_run=true", uploaded);
    if (!result.ok) return fill(status, problem(result));
    fill(plan, planTable(result.data));
    const { create, change, conflict } = result.data.summary;
    if (conflict > 0) {
      return fill(status, h("p", { class: "problem", role: "alert", text: `${conflict} of the connections conflict: nothing can be applied.` }));
    }
    if (create + change === 0) return fill(status, "Nothing to change: every connection is as the file says.");
    fill(status, `A dry run: nothing is applied until you confirm.`);
    confirm.hidden = false;
  });
  show("Export / import",
    h("h2", { text: "Export" }),
    h("p", { text: "Every connection's definition by name, without ids or secrets. Secrets and tokens move only encrypted, with keyport export --with-secrets." }),
    download,
    h("h2", { text: "Import" }),
    h("p", { text: "A file as the export writes it (with client secrets added for connections it creates). Keyport first shows what it would create, change or leave alone." }),
    field("import-file", "Export file", input),
    plan,
    status,
    confirm);
}

function planTable(outcome) {
  const words = { create: "Create", change: "Change", unchanged: "Unchanged", conflict: "Conflict" };
  return h("table", {},
    h("caption", { text: outcome.applied ? "Applied" : "What the import would do" }),
    h("thead", {}, h("tr", {}, ...["Name", "Action", "Detail"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, ...outcome.connections.map((step) => h("tr", { "data-action": step.action },
      h("th", { scope: "row", text: step.name }),
      h("td", { text: words[step.action] || step.action }),
      h("td", { text: step.fields ? step.fields.join(", ") : (step.reason || "") })))));
}

// ---- forms --------------------------------------------------------------------------------

// A labelled field with its own error line, which the API's `field` fills.
function field(name, label, input, hint) {
  input.id = `field-${name}`;
  input.name = name;
  const error = h("p", { class: "field-error", id: `error-${name}`, role: "alert" });
  const hintId = hint ? `hint-${name}` : null;
  if (hintId) input.setAttribute("aria-describedby", `${hintId} error-${name}`);
  else input.setAttribute("aria-describedby", `error-${name}`);
  return h("div", { class: "field", "data-field": name },
    h("label", { for: input.id, text: label }), input,
    hint ? h("p", { class: "hint", id: hintId, text: hint }) : null,
    error);
}

function clearErrors(form) {
  for (const element of form.querySelectorAll(".field-error")) element.textContent = "";
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
  const general = form.querySelector(".form-error");
  if (general) fill(general);
}

// Shows the API's error next to its field, or at the form's top when it names none.
function showError(form, result) {
  const data = result.data || {};
  const full = data.field ? String(data.field) : null;
  const candidates = full ? [full, full.split(/[.[]/)[0]] : [];
  const name = candidates.find((n) => form.querySelector(`#error-${CSS.escape(n)}`)) || null;
  const error = name ? form.querySelector(`#error-${CSS.escape(name)}`) : null;
  if (error) {
    error.textContent = data.message || "Not valid.";
    const input = form.querySelector(`#field-${CSS.escape(name)}`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  } else {
    fill(form.querySelector(".form-error"), problem(result));
  }
}

function pairs(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed) continue;
    const at = trimmed.indexOf("=");
    if (at > 0) out[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim();
    else out[trimmed] = "";
  }
  return out;
}

function pairsText(object) {
  return Object.entries(object || {}).map(([k, v]) => `${k}=${v}`).join("\n");
}

const GRANT_WORDS = {
  authorization_code: "Authorization code",
  authorization_code_pkce: "Authorization code with PKCE",
  authorization_code_hybrid: "OpenID Connect hybrid (code and ID token)",
  client_credentials: "Client credentials",
  password: "Resource-owner password",
};

// The grants a person authorizes in a browser (GrantType::is_interactive).
const INTERACTIVE_GRANTS = ["authorization_code", "authorization_code_pkce", "authorization_code_hybrid"];

// ---- create a connection: the four steps --------------------------------------------------

async function wizard() {
  const providers = await api("GET", "/providers");
  if (!providers.ok) return show("Create a connection", problem(providers));
  // `custom` takes every field from the connection: the form asks for its URLs.
  const catalog = (providers.data.providers || []).filter((p) => p.key !== "custom");
  const state = { step: 1, provider: null, connection: null };
  const steps = ["Provider", "Authentication", "Test and authorize", "Invite roles"];
  const progress = () => h("ol", { class: "steps", "aria-label": "Steps" },
    ...steps.map((name, i) => h("li", { class: i + 1 === state.step ? "current" : i + 1 < state.step ? "done" : "", "aria-current": i + 1 === state.step ? "step" : null, text: name })));

  const providerSelect = h("select", {},
    ...catalog.map((p) => h("option", { value: p.key }, p.display_name)),
    h("option", { value: "custom" }, "Custom (any OAuth 2.0 provider)"));
  const name = h("input", { type: "text", required: true, autocomplete: "off" });
  const description = h("input", { type: "text", autocomplete: "off" });
  const callback = h("input", { type: "text", readonly: true, value: session.callback_url });
  const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await navigator.clipboard.writeText(session.callback_url);
      copy.textContent = "Copied";
    } catch {
      callback.select();
      copy.textContent = "Select and copy";
    }
  } }, "Copy");

  function stepOne() {
    const form = h("form", { novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      clearErrors(form);
      if (!name.value.trim()) {
        form.querySelector("#error-name").textContent = "A connection needs a name.";
        name.setAttribute("aria-invalid", "true");
        name.focus();
        return;
      }
      state.provider = catalog.find((p) => p.key === providerSelect.value) || null;
      state.step = 2;
      render();
    } },
    h("div", { class: "form-error" }),
    field("provider", "Provider", providerSelect),
    field("name", "Name", name, "Unique among connections; bots ask for the token by it."),
    field("description", "Description", description),
    h("div", { class: "field" },
      h("label", { for: "callback-url", text: "Callback URL to register at the provider" }),
      h("div", { class: "inline" }, Object.assign(callback, { id: "callback-url" }), copy)),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Next: authentication")));
    return form;
  }

  function stepTwo() {
    const p = state.provider;
    const grants = p && p.grant_types && p.grant_types.length ? p.grant_types : Object.keys(GRANT_WORDS);
    const grant = h("select", {}, ...grants.map((g) => h("option", { value: g }, GRANT_WORDS[g] || g)));
    const clientId = h("input", { type: "text", autocomplete: "off", required: true });
    const secret = h("input", { type: "password", autocomplete: "new-password" });
    const scopes = h("input", { type: "text", autocomplete: "off", value: p ? (p.default_scopes || []).join(",") : "" });
    const audience = h("input", { type: "text", autocomplete: "off" });
    const resource = h("input", { type: "text", autocomplete: "off" });
    const extra = h("textarea", { rows: "3" });
    const placeholderInputs = (p && p.placeholders ? p.placeholders : []).map((ph) => ({
      name: ph.name,
      input: ph.allowed_values && ph.allowed_values.length
        ? h("select", {}, ...ph.allowed_values.map((v) => h("option", { value: v }, v)))
        : h("input", { type: "text", autocomplete: "off", placeholder: ph.example || "" }),
      description: ph.description,
    }));
    const urls = p ? [] : [
      ["issuer", "Issuer (its endpoints are discovered)"],
      ["authorization_url", "Authorization URL"],
      ["token_url", "Token URL"],
      ["revocation_url", "Revocation URL"],
    ].map(([key, label]) => ({ key, label, input: h("input", { type: "url", autocomplete: "off" }) }));
    const form = h("form", { novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      clearErrors(form);
      const body = {
        name: name.value.trim(),
        description: description.value.trim(),
        provider: p ? p.key : "custom",
        grant_type: grant.value,
        client_id: clientId.value.trim(),
        scopes: scopes.value,
      };
      if (secret.value) body.client_secret = secret.value;
      if (audience.value.trim()) body.audience = audience.value.trim();
      if (resource.value.trim()) body.resource = resource.value.trim();
      const params = pairs(extra.value);
      if (Object.keys(params).length) body.authorization_params = params;
      if (placeholderInputs.length) {
        body.provider_params = Object.fromEntries(placeholderInputs.map((x) => [x.name, x.input.value.trim()]));
      }
      for (const u of urls) if (u.input.value.trim()) body[u.key] = u.input.value.trim();
      const submit = form.querySelector("button[type=submit]");
      submit.disabled = true;
      const result = await api("POST", "/connections", body);
      submit.disabled = false;
      // The secret leaves the page either way: it is never shown again.
      secret.value = "";
      if (!result.ok) return showError(form, result);
      state.connection = result.data;
      state.step = 3;
      render();
    } },
    h("div", { class: "form-error" }),
    field("grant_type", "Grant type", grant),
    field("client_id", "Client id", clientId),
    field("client_secret", "Client secret", secret, "Write-only: Keyport stores it encrypted and never shows it again."),
    ...placeholderInputs.map((x) => field(`provider_params.${x.name}`, x.name, x.input, x.description)),
    ...urls.map((u) => field(u.key, u.label, u.input)),
    field("scopes", "Scopes", scopes, "Comma-separated."),
    field("audience", "Audience", audience),
    field("resource", "Resource", resource),
    field("authorization_params", "Extra authorization parameters", extra, "One name=value per line."),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => { state.step = 1; render(); } }, "Back"),
      h("button", { type: "submit" }, "Create the connection")));
    return form;
  }

  function stepThree() {
    const c = state.connection;
    const outcome = h("div", { id: "test-outcome", "aria-live": "polite" });
    const test = h("button", { type: "button", class: "secondary", onclick: async () => {
      fill(outcome, h("p", { text: "Testing…" }));
      const result = await api("POST", `/connections/${encodeURIComponent(c.id)}/test`);
      if (!result.ok) return fill(outcome, problem(result));
      fill(outcome, h("p", { class: result.data.ok ? "success" : "problem", role: result.data.ok ? "status" : "alert" },
        result.data.ok ? "Test passed: " : "Test failed: ", result.data.message));
    } }, "Test the connection");
    const interactive = INTERACTIVE_GRANTS.includes(c.grant_type);
    const save = h("button", { type: "button", onclick: () => authorize(c.id, "shared", `/console/connections/${encodeURIComponent(c.id)}?step=invite`, outcome) },
      interactive ? "Save login credentials" : "Get the token now");
    if (!interactive) {
      save.onclick = null;
      save.addEventListener("click", async () => {
        const result = await api("POST", `/connections/${encodeURIComponent(c.id)}/token/refresh?owner=shared`);
        fill(outcome, result.ok ? h("p", { class: "success", role: "status", text: `Token obtained, valid until ${when(result.data.expires_at)}.` }) : problem(result));
      });
    }
    return h("div", {},
      h("p", {}, "Connection ", h("strong", { text: c.name }), " is created."),
      h("div", { class: "actions" }, test, save,
        h("button", { type: "button", class: "secondary", onclick: () => { state.step = 4; render(); } }, "Next: invite roles")),
      outcome);
  }

  function render() {
    const content = state.step === 1 ? stepOne() : state.step === 2 ? stepTwo() : state.step === 3 ? stepThree()
      : inviteForm(state.connection, () => go(`/console/connections/${encodeURIComponent(state.connection.id)}`));
    show("Create a connection", progress(), content);
  }
  render();
}

// Who a connection invites, in words: its roles, then its applications.
function invitedText(c) {
  const apps = (c.invited_applications || []).map((a) => `app ${a}`);
  return [...(c.invited_roles || []), ...apps].join(", ") || "—";
}

// Invites roles and applications to `connection`; `done` runs once saved.
function inviteForm(connection, done) {
  const roles = h("input", { type: "text", autocomplete: "off", value: (connection.invited_roles || []).join(", ") });
  const apps = h("input", { type: "text", autocomplete: "off", value: (connection.invited_applications || []).join(", ") });
  const list = (input) => input.value.split(",").map((r) => r.trim()).filter(Boolean);
  const form = h("form", { novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    clearErrors(form);
    const change = { invited_roles: list(roles), invited_applications: list(apps), version: connection.version };
    const result = await api("PATCH", `/connections/${encodeURIComponent(connection.id)}`, change);
    if (!result.ok) return showError(form, result);
    Object.assign(connection, result.data);
    done(result.data);
  } },
  h("div", { class: "form-error" }),
  field("invited_roles", "Invited roles", roles, "Comma-separated. People and bots with one of these roles may use the connection."),
  field("invited_applications", "Invited applications", apps, "Comma-separated client ids. Applications (client credentials at your identity provider) with keyport/tokens.read may read the shared token."),
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Save the invitations")));
  return form;
}

// Starts an authorization and sends the browser to the provider's consent page; the provider
// sends it back through Keyport's callback to /console/complete, which confirms it as the
// signed-in person.
async function authorize(id, owner, then, outcome) {
  const back = new URL("/console/complete", location.origin);
  back.searchParams.set("then", then);
  const result = await api("POST", `/connections/${encodeURIComponent(id)}/authorize`, { owner, redirect_after: back.toString() });
  if (!result.ok) return fill(outcome, problem(result));
  location.assign(result.data.authorization_url);
}

// ---- a connection's page ------------------------------------------------------------------

async function connectionPage(id) {
  const result = await api("GET", `/connections/${encodeURIComponent(id)}`);
  if (!result.ok) return show("Connection", problem(result), h("p", {}, link("/console/connections", "Back to connections")));
  const c = result.data;
  const health = c.token_health || { shared: {}, user_tokens: {} };
  const outcome = h("div", { id: "token-outcome", "aria-live": "polite" });
  const params = new URLSearchParams(location.search);
  const interactive = INTERACTIVE_GRANTS.includes(c.grant_type);
  const here = `/console/connections/${encodeURIComponent(c.id)}`;
  const tokenActions = h("div", { class: "actions" },
    h("button", { type: "button", class: "secondary", onclick: async () => {
      const r = await api("POST", `/connections/${encodeURIComponent(c.id)}/token/refresh?owner=shared`);
      if (!r.ok) return fill(outcome, problem(r));
      connectionPage(c.id);
    } }, interactive ? "Refresh now" : "Reset the token"),
    interactive ? h("button", { type: "button", onclick: () => authorize(c.id, "shared", here, outcome) }, health.shared.status === "not_authorized" ? "Save login credentials" : "Authorize again") : null,
    health.shared.status !== "not_authorized" ? h("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirm(`Disconnect the shared token of ${c.name}? Keyport revokes it at the provider.`)) return;
      const r = await api("DELETE", `/connections/${encodeURIComponent(c.id)}/token?owner=shared`);
      if (!r.ok) return fill(outcome, problem(r));
      connectionPage(c.id);
    } }, "Disconnect") : null);
  const users = health.user_tokens || {};
  const audit = h("div", { id: "audit" });
  const usedBy = h("div", { id: "used-by" });
  const userTokens = h("div", { id: "user-tokens" });
  const saved = flash;
  flash = null;
  show(c.name,
    params.get("connected") ? h("p", { class: "success", role: "status", text: "Connected: Keyport holds the token." }) : null,
    saved ? h("p", { class: "success", role: "status", id: "saved", text: saved }) : null,
    h("p", { class: "muted", text: c.description || "" }),
    h("section", { "aria-labelledby": "shared-heading" },
      h("h2", { id: "shared-heading", text: "Shared token" }),
      h("p", {}, badge(health.shared.status), health.shared.expires_at ? ` valid until ${when(health.shared.expires_at)}` : ""),
      health.shared.last_error ? h("p", { class: "problem", text: `Last error: ${health.shared.last_error.message}` }) : null,
      tokenActions, outcome),
    h("section", { "aria-labelledby": "users-heading" },
      h("h2", { id: "users-heading", text: "User tokens" }),
      h("p", { text: `${users.total || 0} user token${users.total === 1 ? "" : "s"}; ${users.needs_attention || 0} need attention.` }),
      userTokens),
    h("section", { "aria-labelledby": "invite-heading" },
      h("h2", { id: "invite-heading", text: "Invitations" }),
      inviteForm(c, () => connectionPage(c.id))),
    h("section", { "aria-labelledby": "details-heading" },
      h("h2", { id: "details-heading", text: "Details" }),
      h("dl", { class: "details" },
        ...[["Provider", c.provider], ["Grant type", GRANT_WORDS[c.grant_type] || c.grant_type],
          ["Status", STATUS_WORDS[c.status] || c.status], ["Version", c.version]]
          .flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v === undefined || v === null ? "—" : String(v) })]))),
    h("section", { "aria-labelledby": "edit-heading" },
      h("h2", { id: "edit-heading", text: "Edit" }),
      editForm(c)),
    h("section", { "aria-labelledby": "used-by-heading" },
      h("h2", { id: "used-by-heading", text: "Used by" }), usedBy),
    h("section", { "aria-labelledby": "audit-heading" },
      h("h2", { id: "audit-heading", text: "Audit trail" }), audit),
    h("section", { "aria-labelledby": "delete-heading" },
      h("h2", { id: "delete-heading", text: "Delete" }),
      h("button", { type: "button", class: "danger", onclick: async () => {
        const typed = prompt(`Deleting ${c.name} revokes its shared token and all ${users.total || 0} user tokens at the provider. Type the connection's name to delete it.`);
        if (typed !== c.name) return;
        const r = await api("DELETE", `/connections/${encodeURIComponent(c.id)}?version=${c.version}`);
        if (!r.ok) return fill(outcome, problem(r));
        go("/console/connections");
      } }, "Delete this connection")),
    h("p", {}, link("/console/connections", "Back to connections")));
  loadUserTokens(c, userTokens, null);
  loadAudit(c.id, audit, null, usedBy);
}

// A connection's user tokens, a page at a time: whose, their status in colour and words, and a
// Disconnect for each. Status only: the API never answers with a token here.
async function loadUserTokens(c, container, cursor) {
  const query = cursor ? `?limit=50&cursor=${encodeURIComponent(cursor)}` : "?limit=50";
  const result = await api("GET", `/connections/${encodeURIComponent(c.id)}/tokens${query}`);
  if (!result.ok) return fill(container, problem(result));
  const tokens = result.data.tokens || [];
  const outcome = h("div", { "aria-live": "polite" });
  if (!tokens.length && !cursor) {
    return fill(container, h("p", { class: "muted", text: "Nobody has connected their own token yet." }));
  }
  const rows = tokens.map((t) => h("tr", {},
    h("th", { scope: "row", text: t.subject }),
    h("td", {}, badge(t.status)),
    h("td", { text: when(t.expires_at) }),
    h("td", { text: when(t.last_refresh_at) }),
    h("td", { text: t.last_error ? t.last_error.message : "—" }),
    h("td", {}, h("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirm(`Disconnect ${t.subject}'s token on ${c.name}? Keyport revokes it at the provider; they can connect again.`)) return;
      const r = await api("DELETE", `/connections/${encodeURIComponent(c.id)}/tokens/${encodeURIComponent(t.subject)}`);
      if (!r.ok) return fill(outcome, problem(r));
      flash = `Disconnected ${t.subject}'s token.`;
      connectionPage(c.id);
    } }, "Disconnect", h("span", { class: "visually-hidden", text: ` ${t.subject}` })))));
  fill(container, outcome,
    h("table", {},
      h("caption", { class: "visually-hidden", text: "User tokens and their status" }),
      h("thead", {}, h("tr", {}, ...["Person", "Status", "Expires", "Last refresh", "Last error", "Action"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...rows)),
    result.data.next_cursor ? h("button", { type: "button", class: "secondary", onclick: () => loadUserTokens(c, container, result.data.next_cursor) }, "More people") : null);
}

// Where a connection sends its credentials: changing one of these needs the secret again
// (DESIGN.md's insider rules), and ends the connection's stored tokens.
const DESTINATION_FIELDS = ["provider_params", "issuer", "authorization_url", "token_url", "revocation_url", "client_id"];

// Changes a connection. Only the fields changed are sent, so an unchanged endpoint never asks
// for the secret. The secret is write-only: blank keeps the stored one.
function editForm(c) {
  const text = (value) => h("input", { type: "text", autocomplete: "off", value: value || "" });
  const description = text(c.description);
  const scopes = text((c.scopes || []).join(","));
  const clientId = text(c.client_id);
  // The credential the client authenticates with: a private key for private_key_jwt (its
  // change needs the key again), else the client secret.
  const credential = c.client_auth === "private_key_jwt"
    ? { name: "private_key", label: "Private key (PEM)", words: "private key", set: c.private_key_set }
    : { name: "client_secret", label: "Client secret", words: "client secret", set: c.client_secret_set };
  const secret = credential.name === "private_key"
    ? h("textarea", { rows: "4", autocomplete: "off", spellcheck: "false" })
    : h("input", { type: "password", autocomplete: "new-password" });
  const urls = [
    ["issuer", "Issuer"],
    ["authorization_url", "Authorization URL"],
    ["token_url", "Token URL"],
    ["revocation_url", "Revocation URL"],
  ].map(([key, label]) => ({ key, label, input: h("input", { type: "url", autocomplete: "off", value: c[key] || "" }) }));
  const params = Object.entries(c.provider_params || {}).map(([name, value]) => ({ name, input: text(value) }));
  const secretHint = credential.set
    ? `A ${credential.words} is set (never shown). Leave this blank to keep it; type one to replace it.`
    : `No ${credential.words} is set.`;
  // Says, while the form is filled in, whether saving needs the secret again.
  const needs = h("p", { class: "hint", id: "needs-secret", "aria-live": "polite" });
  const labels = { provider_params: "provider parameters", issuer: "issuer", authorization_url: "authorization URL", token_url: "token URL", revocation_url: "revocation URL", client_id: "client id" };
  function changes() {
    const body = {};
    if (description.value.trim() !== (c.description || "")) body.description = description.value.trim();
    const typedScopes = scopes.value.split(",").map((x) => x.trim()).filter(Boolean);
    if (typedScopes.join(",") !== (c.scopes || []).join(",")) body.scopes = typedScopes.join(",");
    if (clientId.value.trim() !== (c.client_id || "")) body.client_id = clientId.value.trim();
    for (const u of urls) if (u.input.value.trim() !== (c[u.key] || "")) body[u.key] = u.input.value.trim();
    if (params.some((p) => p.input.value.trim() !== c.provider_params[p.name])) {
      body.provider_params = Object.fromEntries(params.map((p) => [p.name, p.input.value.trim()]));
    }
    return body;
  }
  function update() {
    const moved = DESTINATION_FIELDS.filter((key) => key in changes());
    needs.textContent = moved.length
      ? `Changing the ${moved.map((key) => labels[key]).join(", ")} moves where Keyport sends this connection's credentials: type the ${credential.words} again to save. Its stored tokens are then revoked and must be authorized again.`
      : "";
  }
  // Beside the secret: what it is needed for now, then the API's error, if any.
  const secretField = field(credential.name, credential.label, secret, secretHint);
  secretField.insertBefore(needs, secretField.querySelector(".field-error"));
  secret.setAttribute("aria-describedby", `hint-${credential.name} needs-secret error-${credential.name}`);
  const form = h("form", { novalidate: true, oninput: update, onsubmit: async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = changes();
    if (secret.value) body[credential.name] = secret.value;
    if (!Object.keys(body).length) {
      fill(form.querySelector(".form-error"), h("p", { class: "problem", role: "alert", text: "Nothing has changed." }));
      return;
    }
    body.version = c.version;
    // The last save's message would read as this one's.
    document.getElementById("saved")?.remove();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    const result = await api("PATCH", `/connections/${encodeURIComponent(c.id)}`, body);
    submit.disabled = false;
    // The secret leaves the page either way: it is never shown again.
    secret.value = "";
    if (!result.ok) return showError(form, result);
    flash = `Saved (version ${result.data.version}).`;
    connectionPage(c.id);
  } },
  h("div", { class: "form-error" }),
  h("p", { class: "hint", text: `A change to the provider parameters, an endpoint, the issuer or the client id needs the ${credential.words} again.` }),
  field("description", "Description", description),
  field("scopes", "Scopes", scopes, "Comma-separated."),
  ...params.map((p) => field(`provider_params.${p.name}`, p.name, p.input, `Changing it needs the ${credential.words} again.`)),
  ...urls.map((u) => field(u.key, u.label, u.input, `Changing it needs the ${credential.words} again.`)),
  field("client_id", "Client id", clientId, `Changing it needs the ${credential.words} again.`),
  secretField,
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Save changes")));
  return form;
}

async function loadAudit(id, container, cursor, usedBy) {
  const query = cursor ? `?limit=20&cursor=${encodeURIComponent(cursor)}` : "?limit=20";
  const result = await api("GET", `/connections/${encodeURIComponent(id)}/audit${query}`);
  if (!result.ok) return fill(container, problem(result));
  if (usedBy) fill(usedBy, fetchTable(result.data.last_fetches || []));
  const events = result.data.events || [];
  const list = events.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ...["When", "What", "Who", "Token"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...events.map((e) => h("tr", {}, h("td", { text: when(e.at) }), h("td", { text: e.action }), h("td", { text: e.actor }), h("td", { text: e.owner || "—" })))))
    : h("p", { text: "No events yet." });
  fill(container, list,
    result.data.next_cursor ? h("button", { type: "button", class: "secondary", onclick: () => loadAudit(id, container, result.data.next_cursor) }, "Older events") : null);
}

// Who fetched the connection's tokens last, through which rule: fingerprints, never tokens.
function fetchTable(fetches) {
  if (!fetches.length) return h("p", { text: "Nobody has fetched a token yet." });
  return h("table", {}, h("thead", {}, h("tr", {}, ...["Caller", "Kind", "Allowed by", "Token", "Last fetch", "Fingerprint"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, ...fetches.map((f) => h("tr", {},
      h("td", { text: f.caller }), h("td", { text: f.caller_kind }),
      h("td", { text: f.scope ? `${f.via} (${f.scope})` : f.via }), h("td", { text: f.owner }),
      h("td", { text: when(f.last_at) }), h("td", {}, h("code", { text: f.token_fingerprint }))))));
}

// ---- notifications ------------------------------------------------------------------------

// The event types Keyport notifies about, in words (the server's list; a test holds the two
// together).
const EVENT_WORDS = {
  "connection.role_invited": "A role is invited to a connection",
  "connection.application_invited": "An application is invited to a connection",
  "connection.disabled": "A connection is disabled",
  "connection.deleted": "A connection is deleted",
  "token.refresh_failed": "A refresh fails",
  "token.needs_reauthorization": "A token needs authorizing again",
  "token.recovered": "A token recovers",
  "grant.ending": "A grant nears its end",
};

const DELIVERY_WORDS = { delivered: "Delivered", failed: "Failing, retrying", gave_up: "Given up", gone: "Receiver gone (410)" };

// Webhook subscriptions: who hears about what, their last delivery in colour and words, and a
// signing secret shown once when made or rotated (never stored by the page).
async function notificationsPage(secretNote) {
  const result = await api("GET", "/webhooks");
  if (!result.ok) return show("Notifications", problem(result));
  const webhooks = result.data.webhooks || [];
  const outcome = h("div", { id: "webhook-outcome", "aria-live": "polite" });
  const rows = webhooks.map((w) => {
    const last = w.last_delivery;
    const delivery = last
      ? h("span", { class: `badge status-${last.outcome === "delivered" ? "valid" : "refresh_failing"}`, text: DELIVERY_WORDS[last.outcome] || last.outcome })
      : h("span", { class: "muted", text: "Nothing sent yet" });
    const change = async (body, done) => {
      const r = await api("PATCH", `/webhooks/${encodeURIComponent(w.id)}`, { ...body, version: w.version });
      if (!r.ok) return fill(outcome, problem(r));
      notificationsPage(done);
    };
    return h("tr", {},
      h("th", { scope: "row" }, h("code", { text: w.url }), w.description ? h("div", { class: "muted", text: w.description }) : null),
      h("td", { text: w.event_types.length ? w.event_types.map((t) => EVENT_WORDS[t] || t).join("; ") : "Every event" }),
      h("td", {}, badge(w.enabled ? "active" : "disabled")),
      h("td", {}, delivery, last ? h("div", { class: "muted", text: `${when(last.at)}${last.status ? ` (HTTP ${last.status})` : ""}` }) : null),
      h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => change({ enabled: !w.enabled }) }, w.enabled ? `Pause ${w.url}` : `Resume ${w.url}`),
        h("button", { type: "button", class: "secondary", onclick: async () => {
          const r = await api("POST", `/webhooks/${encodeURIComponent(w.id)}/rotate-secret`);
          if (!r.ok) return fill(outcome, problem(r));
          notificationsPage({ url: w.url, secret: r.data.secret, rotated: true });
        } }, `New secret for ${w.url}`),
        h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Stop sending notifications to ${w.url}?`)) return;
          const r = await api("DELETE", `/webhooks/${encodeURIComponent(w.id)}`);
          if (!r.ok) return fill(outcome, problem(r));
          notificationsPage();
        } }, `Delete ${w.url}`))));
  });
  const url = h("input", { type: "url", autocomplete: "off", placeholder: "https://hooks.example.com/keyport" });
  const description = h("input", { type: "text", autocomplete: "off" });
  const boxes = Object.entries(EVENT_WORDS).map(([type, words]) => {
    const box = h("input", { type: "checkbox", value: type, id: `event-${type}` });
    return h("div", { class: "check" }, box, h("label", { for: `event-${type}`, text: words }));
  });
  const form = h("form", { novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    clearErrors(form);
    const event_types = [...form.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
    const r = await api("POST", "/webhooks", { url: url.value.trim(), description: description.value.trim(), event_types });
    if (!r.ok) return showError(form, r);
    notificationsPage({ url: r.data.webhook.url, secret: r.data.secret, rotated: false });
  } },
  h("div", { class: "form-error" }),
  field("url", "Receiver URL", url, "https; Keyport signs every delivery (Standard Webhooks) and retries for about three days."),
  field("description", "Description", description, "Optional: who reads it."),
  h("fieldset", {}, h("legend", { text: "Events (none ticked: every event)" }), ...boxes),
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Subscribe")));
  show("Notifications",
    h("p", { class: "muted", text: "People learn about a connection before a bot fails. On AWS every event also goes on the installation's EventBridge bus." }),
    secretNote ? h("div", { class: "success", role: "status", id: "webhook-secret" },
      h("p", { text: secretNote.rotated
        ? `New signing secret for ${secretNote.url}. The old one keeps signing beside it for 24 hours. Copy it now: Keyport never shows it again.`
        : `Subscribed ${secretNote.url}. Its signing secret — copy it now: Keyport never shows it again.` }),
      h("code", { text: secretNote.secret })) : null,
    outcome,
    h("section", { "aria-labelledby": "webhooks-heading" },
      h("h2", { id: "webhooks-heading", text: "Webhooks" }),
      rows.length
        ? h("table", {}, h("thead", {}, h("tr", {}, ...["Receiver", "Events", "Status", "Last delivery", "Actions"].map((t) => h("th", { scope: "col", text: t })))), h("tbody", {}, ...rows))
        : h("p", { text: "No webhook yet." })),
    h("section", { "aria-labelledby": "subscribe-heading" },
      h("h2", { id: "subscribe-heading", text: "Add a webhook" }), form));
}

// ---- my connections -----------------------------------------------------------------------

async function myConnections() {
  const result = await api("GET", "/me/connections");
  if (!result.ok) return show("My connections", problem(result));
  const connections = result.data.connections || result.data || [];
  if (!connections.length) {
    return show("My connections", h("div", { class: "empty" }, h("p", { text: "No connection is shared with your roles yet." })));
  }
  const outcome = h("div", { "aria-live": "polite" });
  show("My connections", outcome, h("ul", { class: "cards" }, ...connections.map((c) => {
    const status = c.user_token || "not_authorized";
    const interactive = INTERACTIVE_GRANTS.includes(c.grant_type);
    return h("li", { class: "card" },
      h("h2", { text: c.name }),
      h("p", { class: "muted", text: c.description || c.provider }),
      h("p", {}, "Your token: ", badge(status)),
      h("div", { class: "actions" },
        interactive ? h("button", { type: "button", onclick: () => authorize(c.id, "user", "/console/me", outcome) }, status === "not_authorized" ? `Connect ${c.name}` : `Reconnect ${c.name}`) : null,
        status !== "not_authorized" ? h("button", { type: "button", class: "danger", onclick: async () => {
          const r = await api("DELETE", `/connections/${encodeURIComponent(c.id)}/token?owner=user`);
          if (!r.ok) return fill(outcome, problem(r));
          myConnections();
        } }, `Disconnect ${c.name}`) : null));
  })));
}

// ---- back from a provider's consent -------------------------------------------------------

async function completeScreen() {
  const params = new URLSearchParams(location.search);
  const completion = params.get("keyport_completion");
  const then = params.get("then") || "/console/";
  const safeThen = then.startsWith("/console/") ? then : "/console/";
  // The completion value is single use: take it out of the address bar and history at once.
  history.replaceState({}, "", "/console/complete");
  // The person said no at the provider: nothing went wrong, and nothing changed.
  if (params.get("keyport_status") === "denied" && params.get("error") === "access_denied") {
    return show("Authorization declined",
      h("p", { text: "You declined at the provider, so Keyport was given no access and nothing has changed." }),
      h("p", { class: "muted", text: "You can start it again whenever you are ready." }),
      h("p", {}, link(safeThen, "Back")));
  }
  if (!completion) {
    const said = params.get("error_description") || params.get("error");
    return show("Authorization not completed", h("p", { class: "problem", role: "alert", text: said ? `The provider did not grant access: ${said}` : "The provider did not complete the authorization." }),
      h("p", {}, link(safeThen, "Back")));
  }
  show("Completing the authorization", h("p", { text: "Confirming as you…" }));
  const result = await api("POST", "/oauth/complete", { completion });
  if (!result.ok) {
    return show("Authorization not completed", problem(result), h("p", {}, link(safeThen, "Back")));
  }
  const separator = safeThen.includes("?") ? "&" : "?";
  go(`${safeThen}${separator}connected=1`);
}

boot();
