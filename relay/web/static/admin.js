// The admin center. Every action is one admin request posted to /admin/api/<type> — the same
// requests, role checks and audit as `btogether admin …` — and every list is re-read from
// there when the relay says (server-sent events) that the tenant's devices changed.
"use strict";

const el = btg.el;
const state = { admin: null, tenant: null, tenants: [], section: "devices", refresh: null,
                events: null, users: [], policies: [], devices: [] };
const STATES = {
  waiting_for_activation: ["Waiting for activation", "warn"],
  waiting_for_sign_in: ["Waiting for sign-in", "warn"],
  signed_in: ["Signed in", "ok"],
};
const KINDS = { desk_phone: "Desk phone", conference_phone: "Conference phone", room_system: "Room system" };

function call(type, fields) {
  return btg.post("/admin/api/" + type, fields || {});
}

function scoped(fields) {
  return Object.assign({ tenant_id: state.tenant }, fields || {});
}

function options(pairs, selected) {
  return pairs.map(([value, label]) => el("option", { value, selected: value === selected }, label));
}

function badge(text, kind) {
  return el("span", { class: "badge " + (kind || "") }, text);
}

function userName(id) {
  const user = state.users.find((u) => u.id === id);
  return user ? user.name : id;
}

function policyName(id) {
  const policy = state.policies.find((p) => p.id === id);
  return policy ? policy.name : id;
}

// A form whose inputs are named after the request's fields. `fields`: [name, label, kind, extra]
// with kind text | password | number | checkbox | select | file. Empty inputs are left out.
function requestForm({ id, type, fields, submit, scopedToTenant, build, describe, after }) {
  const form = el("form", { class: "inline", id });
  const result = el("div", { class: "result" });
  for (const [name, label, kind, extra] of fields) {
    let input;
    if (kind === "select") {
      input = el("select", { name }, options(typeof extra === "function" ? extra() : extra));
    } else if (kind === "checkbox") {
      input = el("input", { name, type: "checkbox" });
    } else if (kind === "file") {
      input = el("input", { name, type: "file", accept: ".csv,text/csv" });
    } else {
      input = el("input", { name, type: kind || "text", placeholder: extra || "" });
    }
    form.append(el("label", {}, label, input));
  }
  form.append(el("button", { class: "primary", type: "submit" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const input of form.querySelectorAll("[name]")) {
      if (input.type === "checkbox") body[input.name] = input.checked;
      else if (input.type === "file") {
        if (input.files.length) body[input.name] = await input.files[0].text();
      } else if (input.value !== "") body[input.name] = input.type === "number" ? Number(input.value) : input.value;
    }
    const fieldsToSend = build ? build(body) : body;
    try {
      const answer = await call(type, scopedToTenant ? scoped(fieldsToSend) : fieldsToSend);
      btg.notice(result, "ok", ...(describe ? describe(answer) : ["Done."]));
      if (after) after(answer);
      if (state.refresh) await state.refresh();
    } catch (error) {
      btg.notice(result, "error", error.message);
    }
  });
  return el("div", {}, form, result);
}

function panel(title, ...content) {
  return el("section", { class: "panel" }, el("h3", {}, title), ...content);
}

function table(columns, rows, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows));
}

// A button that must be clicked twice (no native confirm dialogs).
function confirmButton(label, action) {
  const button = el("button", { type: "button", class: "danger" }, label);
  button.addEventListener("click", async () => {
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = "Confirm: " + label.toLowerCase();
      return;
    }
    await action();
  });
  return button;
}

function actionButton(label, action) {
  return el("button", { type: "button", onclick: action }, label);
}

// Rename (and, for a device, move) something: a dialog with the request's fields.
function renameButton({ type, idField, id, current, extraFields }) {
  return actionButton("Rename", () => {
    const form = requestForm({ id: "rename-form", type, submit: "Rename",
      fields: [["name", "New name", "text", current], ...(extraFields || [])],
      build: (b) => Object.assign({ [idField]: id }, b), describe: (r) => [`Renamed to ${r.name}.`],
      after: () => { if (type === "tenant.rename") loadTenants(); } });
    openDialog(el("h3", {}, "Rename " + current), form);
  });
}

async function run(target, action) {
  try {
    await action();
    if (state.refresh) await state.refresh();
  } catch (error) {
    btg.notice(target, "error", error.message);
  }
}

function openDialog(...content) {
  const dialog = document.getElementById("dialog");
  dialog.replaceChildren(...content, el("p", {}, el("button", { type: "button", onclick: () => dialog.close() }, "Close")));
  dialog.showModal();
  return dialog;
}

// --- devices -------------------------------------------------------------------------------

async function loadDirectory() {
  const [users, policies] = await Promise.all([call("user.list", scoped()), call("policy.list", scoped())]);
  state.users = users.users;
  state.policies = policies.policies;
}

function deviceRow(device, result) {
  const [stateText, stateKind] = STATES[device.state];
  const actions = el("td", { class: "actions" });
  if (device.state === "waiting_for_activation") {
    actions.append(actionButton("Generate verification code", () => run(result, async () => {
      const code = await call("code.create", { device_id: device.id });
      btg.notice(result, "ok", `Verification code for ${device.name}: `,
        el("span", { class: "secret", id: "verification-code" }, code.code),
        ` (valid until ${btg.when(code.expires_at)}). Enter it on the device.`);
    })));
  }
  if (device.state === "waiting_for_sign_in") actions.append(actionButton("Sign in a user", () => signInDialog(device)));
  if (device.state === "signed_in") {
    actions.append(actionButton("Sign out", () => run(result, () => call("device.sign_out", { device_id: device.id }))));
  }
  actions.append(renameButton({ type: "device.rename", idField: "device_id", id: device.id, current: device.name,
    extraFields: [["location", "Location", "text", device.location || ""]] }));
  actions.append(confirmButton("Remove", () => run(result, () => call("device.remove", { device_id: device.id }))));
  const lockout = device.locked_out_until
    ? badge(`locked out until ${btg.when(device.locked_out_until)}: ${device.lockout_reason}`, "bad") : "–";
  return el("tr", { "data-device": device.id, "data-state": device.state },
    el("td", {}, device.name), el("td", {}, device.mac || "–"), el("td", {}, KINDS[device.kind]),
    el("td", {}, device.location || "–"), el("td", { class: "state" }, badge(stateText, stateKind)),
    el("td", {}, device.user_id ? userName(device.user_id) : "–"),
    el("td", { class: "online" }, device.online ? badge("Online", "ok") : badge("Offline")),
    el("td", {}, device.online ? "now" : btg.when(device.last_seen)),
    el("td", {}, lockout), actions);
}

async function signInDialog(device) {
  const message = el("div", { class: "result" });
  const dialog = openDialog(el("h3", {}, `Sign in a user to ${device.name}`), message);
  btg.notice(message, "ok", "Asking the device for its login code…");
  let code;
  try {
    code = await call("login_code.get", { device_id: device.id });
  } catch (error) {
    btg.notice(message, "error", error.message);
    return;
  }
  btg.notice(message, "ok", "The device shows the login code ", el("span", { class: "secret", id: "login-code" }, code.code),
    ` (valid until ${btg.when(code.expires_at)}).`);
  const form = el("form", { id: "sign-in-form" },
    el("label", {}, "Login code", el("input", { name: "code", value: code.code })),
    el("label", {}, "Account", el("select", { name: "user_id" }, options(state.users.map((u) => [u.id, u.name])))),
    el("label", {}, "Mode", el("select", { name: "mode" }, options([["", "By kind (default)"], ["personal", "Personal"],
      ["meeting_room", "Meeting room"], ["common_area", "Common area"]]))),
    el("button", { class: "primary", type: "submit" }, "Sign in"));
  const outcome = el("div", { class: "result" });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(form).entries());
    if (!body.mode) delete body.mode;
    try {
      await call("device.sign_in", Object.assign({ device_id: device.id }, body));
      dialog.close();
      if (state.refresh) await state.refresh();
    } catch (error) {
      btg.notice(outcome, "error", error.message);
    }
  });
  dialog.insertBefore(el("div", {}, form, outcome), dialog.lastChild);
}

async function devicesSection(main) {
  const result = el("div", { class: "result", id: "device-result" });
  const filters = {
    search: el("input", { type: "search", id: "device-search", placeholder: "Search name, MAC, location" }),
    state: el("select", { id: "device-state" }, options([["", "Any state"], ...Object.entries(STATES).map(([k, v]) => [k, v[0]])])),
    kind: el("select", { id: "device-kind" }, options([["", "Any kind"], ...Object.entries(KINDS)])),
    online: el("select", { id: "device-online" }, options([["", "Online or not"], ["yes", "Online"], ["no", "Offline"]])),
  };
  const tbody = el("tbody");
  const kinds = Object.entries(KINDS);
  main.replaceChildren(
    el("h2", {}, "Devices"),
    panel("Provision new devices",
      el("p", { class: "muted" }, "List devices by MAC address, one by one or from a CSV file (MAC address,Name,Kind,Location). " +
        "Then generate a verification code and enter it on the device."),
      requestForm({ id: "device-add", type: "device.add", submit: "Add device", scopedToTenant: true,
        fields: [["mac", "MAC address", "text", "AA:BB:CC:DD:EE:FF"], ["location", "Location", "text", "Building 1 / Floor 2"],
                 ["name", "Name", "text", "(the location)"], ["kind", "Kind", "select", kinds]],
        describe: (d) => [`Added ${d.name} (${d.mac}), waiting for activation.`] }),
      el("hr"),
      requestForm({ id: "device-import", type: "device.import", submit: "Upload CSV", scopedToTenant: true,
        fields: [["csv", "CSV file", "file"], ["kind", "Kind", "select", [["", "(the file's Kind column)"], ...kinds]],
                 ["skip_bad_rows", "Skip bad lines", "checkbox"]],
        describe: (r) => [`Imported ${r.added.length} device(s).`,
          r.errors.length ? el("ul", {}, r.errors.map((e) => el("li", {}, `line ${e.line}: ${e.message}`))) : ""] })),
    result,
    el("div", { class: "filters" }, Object.values(filters)),
    el("table", { id: "devices" },
      el("thead", {}, el("tr", {}, ["Name", "MAC", "Kind", "Location", "State", "Signed in as", "Online",
        "Last seen", "Lock-out", ""].map((c) => el("th", {}, c)))), tbody));
  const render = () => {
    const text = filters.search.value.trim().toLowerCase();
    const rows = state.devices.filter((d) =>
      (!text || [d.name, d.mac || "", d.location].some((v) => v.toLowerCase().includes(text))) &&
      (!filters.state.value || d.state === filters.state.value) &&
      (!filters.kind.value || d.kind === filters.kind.value) &&
      (!filters.online.value || d.online === (filters.online.value === "yes")));
    tbody.replaceChildren(...(rows.length ? rows.map((d) => deviceRow(d, result))
      : [el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No devices."))]));
  };
  Object.values(filters).forEach((f) => f.addEventListener("input", render));
  state.refresh = async () => {
    const [listed, seen] = await Promise.all([call("device.list", scoped()), loadDirectory().then(() => lastSeen())]);
    state.devices = listed.devices.map((d) => Object.assign({ last_seen: seen[d.id] }, d));
    render();
  };
  await state.refresh();
}

async function lastSeen() {
  try {
    const response = await fetch("/admin/api/last_seen?tenant=" + encodeURIComponent(state.tenant), { credentials: "same-origin" });
    return response.ok ? (await response.json()).last_seen : {};
  } catch (e) {
    return {};
  }
}

// --- users and their laptops ---------------------------------------------------------------

function credentialRows(credentials, result) {
  return credentials.map((c) => el("tr", { "data-credential": c.credential_id },
    el("td", {}, c.credential_id), el("td", {}, c.user_name), el("td", {}, c.laptop_name || "(issued token)"),
    el("td", {}, btg.when(c.created_at)), el("td", {}, c.revoked_at ? badge("revoked " + btg.when(c.revoked_at), "bad") : badge("active", "ok")),
    el("td", { class: "actions" }, c.revoked_at ? "" : confirmButton("Revoke", () => run(result, () => call("credential.revoke", { credential_id: c.credential_id }))))));
}

function personActions(kind, id, name, result) {
  return [
    actionButton("Set password", () => {
      const form = requestForm({ id: "password-form", type: "password.set", submit: "Set password",
        fields: [["login", "Login", "text", name], ["password", "New password", "password"]],
        build: (b) => Object.assign({ subject_kind: kind, subject_id: id }, b),
        describe: (r) => [`${name} signs in as “${r.login}”.`] });
      openDialog(el("h3", {}, `Password for ${name}`), form);
    }),
    actionButton("Set-up link", () => run(result, async () => {
      const link = await call("setup_link.create", { subject_kind: kind, subject_id: id });
      btg.notice(result, "ok", `One-time set-up link for ${name} (login “${link.login}”, valid until ${btg.when(link.expires_at)}): `,
        el("span", { class: "secret", id: "setup-link" }, location.origin + link.path));
    })),
  ];
}

async function usersSection(main) {
  const result = el("div", { class: "result", id: "user-result" });
  const tbody = el("tbody");
  const laptops = el("tbody");
  main.replaceChildren(
    el("h2", {}, "Users"),
    panel("Create a user", requestForm({ id: "user-create", type: "user.create", submit: "Create user", scopedToTenant: true,
      fields: [["name", "Name", "text"], ["policy_id", "Policy", "select", () => [["", "(tenant default)"], ...state.policies.map((p) => [p.id, p.name])]]],
      describe: (u) => [`Created ${u.name} (${u.id}).`] })),
    result,
    table(["Name", "Id", "Policy", ""], [], "users"),
    panel("Laptops signed in", el("p", { class: "muted" }, "Revoking a laptop's credential disconnects it."),
      el("table", { id: "laptops" }, el("thead", {}, el("tr", {}, ["Credential", "User", "Laptop", "Since", "State", ""].map((c) => el("th", {}, c)))), laptops)));
  main.querySelector("#users tbody").replaceWith(tbody);
  state.refresh = async () => {
    await loadDirectory();
    tbody.replaceChildren(...state.users.map((u) => el("tr", { "data-user": u.id },
      el("td", {}, u.name), el("td", {}, u.id), el("td", {}, u.policy_id ? policyName(u.policy_id) : "(default)"),
      el("td", { class: "actions" }, ...personActions("user", u.id, u.name, result),
        renameButton({ type: "user.rename", idField: "user_id", id: u.id, current: u.name }),
        confirmButton("Delete", () => run(result, () => call("user.delete", { user_id: u.id }))),
        actionButton("Issue laptop credential", () => run(result, async () => {
          const issued = await call("credential.issue", { user_id: u.id });
          btg.notice(result, "ok", `Credential for ${u.name} (shown once): `, el("span", { class: "secret" }, issued.token));
        }))))));
    const listed = await call("credential.list", scoped());
    laptops.replaceChildren(...credentialRows(listed.credentials, result));
  };
  await state.refresh();
}

// --- sign-in with the tenant's identity provider (OpenID Connect) -------------------------------

const LIST_FIELDS = ["scopes", "allowed_domains", "allowed_groups", "owner_groups", "device_admin_groups"];
const SSO_FIELDS = [
  ["label", "Button label (Sign in with …)", "text", "Contoso account"],
  ["issuer", "Issuer URL", "text", "https://login.example.com/realms/contoso"],
  ["client_id", "Client id", "text"],
  ["client_secret", "Client secret (empty: keep)", "password"],
  ["scopes", "Scopes", "text", "openid email profile offline_access"],
  ["subject_claim", "Subject claim", "text", "sub"],
  ["email_claim", "Email claim", "text", "email"],
  ["name_claim", "Name claim", "text", "name"],
  ["groups_claim", "Groups claim", "text", "groups"],
  ["allowed_domains", "Allowed email domains", "text", "(any)"],
  ["allowed_groups", "Allowed groups", "text", "(anyone)"],
  ["owner_groups", "Owner groups (every tenant)", "text"],
  ["device_admin_groups", "Device administrator groups", "text"],
  ["auth_params", "Extra parameters (name=value …)", "text"],
  ["create_users", "Create accounts at first sign-in", "checkbox"],
  ["require_verified_email", "Match only verified emails", "checkbox"],
  ["enabled", "Offer the button", "checkbox"],
  ["no_check", "Save without checking the provider", "checkbox"],
];

function words(text) {
  return (text || "").split(/[\s,]+/).filter((w) => w);
}

function ssoBody(b) {
  const body = Object.assign({}, b);
  for (const name of LIST_FIELDS) if (name in body) body[name] = words(body[name]);
  body.auth_params = Object.fromEntries(words(b.auth_params).map((pair) => {
    const at = pair.indexOf("=");
    return at > 0 ? [pair.slice(0, at), pair.slice(at + 1)] : [pair, ""];
  }));
  body.check = !b.no_check;
  delete body.no_check;
  return body;
}

function fillSsoForm(form, provider) {
  const values = provider ? Object.assign({}, provider, {
    auth_params: Object.entries(provider.auth_params).map(([k, v]) => `${k}=${v}`).join(" "),
  }) : { require_verified_email: true, enabled: true };
  for (const input of form.querySelectorAll("[name]")) {
    const value = values[input.name];
    if (input.type === "checkbox") input.checked = Boolean(value);
    else if (input.name !== "client_secret") input.value = Array.isArray(value) ? value.join(" ") : (value === undefined ? "" : value);
  }
}

async function ssoSection(main) {
  const result = el("div", { class: "result", id: "sso-result" });
  const status = el("div", { id: "sso-status" });
  const links = el("tbody");
  const emails = el("tbody");
  const setForm = requestForm({ id: "sso-set", type: "sso.set", submit: "Save", scopedToTenant: true, fields: SSO_FIELDS,
    build: ssoBody, describe: (p) => [`Saved: people sign in with ${p.label}.`] });
  main.replaceChildren(
    el("h2", {}, "Sign-in with your identity provider"),
    panel("OpenID Connect provider",
      el("p", { class: "muted" }, "People sign in to this admin center and the device login page (and so approve their laptops) " +
        "with their organisation's account. Local passwords keep working. Register this redirect URI at the provider: ",
        el("code", { id: "sso-redirect" }, location.origin + "/oidc/callback"),
        " (and ", el("code", {}, location.origin + "/signin"), " as the post-logout redirect URI)."),
      status, setForm,
      el("p", {},
        actionButton("Check people now", () => run(result, async () => {
          const r = await call("sso.check", scoped());
          btg.notice(result, r.error ? "error" : "ok", r.error ? `The provider could not be asked: ${r.error}` :
            `Asked about ${r.checked}: ${r.still_allowed} still allowed` +
            (r.disabled.length ? `; no longer accepted: ${r.disabled.join(", ")} (${r.credentials_revoked} laptop credential(s) revoked)` : "") +
            (r.not_checkable ? `; ${r.not_checkable} without a refresh token` : "") + ".");
        })), " ",
        confirmButton("Remove provider", () => run(result, () => call("sso.remove", scoped()))))),
    result,
    panel("People who sign in through the provider",
      el("table", { id: "sso-links" }, el("thead", {}, el("tr", {}, ["Name", "As", "Identity at the provider", "Email", "Linked",
        "Last sign-in", "Last check", "State", ""].map((c) => el("th", {}, c)))), links)),
    panel("Imported emails",
      el("p", { class: "muted" }, "A person's first sign-in with a verified email listed here signs them in to that account and links it."),
      requestForm({ id: "email-set", type: "user_email.set", submit: "Set email",
        fields: [["user_id", "Account", "select", () => state.users.map((u) => [u.id, u.name])], ["email", "Email", "email", "alex@contoso.com"]],
        describe: (r) => [`${r.user_name}: ${r.email || "no email"}.`] }),
      el("hr"),
      requestForm({ id: "email-import", type: "user_email.import", submit: "Upload CSV", scopedToTenant: true,
        fields: [["csv", "CSV file (account,email)", "file"]],
        describe: (r) => r.errors.length ? ["Nothing was imported: ", el("ul", {}, r.errors.map((e) => el("li", {}, `line ${e.line}: ${e.message}`)))]
          : [`Imported ${r.emails.length} email(s).`] }),
      el("table", { id: "user-emails" }, el("thead", {}, el("tr", {}, ["Account", "Email", ""].map((c) => el("th", {}, c)))), emails)));
  state.refresh = async () => {
    await loadDirectory();
    const accountSelect = main.querySelector("#email-set select[name=user_id]");
    accountSelect.replaceChildren(...options(state.users.map((u) => [u.id, u.name])));
    const providers = (await call("sso.list", scoped())).providers;
    const provider = providers[0] || null;
    fillSsoForm(setForm.querySelector("form"), provider);
    status.replaceChildren(provider
      ? el("p", {}, badge(provider.enabled ? "in use" : "saved, not offered", provider.enabled ? "ok" : "warn"), " ",
        `${provider.issuer} · client ${provider.client_id}${provider.has_client_secret ? " (secret stored)" : " (public client)"}` +
        (provider.checked_at ? ` · people last checked ${btg.when(provider.checked_at)}` : ""))
      : el("p", { class: "muted" }, "No provider yet: people sign in with their passwords."));
    const listed = (await call("sso_link.list", scoped())).links;
    links.replaceChildren(...(listed.length ? listed.map((l) => el("tr", { "data-person": l.subject_id },
      el("td", {}, l.name), el("td", {}, l.subject_kind === "admin" ? "administrator" : "user"), el("td", {}, l.subject),
      el("td", {}, l.email || "–"), el("td", {}, btg.when(l.created_at)), el("td", {}, btg.when(l.signed_in_at)),
      el("td", {}, btg.when(l.checked_at)),
      el("td", {}, l.disabled_at ? badge("refused by the provider " + btg.when(l.disabled_at), "bad") : badge("active", "ok")),
      el("td", { class: "actions" }, confirmButton("Unlink", () => run(result, () =>
        call("sso_link.remove", { subject_kind: l.subject_kind, subject_id: l.subject_id }))))))
      : [el("tr", {}, el("td", { colspan: 9, class: "muted" }, "Nobody has signed in through the provider yet."))]));
    const imported = (await call("user_email.list", scoped())).emails;
    emails.replaceChildren(...imported.map((e) => el("tr", { "data-user": e.user_id }, el("td", {}, e.user_name), el("td", {}, e.email),
      el("td", { class: "actions" }, confirmButton("Forget", () => run(result, () => call("user_email.set", { user_id: e.user_id, email: null })))))));
  };
  await state.refresh();
}

// --- policies ------------------------------------------------------------------------------

const POLICY_FIELDS = [
  ["allow_better_together", "Better Together", "select", [["Enabled", "Enabled"], ["Disabled", "Disabled"]]],
  ["proximity_join", "Proximity join", "select", [["auto", "Accept at once"], ["prompt", "Prompt on the room"], ["off", "Off"]]],
  ["beaconing", "Beaconing", "checkbox"],
  ["auto_confirm", "Devices confirm prompts themselves", "checkbox"],
];

async function policiesSection(main) {
  const result = el("div", { class: "result", id: "policy-result" });
  const tbody = el("tbody");
  const subjects = () => [...state.users.map((u) => [u.id, "user: " + u.name]), ...state.devices.map((d) => [d.id, "device: " + d.name]),
    [state.tenant, "the tenant (default)"]];
  main.replaceChildren(
    el("h2", {}, "Policies"),
    panel("Create a policy", requestForm({ id: "policy-create", type: "policy.create", submit: "Create policy", scopedToTenant: true,
      fields: [["name", "Name", "text"], ...POLICY_FIELDS, ["default", "Tenant default", "checkbox"]],
      describe: (p) => [`Created ${p.name}.`] })),
    panel("Assign a policy", requestForm({ id: "policy-assign", type: "policy.assign", submit: "Assign",
      fields: [["subject_id", "To", "select", subjects], ["policy_id", "Policy", "select", () => [["", "(none: clear)"], ...state.policies.map((p) => [p.id, p.name])]]],
      build: (b) => ({ subject_kind: b.subject_id === state.tenant ? "tenant" : (b.subject_id.startsWith("d_") || state.devices.some((d) => d.id === b.subject_id) ? "device" : "user"),
                       subject_id: b.subject_id, policy_id: b.policy_id || null }),
      describe: () => ["Assigned."] })),
    result,
    table(["Name", "Better Together", "Proximity join", "Beaconing", "Auto-confirm", "Default", ""], [], "policies"));
  main.querySelector("#policies tbody").replaceWith(tbody);
  state.refresh = async () => {
    await loadDirectory();
    state.devices = (await call("device.list", scoped())).devices;
    tbody.replaceChildren(...state.policies.map((p) => el("tr", { "data-policy": p.id },
      el("td", {}, p.name), el("td", {}, p.allow_better_together), el("td", {}, p.proximity_join),
      el("td", {}, p.beaconing ? "on" : "off"), el("td", {}, p.auto_confirm ? "on" : "off"), el("td", {}, p.is_default ? "yes" : ""),
      el("td", { class: "actions" }, actionButton("Edit", () => {
        const form = requestForm({ id: "policy-update", type: "policy.update", submit: "Save", fields: POLICY_FIELDS,
          build: (b) => Object.assign({ policy_id: p.id }, b), describe: () => ["Saved; connected devices were told."] });
        for (const [name] of POLICY_FIELDS) {
          const input = form.querySelector(`[name=${name}]`);
          if (input.type === "checkbox") input.checked = p[name]; else input.value = p[name];
        }
        openDialog(el("h3", {}, "Edit " + p.name), form);
      }), renameButton({ type: "policy.rename", idField: "policy_id", id: p.id, current: p.name }),
      confirmButton("Delete", () => run(result, () => call("policy.delete", { policy_id: p.id })))))));
  };
  await state.refresh();
}

// --- consoles, pairings ----------------------------------------------------------------------

async function consolesSection(main) {
  const result = el("div", { class: "result", id: "console-result" });
  const tbody = el("tbody");
  const devices = () => state.devices.map((d) => [d.id, d.name]);
  const rooms = () => state.devices.filter((d) => d.kind === "room_system" || d.mode === "meeting_room").map((d) => [d.id, d.name]);
  main.replaceChildren(el("h2", {}, "Consoles"),
    panel("Pair a touch console with a room", requestForm({ id: "console-pair", type: "console.pair", submit: "Pair",
      fields: [["console_id", "Console", "select", devices], ["room_id", "Room", "select", rooms]], describe: (c) => [`${c.console_name} controls ${c.room_name}.`] })),
    result, table(["Console", "Room", "Since", ""], [], "consoles"));
  main.querySelector("#consoles tbody").replaceWith(tbody);
  state.refresh = async () => {
    state.devices = (await call("device.list", scoped())).devices;
    const listed = await call("console.list", scoped());
    tbody.replaceChildren(...listed.consoles.map((c) => el("tr", {}, el("td", {}, c.console_name), el("td", {}, c.room_name),
      el("td", {}, btg.when(c.created_at)), el("td", { class: "actions" }, confirmButton("Unpair", () => run(result, () => call("console.unpair", { console_id: c.console_id })))))));
  };
  await state.refresh();
}

async function pairingsSection(main) {
  const tbody = el("tbody");
  main.replaceChildren(el("h2", {}, "Better Together pairings"), table(["Laptop", "Phone", "Since"], [], "pairings"));
  main.querySelector("#pairings tbody").replaceWith(tbody);
  state.refresh = async () => {
    const listed = await call("pairing.list", scoped());
    tbody.replaceChildren(...listed.pairings.map((p) => el("tr", {}, el("td", {}, p.laptop_name), el("td", {}, p.phone_name), el("td", {}, btg.when(p.created_at)))));
  };
  await state.refresh();
}

// --- administrators, tenants, audit ------------------------------------------------------------

async function adminsSection(main) {
  const result = el("div", { class: "result", id: "admin-result" });
  main.replaceChildren(el("h2", {}, "Administrators"),
    panel("Create an administrator", el("p", { class: "muted" }, "Owners administer every tenant; a device administrator manages one tenant's devices."),
      requestForm({ id: "admin-create", type: "admin.create", submit: "Create administrator",
        fields: [["name", "Name", "text"], ["role", "Role", "select", [["device_admin", "Device administrator"], ["owner", "Owner"]]]],
        build: (b) => Object.assign(b, { tenant_id: b.role === "device_admin" ? state.tenant : null }),
        describe: (r) => [`Created ${r.admin.name} (${r.admin.admin_id}). Command-line credential (shown once): `,
          el("span", { class: "secret" }, r.token), el("div", {}, ...personActions("admin", r.admin.admin_id, r.admin.name, result))] })),
    panel("Password or set-up link for an administrator", requestForm({ id: "admin-link", type: "setup_link.create", submit: "Make set-up link",
      fields: [["subject_id", "Administrator id", "text", "a_…"]], build: (b) => Object.assign({ subject_kind: "admin" }, b),
      describe: (link) => [`Set-up link (login “${link.login}”): `, el("span", { class: "secret" }, location.origin + link.path)] })),
    result, el("h3", {}, "Administrators and their credentials"),
    table(["Name", "Role", "Tenant", "Credential", "Since", "Revoked", ""], [], "admins"));
  const tbody = el("tbody");
  main.querySelector("#admins tbody").replaceWith(tbody);
  if (state.admin.role !== "owner") {
    // Only owners see administrators; asking would only record a refusal.
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "Only an owner sees the administrators.")));
    state.refresh = null;
    return;
  }
  state.refresh = async () => {
    const listed = await call("admin.list");
    tbody.replaceChildren(...listed.admins.flatMap((a) => a.credentials.map((c) => el("tr", { "data-credential": c.id },
      el("td", {}, a.admin.name), el("td", {}, a.admin.role.replace("_", " ")), el("td", {}, a.admin.tenant_id || "all"),
      el("td", {}, c.id), el("td", {}, btg.when(c.created_at)), el("td", {}, c.revoked_at ? btg.when(c.revoked_at) : "–"),
      el("td", { class: "actions" }, c.revoked_at ? "" : confirmButton("Revoke", () => run(result, async () => {
        await call("credential.revoke", { credential_id: c.id });
        await state.refresh();
      })))))));
  };
  await state.refresh();
}

async function tenantsSection(main) {
  const tbody = el("tbody");
  const result = el("div", { class: "result", id: "tenant-result" });
  main.replaceChildren(el("h2", {}, "Tenants"),
    panel("Create a tenant", requestForm({ id: "tenant-create", type: "tenant.create", submit: "Create tenant",
      fields: [["name", "Name", "text"]], describe: (t) => [`Created ${t.name} (${t.id}).`], after: () => loadTenants() })),
    result, table(["Name", "Id", "Default policy", ""], [], "tenants"));
  main.querySelector("#tenants tbody").replaceWith(tbody);
  state.refresh = async () => {
    const listed = await call("tenant.list");
    tbody.replaceChildren(...listed.tenants.map((t) => el("tr", { "data-tenant": t.id }, el("td", {}, t.name), el("td", {}, t.id),
      el("td", {}, t.default_policy_id || "–"),
      el("td", { class: "actions" }, renameButton({ type: "tenant.rename", idField: "tenant_id", id: t.id, current: t.name }),
        confirmButton("Delete", () => run(result, async () => {
          await call("tenant.delete", { tenant_id: t.id });
          if (state.tenant === t.id) state.tenant = null;
          await loadTenants();
        }))))));
  };
  await state.refresh();
}

async function auditSection(main) {
  const tbody = el("tbody");
  const action = el("input", { type: "search", id: "audit-action", placeholder: "Action (e.g. device.)" });
  const actor = el("input", { type: "search", id: "audit-actor", placeholder: "Who" });
  const outcome = el("select", { id: "audit-outcome" }, options([["", "Any outcome"], ["ok", "ok"], ["refused", "refused"]]));
  let entries = [];
  const render = () => {
    const rows = entries.filter((e) => (!action.value || e.action.includes(action.value)) &&
      (!actor.value || e.actor.toLowerCase().includes(actor.value.toLowerCase())) &&
      (!outcome.value || (outcome.value === "ok" ? e.outcome === "ok" : e.outcome !== "ok")));
    tbody.replaceChildren(...rows.slice().reverse().map((e) => el("tr", {}, el("td", {}, btg.when(e.at)), el("td", {}, e.actor),
      el("td", {}, e.action), el("td", {}, e.target), el("td", {}, e.outcome === "ok" ? badge("ok", "ok") : badge(e.outcome, "bad")))));
  };
  [action, actor, outcome].forEach((f) => f.addEventListener("input", render));
  main.replaceChildren(el("h2", {}, "Audit log"), el("div", { class: "filters" }, action, actor, outcome),
    table(["When", "Who", "Action", "Target", "Outcome"], [], "audit"));
  main.querySelector("#audit tbody").replaceWith(tbody);
  state.refresh = async () => {
    entries = (await call("audit.list", scoped({ limit: 1000 }))).entries;
    render();
  };
  await state.refresh();
}

// --- the frame -------------------------------------------------------------------------------

const SECTIONS = { devices: devicesSection, users: usersSection, policies: policiesSection, consoles: consolesSection,
                   pairings: pairingsSection, admins: adminsSection, tenants: tenantsSection, sso: ssoSection,
                   audit: auditSection };

async function show(section) {
  state.section = SECTIONS[section] ? section : "devices";
  for (const link of document.querySelectorAll("nav.side a")) link.classList.toggle("active", link.dataset.section === state.section);
  const main = document.getElementById("main");
  state.refresh = null;
  try {
    await SECTIONS[state.section](main);
  } catch (error) {
    btg.notice(main, "error", error.message);
  }
}

async function loadTenants() {
  const select = document.getElementById("tenant");
  state.tenants = (await call("tenant.list")).tenants;
  if (!state.tenant) state.tenant = state.admin.tenant_id || (state.tenants[0] && state.tenants[0].id) || null;
  select.replaceChildren(...options(state.tenants.map((t) => [t.id, t.name]), state.tenant));
  select.disabled = state.admin.role !== "owner";
}

function listen() {
  if (state.events) state.events.close();
  const live = document.getElementById("live");
  live.classList.remove("on");
  if (!state.tenant) return;
  state.events = new EventSource("/admin/api/events?tenant=" + encodeURIComponent(state.tenant));
  const reload = async () => {
    if (state.refresh) {
      try { await state.refresh(); } catch (e) { /* the next change tries again */ }
    }
  };
  state.events.addEventListener("hello", async () => {
    await reload();  // whatever changed before the stream started
    live.classList.add("on");
  });
  state.events.addEventListener("changed", reload);
  state.events.onerror = () => live.classList.remove("on");
}

async function signOut(everywhere) {
  await btg.signOut(everywhere);
}

async function main() {
  const session = await btg.loadSession();
  if (!session.person) {
    location.replace("/signin?next=/admin/");
    return;
  }
  if (session.person.kind !== "admin") {
    btg.notice(document.getElementById("main"), "error", "This account is not an administrator. ",
      el("a", { href: "/devicelogin" }, "Sign in a phone or a laptop instead."));
    return;
  }
  state.admin = await call("whoami");
  document.getElementById("who").textContent = `${state.admin.name} · ${state.admin.role === "owner" ? "owner" : "device administrator"}`;
  document.getElementById("signout").addEventListener("click", () => signOut(false));
  document.getElementById("signout-all").addEventListener("click", () => signOut(true));
  await loadTenants();
  document.getElementById("tenant").addEventListener("change", async (event) => {
    state.tenant = event.target.value;
    listen();
    await show(state.section);
  });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  listen();
  await show(location.hash.slice(1) || "devices");
}

main();
