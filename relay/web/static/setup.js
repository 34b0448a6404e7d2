// A one-time set-up link (/setup#TOKEN): the person chooses their password, then signs in.
"use strict";

async function main() {
  await btg.loadSession();
  const token = location.hash.slice(1);
  const message = document.getElementById("message");
  const form = document.getElementById("setup-form");
  if (!token) {
    btg.notice(message, "error", "This link is incomplete; open the whole link you were given.");
    form.hidden = true;
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    if (data.password !== data.again) {
      btg.notice(message, "error", "The two passwords differ.");
      return;
    }
    try {
      const done = await btg.post("/api/setup", { token, password: data.password });
      form.hidden = true;
      btg.notice(message, "ok", `Your password is set. Sign in as “${done.login}”: `, btg.el("a", { href: "/signin" }, "sign in"));
    } catch (error) {
      btg.notice(message, "error", error.message);
    }
  });
}

main();
