// The sign-in page: renders whatever ways to sign in the relay offers (a form of fields, or a
// button that leads elsewhere), so a new way (an identity provider) needs no change here.
"use strict";

function landing(person) {
  return btg.nextPath() || (person.kind === "admin" ? "/admin/" : "/devicelogin");
}

function renderMethod(method) {
  if (method.kind === "redirect") {
    // The provider's sign-in comes back to where the person was going (a page of the relay).
    const next = btg.nextPath();
    const href = method.action + (next ? "?next=" + encodeURIComponent(next) : "");
    return btg.el("p", {}, btg.el("a", { class: "button", id: "signin-" + method.id.replace(":", "-"), href }, method.label));
  }
  const form = btg.el("form", { id: "signin-" + method.id });
  for (const field of method.fields) {
    const secret = field === "password";
    form.append(btg.el("label", {}, field === "login" ? "Login" : field[0].toUpperCase() + field.slice(1),
      btg.el("input", { name: field, type: secret ? "password" : "text", required: true,
                        autocomplete: secret ? "current-password" : "username" })));
  }
  form.append(btg.el("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(form).entries());
    const message = document.getElementById("message");
    try {
      const done = await btg.post(method.action, body);
      location.assign(landing(done.person));
    } catch (error) {
      btg.notice(message, "error", error.message);
    }
  });
  return btg.el("div", {}, btg.el("p", { class: "muted" }, method.label), form);
}

async function main() {
  const session = await btg.loadSession();
  if (session.person) {
    location.replace(landing(session.person));
    return;
  }
  document.getElementById("methods").replaceChildren(...session.methods.map(renderMethod));
}

main();
