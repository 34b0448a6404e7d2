"""Signing in and out of the admin center in a real browser: the owner from
``admin bootstrap --password-file``, a wrong password, the throttle, CSRF refusals,
sign-out everywhere, and the device list kept current without a reload."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from relay.net.server import RelayServer
from relay.protocol import admin_wire as aw
from relay.storage.sqlite_store import SqliteStore
from tests.relay_harness import relay_settings
from tests.web.conftest import PASSWORD, WebRelay, needs_browser, screenshot, sign_in

pytestmark = needs_browser


async def _post(page: Any, path: str, body: dict[str, Any], csrf: str | None) -> Any:
    """A fetch from inside the page (same origin, its cookies), with or without the token."""
    return await page.evaluate(
        """async ([path, body, csrf]) => {
            const headers = {"Content-Type": "application/json"};
            if (csrf !== null) headers["X-CSRF-Token"] = csrf;
            const r = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
            return {status: r.status, body: await r.json()};
        }""",
        [path, body, csrf],
    )


async def test_bootstrapped_owner_signs_in_with_name_and_password_file(
    tmp_path: Path, browser: Any
) -> None:
    db = tmp_path / "relay.sqlite3"
    password_file = tmp_path / "owner-password"
    password_file.write_text("a long owner secret\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether", "admin", "bootstrap", "--db", str(db),
        "--owner", "Olivia Owner", "--tenant", "Contoso", "--password-file", str(password_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert "sign in at /admin/ as 'olivia owner'" in out.decode()
    store = SqliteStore(db)
    await store.open()
    server = RelayServer(relay_settings(db), store)
    await server.start()
    try:
        page = await browser.new_page()
        base = f"http://127.0.0.1:{server.port}"
        await page.goto(f"{base}/admin/")
        await page.wait_for_url(f"{base}/signin?next=/admin/")
        await page.fill("#signin-password input[name=login]", "Olivia Owner")
        await page.fill("#signin-password input[name=password]", "a long owner secret")
        await page.click("#signin-password button[type=submit]")
        await page.wait_for_url(f"{base}/admin/")
        await page.wait_for_selector("#devices")
        assert await page.inner_text("#who") == "Olivia Owner · owner"
        assert await page.inner_text("#tenant option") == "Contoso"
    finally:
        await server.stop()


async def test_wrong_password_is_refused_then_the_login_is_throttled(
    web_relay: WebRelay, browser: Any
) -> None:
    page = await browser.new_page()
    for _ in range(5):
        await sign_in(page, web_relay.base, "olivia", "not the password")
        alert = page.get_by_role("alert")
        await alert.wait_for()
        assert await alert.inner_text() == "wrong login or password"
    await screenshot(page, "signin-refused")
    # Five failures lock the login: even the right password is refused for now.
    await sign_in(page, web_relay.base, "olivia", PASSWORD)
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "too many failed sign-ins" in await alert.inner_text()
    assert page.url == f"{web_relay.base}/signin"


async def test_owner_signs_in_sees_the_device_list_and_signs_out(
    web_relay: WebRelay, browser: Any
) -> None:
    page = await browser.new_page()
    await sign_in(page, web_relay.base, "olivia")
    await page.wait_for_url(f"{web_relay.base}/admin/")
    await page.wait_for_selector("#devices")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["btg_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await page.click("#signout")
    await page.wait_for_url(f"{web_relay.base}/signin")
    await page.goto(f"{web_relay.base}/admin/")
    await page.wait_for_url(f"{web_relay.base}/signin?next=/admin/")


async def test_changes_without_the_csrf_token_are_refused(
    web_relay: WebRelay, browser: Any
) -> None:
    page = await browser.new_page()
    # Before sign-in: the sign-in form itself needs the pre-session token.
    await page.goto(f"{web_relay.base}/signin")
    refused = await _post(page, "/api/signin/password", {"login": "olivia", "password": PASSWORD},
                          None)
    assert refused["status"] == 403 and refused["body"]["error"]["code"] == "csrf"
    await sign_in(page, web_relay.base, "olivia")
    await page.wait_for_url(f"{web_relay.base}/admin/")
    body = {"name": "Northwind"}
    refused = await _post(page, "/admin/api/tenant.create", body, None)
    assert refused["status"] == 403 and refused["body"]["error"]["code"] == "csrf"
    refused = await _post(page, "/admin/api/tenant.create", body, "forged")
    assert refused["status"] == 403
    link = await web_relay.admin_link()
    try:
        tenants = await link.typed(aw.Tenants, aw.TenantList)
        assert "Northwind" not in {t.name for t in tenants.tenants}
        csrf = await page.evaluate("btg.session.csrf")
        done = await _post(page, "/admin/api/tenant.create", body, csrf)
        assert done["status"] == 200 and done["body"]["name"] == "Northwind"
        audit = await link.typed(aw.AuditEntries, aw.AuditList, limit=5)
        assert audit.entries[-1].action == "tenant.create"
        assert audit.entries[-1].actor.startswith("Olivia Owner (owner")
    finally:
        await link.close()


async def test_sign_out_everywhere_ends_the_other_browsers_session(
    web_relay: WebRelay, browser: Any
) -> None:
    first = await browser.new_page()
    second = await browser.new_page()  # another browser: its own cookies
    for page in (first, second):
        await sign_in(page, web_relay.base, "contoso-admin")
        await page.wait_for_url(f"{web_relay.base}/admin/")
    await first.click("#signout-all")
    await first.wait_for_url(f"{web_relay.base}/signin")
    status = await second.evaluate(
        """async () => (await fetch("/admin/api/whoami", {method: "POST",
            headers: {"Content-Type": "application/json", "X-CSRF-Token": btg.session.csrf},
            body: "{}"})).status"""
    )
    assert status == 401


async def test_device_list_shows_changes_without_a_reload(
    web_relay: WebRelay, browser: Any
) -> None:
    page = await browser.new_page()
    await sign_in(page, web_relay.base, "contoso-admin")
    await page.wait_for_url(f"{web_relay.base}/admin/")
    await page.wait_for_selector("#devices")
    await page.wait_for_selector("#live.on")
    link = await web_relay.admin_link(web_relay.contoso.device_admin.token)
    try:
        started = time.monotonic()
        await link.typed(aw.DeviceInfo, aw.DeviceAdd, mac="02:00:00:00:00:31", location="Lobby")
        row = page.locator("#devices tr", has_text="02:00:00:00:00:31")
        await row.wait_for()
        assert time.monotonic() - started < 5
        assert await row.locator("td.state").inner_text() == "Waiting for activation"
    finally:
        await link.close()
