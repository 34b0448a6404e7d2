// The device login page: a signed-in user types the code their desk phone or laptop shows,
// sees what it is, and signs it in to their account.
"use strict";

let pending = null;

function show(kind, ...content) {
  btg.notice(document.getElementById("message"), kind, ...content);
}

async function lookup(code) {
  const confirm = document.getElementById("confirm");
  try {
    const found = await btg.post("/api/devicelogin/lookup", { code });
    pending = code;
    document.getElementById("question").textContent = found.kind === "laptop"
      ? `Sign in the laptop “${found.name}” as ${btg.session.person.name}?`
      : `Sign in the desk phone “${found.name}”${found.location ? " (" + found.location + ")" : ""} as ${btg.session.person.name}?`;
    confirm.hidden = false;
    document.getElementById("message").replaceChildren();
  } catch (error) {
    confirm.hidden = true;
    show("error", error.message);
  }
}

async function decide(approve) {
  document.getElementById("confirm").hidden = true;
  try {
    const done = await btg.post("/api/devicelogin/confirm", { code: pending, approve });
    if (done.outcome === "approved") {
      show("ok", done.kind === "laptop" ? `The laptop “${done.name}” is signed in. You can close this page.`
        : `The desk phone “${done.name}” is signed in to your account.`);
    } else {
      show("ok", "Cancelled: nothing was signed in.");
    }
    document.getElementById("code").value = "";
  } catch (error) {
    show("error", error.message);
  }
}

async function main() {
  const session = await btg.loadSession();
  if (!session.person) {
    location.replace("/signin?next=" + encodeURIComponent(location.pathname + location.search));
    return;
  }
  document.getElementById("who").textContent = `Signed in as ${session.person.name}.`;
  if (session.person.kind !== "user") {
    show("error", "Administrators sign devices in from the admin center; sign in with your user account here.");
  }
  document.getElementById("code-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookup(document.getElementById("code").value);
  });
  document.getElementById("approve").addEventListener("click", () => decide(true));
  document.getElementById("deny").addEventListener("click", () => decide(false));
  document.getElementById("signout").addEventListener("click", () => btg.signOut(false));
  const given = new URLSearchParams(location.search).get("code");
  if (given) {
    document.getElementById("code").value = given;
    lookup(given);
  }
}

main();
