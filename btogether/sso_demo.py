"""``btogether demo --serve --sso``: the demo's tenant signs in with a real OpenID provider.

It starts the provider the tests use (``tests/oidc_provider/provider.js``: oidc-provider
from npm, on 127.0.0.1), registers the relay as a client there (the provider's own
registration endpoint), gives it two people — Alex Doe, whose email the administrator
imports for the demo's account "Alex Doe", and Pat, in the group ``contoso-it`` that the
tenant maps to device administrators — and configures the tenant with ``btogether admin
sso set``, as an owner would. Everything stays on this machine.
"""

from __future__ import annotations

import json
import secrets
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from btogether.stage import Stage, StageError

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "tests" / "oidc_provider"
PEOPLE = (
    ("alex", "Alex Doe", "alex@contoso.example", ()),
    ("pat", "Pat Helpdesk", "pat@contoso.example", ("contoso-it",)),
)


def _post(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
        return json.loads(answer.read())


class SsoDemo:
    def __init__(self, stage: Stage, admin: Callable[..., Any], tenant_id: str) -> None:
        self.stage = stage
        self.admin = admin
        self.tenant_id = tenant_id
        self.issuer = ""
        self.passwords: dict[str, str] = {}

    def start(self) -> str:
        if shutil.which("node") is None or not (PROVIDER_DIR / "node_modules").is_dir():
            raise StageError(
                "the test OpenID provider is not installed: run `./dev.sh demo --serve --sso` "
                "(it installs Node.js and runs npm ci in tests/oidc_provider)"
            )
        actor = self.stage.spawn("oidc-provider", ["node", str(PROVIDER_DIR / "provider.js")])

        def started() -> dict[str, str] | None:
            if not actor.alive():
                raise StageError(f"the provider exited:\n{actor.tail()}")
            for line in actor.tail(50).splitlines():
                if line.startswith("{"):
                    found: dict[str, str] = json.loads(line)
                    return found
            return None

        info = self.stage.wait_for(started, "the OpenID provider to listen", timeout=20)
        self.issuer = info["issuer"]
        web = self.stage.relay_url.replace("ws://", "http://", 1).rstrip("/")
        client = _post(f"{self.issuer}/reg", {
            "redirect_uris": [f"{web}/oidc/callback"],
            "post_logout_redirect_uris": [f"{web}/signin"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "btogether demo relay",
        })
        for login, name, email, groups in PEOPLE:
            self.passwords[login] = "demo-" + secrets.token_urlsafe(6)
            _post(f"{info['control']}/accounts", {
                "sub": f"demo-{login}", "login": login, "password": self.passwords[login],
                "email": email, "email_verified": True, "name": name, "groups": list(groups),
            }, info["token"])
        secret_file = self.stage.workdir / "oidc-client-secret"
        secret_file.touch(mode=0o600)
        secret_file.write_text(client["client_secret"] + "\n")
        self.admin("sso", "set", "--tenant", self.tenant_id, "--issuer", self.issuer,
                   "--client-id", client["client_id"], "--client-secret-file", str(secret_file),
                   "--label", "Contoso (test provider)", "--device-admin-group", "contoso-it")
        self.admin("users", "email", "Alex Doe", "alex@contoso.example",
                   "--tenant", self.tenant_id)
        return (f"test OpenID provider at {self.issuer}; Contoso signs in with it (Alex Doe "
                "by imported email, Pat as device administrator by group)")

    def instructions(self) -> str:
        alex, pat = self.passwords["alex"], self.passwords["pat"]
        return (
            f"  single sign-on: choose “Sign in with Contoso (test provider)” ({self.issuer}):\n"
            f"    login alex, password {alex}: Alex Doe, to the device login page\n"
            f"    login pat, password {pat}: Pat Helpdesk, device administrator of Contoso\n"
        )
