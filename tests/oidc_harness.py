"""The test OpenID provider (tests/oidc_provider/provider.js, oidc-provider from npm) as a
process on 127.0.0.1, and what the tests do at it: register a relay's client (RFC 7591, the
provider's own registration endpoint), add or disable accounts, rotate the signing key,
spoil one token response, go down and come back (its control port)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
PROVIDER_PASSWORD = "provider password 1"
MIN_NODE = (20, 19)  # oidc-provider 9 (its package.json: "node": ">=20.19")


def provider_unavailable() -> str | None:
    """Why the provider cannot run here (None: it can)."""
    node = shutil.which("node")
    if node is None:
        return "needs Node.js (./dev.sh test installs it)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    found = re.match(r"v(\d+)\.(\d+)", version.stdout.strip())
    if found is None or (int(found.group(1)), int(found.group(2))) < MIN_NODE:
        return f"needs Node.js >= {MIN_NODE[0]}.{MIN_NODE[1]} for oidc-provider (found {version.stdout.strip()})"
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "run `npm ci` in tests/oidc_provider (./dev.sh test does)"
    return None


@dataclass
class Client:
    client_id: str
    client_secret: str


@dataclass
class ProviderAccount:
    sub: str
    login: str
    email: str
    name: str


class TestProvider:
    """A running provider.js; one per test session (every test registers its own client
    and accounts, so tests do not see each other's)."""

    __test__ = False

    def __init__(self, process: subprocess.Popen[str], issuer: str, control: str, token: str):
        self.process = process
        self.issuer = issuer
        self.control = control
        self.token = token

    @classmethod
    def start(cls) -> TestProvider:
        process = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "provider.js")],
            cwd=PROVIDER_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise RuntimeError("the test OpenID provider printed nothing and ended")
        started = json.loads(line)
        return cls(process, started["issuer"], started["control"], started["token"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def _control(self, path: str, body: dict[str, Any]) -> Any:
        async with aiohttp.ClientSession() as http, http.post(
            self.control + path, json=body, headers={"Authorization": f"Bearer {self.token}"}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def register(self, relay_base: str) -> Client:
        """A confidential client for a relay at ``relay_base`` (its callback and sign-in page)."""
        metadata = {
            "redirect_uris": [f"{relay_base}/oidc/callback"],
            "post_logout_redirect_uris": [f"{relay_base}/signin"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "client_name": f"btogether relay at {relay_base}",
        }
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.issuer}/reg", json=metadata
        ) as response:
            assert response.status == 201, await response.text()
            answer = await response.json()
        return Client(answer["client_id"], answer["client_secret"])

    async def account(
        self,
        name: str,
        *,
        email: str | None = None,
        email_verified: bool = True,
        groups: tuple[str, ...] = (),
    ) -> ProviderAccount:
        """A new person at the provider (unique subject and login)."""
        sub = uuid.uuid4().hex
        login = f"{name.split()[0].lower()}-{sub[:6]}"
        address = email or f"{login}@example.org"
        await self._control("/accounts", {
            "sub": sub, "login": login, "password": PROVIDER_PASSWORD, "email": address,
            "email_verified": email_verified, "name": name, "groups": list(groups),
            "disabled": False,
        })
        return ProviderAccount(sub, login, address, name)

    async def update(self, account: ProviderAccount, **changes: Any) -> None:
        await self._control("/accounts", {"sub": account.sub, **changes})

    async def rotate(self, *, keep_old: bool) -> list[str]:
        kids: list[str] = (await self._control("/rotate", {"keep_old": keep_old}))["kids"]
        return kids

    async def spoil(self, client: Client, mode: str) -> None:
        await self._control("/spoil", {"client_id": client.client_id, "mode": mode})

    async def down(self) -> None:
        await self._control("/down", {})

    async def up(self) -> None:
        await self._control("/up", {})
