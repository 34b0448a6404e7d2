"""Fixtures for the browser pages: a real relay (127.0.0.1, port 0, real SQLite, real clock)
with an owner, two tenants, a device administrator and a user in each (all with passwords),
and Debian's Chromium driven by Playwright (never a downloaded browser).

Screenshots of the main pages go to ``docs/`` only when ``BTOGETHER_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from relay.admin.service import bootstrap_owner
from relay.admin.store_admin import Admin
from relay.net.server import RelayServer
from relay.protocol import admin_wire as aw
from relay.protocol.admin_link import AdminLink
from relay.storage.sqlite_store import SqliteStore
from relay.web.accounts import SqliteAccounts
from relay.web.passwords import hash_password
from tests.oidc_harness import (
    PROVIDER_PASSWORD,
    Client,
    ProviderAccount,
    TestProvider,
    provider_unavailable,
)
from tests.relay_harness import relay_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"
DOCS = Path(__file__).resolve().parents[2] / "docs"

try:
    import playwright.async_api as pw
except ImportError:  # pragma: no cover - dev.sh installs it
    pw = None  # type: ignore[assignment]

needs_browser = pytest.mark.skipif(
    pw is None or not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium and the playwright package (./dev.sh test installs both)",
)


@dataclass
class Person:
    id: str
    login: str
    token: str = ""


@dataclass
class TenantSetup:
    id: str
    name: str
    device_admin: Person
    user: Person


class ShiftedClock:
    """The wall clock, moved forward by the test (code expiry without waiting); the beacons'
    EIDs follow the real time, so tests with beacons leave it alone."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class WebRelay:
    server: RelayServer
    store: SqliteStore
    db: Path
    owner: Person
    contoso: TenantSetup
    fabrikam: TenantSetup
    clock: ShiftedClock

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    async def admin_link(self, token: str | None = None) -> AdminLink:
        return await AdminLink.connect(self.url, token or self.owner.token, reply_timeout=15.0)


async def _give_password(store: SqliteStore, kind: str, subject_id: str, login: str) -> None:
    await SqliteAccounts(store).set_login(
        kind,  # type: ignore[arg-type]
        subject_id,
        login,
        hash_password(PASSWORD),
        time.time(),
    )


@pytest.fixture
async def web_relay(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[WebRelay]:
    """The relay; a test marked ``@pytest.mark.relay_settings(name=value, …)`` gets those."""
    db = tmp_path / "relay.sqlite3"
    store = SqliteStore(db)
    await store.open()
    owner, owner_token = await bootstrap_owner(store, "Olivia Owner", time.time())
    await _give_password(store, "admin", owner.id, "olivia")
    clock = ShiftedClock()
    marker = request.node.get_closest_marker("relay_settings")
    settings = relay_settings(db).model_copy(update=marker.kwargs if marker else {})
    server = RelayServer(settings, store, clock=clock)
    await server.start()
    tenants: dict[str, TenantSetup] = {}
    link = await AdminLink.connect(f"ws://127.0.0.1:{server.port}/", owner_token)
    try:
        for name in ("Contoso", "Fabrikam"):
            tenant = await link.typed(aw.TenantInfo, aw.TenantCreate, name=name)
            made = await link.typed(
                aw.AdminCreated,
                aw.AdminCreate,
                name=f"{name} devices",
                role="device_admin",
                tenant_id=tenant.id,
            )
            login = name.lower()
            await _give_password(store, "admin", made.admin.admin_id, f"{login}-admin")
            user = await Admin(store).create_user(tenant.id, f"{name} User")
            await _give_password(store, "user", user.id, f"{login}-user")
            tenants[name] = TenantSetup(
                tenant.id,
                name,
                Person(made.admin.admin_id, f"{login}-admin", made.token),
                Person(user.id, f"{login}-user"),
            )
    finally:
        await link.close()
    try:
        yield WebRelay(
            server,
            store,
            db,
            Person(owner.id, "olivia", owner_token),
            tenants["Contoso"],
            tenants["Fabrikam"],
            clock,
        )
    finally:
        await server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium, started afresh for the test (Playwright gives it a new, empty user-data
    dir); each ``browser.new_page()`` is a separate person's browser (its own cookies)."""
    if pw is None or not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium and the playwright package")
    async with pw.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        original = chromium.new_page

        async def new_page(**options: Any) -> Any:
            page = await original(viewport={"width": 1360, "height": 860}, **options)
            page.set_default_timeout(15_000)
            return page

        chromium.new_page = new_page
        try:
            yield chromium
        finally:
            await chromium.close()


class HttpPerson:
    """A person's browser without the browser: cookies, the CSRF token, JSON calls."""

    def __init__(self, http: aiohttp.ClientSession, base: str, csrf: str) -> None:
        self.http, self.base, self.csrf = http, base, csrf
        self.person: dict[str, Any] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        headers = {"X-CSRF-Token": self.csrf}
        async with self.http.post(self.base + path, json=body, headers=headers) as r:
            return r.status, await r.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base + path) as r:
            return r.status, await r.text()

    async def sign_in(self, login: str, password: str = PASSWORD) -> int:
        status, text = await self.post("/api/signin/password",
                                       {"login": login, "password": password})
        if status == 200:
            answer = json.loads(text)
            self.person, self.csrf = answer["person"], answer["csrf"]
        return status


@asynccontextmanager
async def http_person(base: str) -> AsyncIterator[HttpPerson]:
    """Someone at the sign-in page (pre-session token in hand), over plain HTTP."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/api/session") as r:
            csrf = (await r.json())["csrf"]
        yield HttpPerson(http, base, csrf)


async def sign_in(page: Any, base: str, login: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/signin")
    await page.fill("#signin-password input[name=login]", login)
    await page.fill("#signin-password input[name=password]", password)
    await page.click("#signin-password button[type=submit]")


async def screenshot(page: Any, name: str) -> None:
    """Save the page to docs/NAME.png when BTOGETHER_SCREENSHOTS=1 (README pictures)."""
    if os.environ.get("BTOGETHER_SCREENSHOTS") == "1":
        await page.screenshot(path=str(DOCS / f"{name}.png"), full_page=False)


# --- sign-in with an OpenID provider: the real oidc-provider on loopback ------------------------


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[TestProvider]:
    """One provider process for the whole session (each test registers its own client)."""
    why = provider_unavailable()
    if why is not None:
        pytest.skip(why)
    provider = TestProvider.start()
    try:
        yield provider
    finally:
        provider.stop()


@dataclass
class SsoSetup:
    relay: WebRelay
    provider: TestProvider
    clients: dict[str, Client]
    infos: dict[str, aw.SsoInfo]

    async def configure(self, tenant: TenantSetup, **fields: Any) -> aw.SsoInfo:
        """The tenant's provider: this relay's own client at the test provider, set by the
        owner with ``sso.set`` (the fields given replace the defaults)."""
        client = self.clients.get(tenant.id) or await self.provider.register(self.relay.base)
        self.clients[tenant.id] = client
        request = {
            "tenant_id": tenant.id,
            "label": f"{tenant.name} ID",
            "issuer": self.provider.issuer,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "device_admin_groups": [f"{tenant.name.lower()}-it"],
            "owner_groups": ["relay-owners"],
        } | fields
        link = await self.relay.admin_link()
        try:
            info = await link.typed(aw.SsoInfo, aw.SsoSet, **request)
        finally:
            await link.close()
        self.infos[tenant.id] = info
        return info

    async def admin_call(self, result: type[Any], kind: type[aw.AdminRequest], **fields: Any) -> Any:
        link = await self.relay.admin_link()
        try:
            return await link.typed(result, kind, **fields)
        finally:
            await link.close()


@pytest.fixture
async def sso(web_relay: WebRelay, oidc_provider: TestProvider) -> SsoSetup:
    setup = SsoSetup(web_relay, oidc_provider, {}, {})
    await setup.configure(web_relay.contoso)
    return setup


async def provider_sign_in(
    page: Any, setup: SsoSetup, tenant: TenantSetup, account: ProviderAccount,
    *, next_path: str | None = None, password: str = PROVIDER_PASSWORD,
) -> None:
    """At the sign-in page, the tenant's provider button, then the provider's login form."""
    query = f"?next={quote(next_path)}" if next_path else ""
    await page.goto(f"{setup.relay.base}/signin{query}")
    await page.click(f"#signin-sso-{setup.infos[tenant.id].id}")
    await page.wait_for_url(f"{setup.provider.issuer}/interaction/**")
    await page.fill("input[name=login]", account.login)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def provider_answer(
    http: aiohttp.ClientSession, setup: SsoSetup, tenant: TenantSetup, account: ProviderAccount
) -> str:
    """A provider sign-in by a plain HTTP client (its own cookies), stopped just before the
    relay's callback: the callback URL (state and code), not yet used."""
    url = f"{setup.relay.base}/oidc/start/{setup.infos[tenant.id].id}"
    for _ in range(10):
        async with http.get(url, allow_redirects=False) as r:
            if r.status in (302, 303):
                url = str(r.url.join(URL(r.headers["Location"])))
                if url.startswith(f"{setup.relay.base}/oidc/callback"):
                    return url
                continue
            page = await r.text()
            assert r.status == 200 and "name=\"login\"" in page, page[:400]
            action = page.split('action="', 1)[1].split('"', 1)[0]
        async with http.post(
            str(r.url.join(URL(action))),
            data={"login": account.login, "password": PROVIDER_PASSWORD},
            allow_redirects=False,
        ) as posted:
            assert posted.status == 303, await posted.text()
            url = str(posted.url.join(URL(posted.headers["Location"])))
    raise AssertionError("no answer from the provider after 10 steps")
