// Shared by the pages: the session (and its CSRF token), JSON calls, and safe DOM building.
"use strict";

const btg = {
  session: null,

  async loadSession() {
    const response = await fetch("/api/session", { credentials: "same-origin" });
    btg.session = await response.json();
    return btg.session;
  },

  // POST JSON with the CSRF token; resolves to the body, or throws Error(message) with .code.
  async post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": btg.session.csrf },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error.message : "HTTP " + response.status);
      error.code = data && data.error ? data.error.code : "http_" + response.status;
      error.status = response.status;
      throw error;
    }
    return data;
  },

  // el("td", {class: "x"}, "text", child…): text is always text, never HTML.
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },

  notice(target, kind, ...content) {
    target.replaceChildren(btg.el("div", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" }, ...content));
  },

  when(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    return new Date(seconds * 1000).toLocaleString();
  },

  // Sign out of the relay; when the session came from an identity provider, offer to sign
  // out there too (its end-session endpoint) before going back to the sign-in page.
  async signOut(everywhere) {
    let done = null;
    try { done = await btg.post("/api/signout", { everywhere: Boolean(everywhere) }); } catch (e) { done = null; }
    const offer = done && done.provider_signout;
    if (!offer) {
      location.assign("/signin");
      return;
    }
    document.body.replaceChildren(btg.el("div", { class: "card", id: "signed-out" },
      btg.el("h1", {}, "Signed out"),
      btg.el("p", {}, "You are signed out of btogether."),
      btg.el("p", {}, btg.el("a", { class: "button", id: "provider-signout", href: offer.url }, `Also sign out of ${offer.label}`)),
      btg.el("p", {}, btg.el("a", { href: "/signin" }, "Sign in again"))));
  },

  nextPath() {
    const next = new URLSearchParams(location.search).get("next") || "";
    return next.startsWith("/") && !next.startsWith("//") ? next : null;
  },
};
