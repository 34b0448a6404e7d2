"""The device login page in a real browser: a user signs their own desk phone in with the code
it shows (wrong, foreign, expired and used codes refused with clear messages), and a laptop
signs in with ``btogether client login`` and a code approved on the page, until an
administrator revokes it in the admin center."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus

from client.config import ClientFiles, load_config, load_credential
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import provision
from relay.protocol.link import RelayLink
from tests.provisioning.conftest import FakeDevice
from tests.web.conftest import WebRelay, needs_browser, screenshot, sign_in

pytestmark = needs_browser


async def desk_phone(relay: WebRelay, mac: str, seed: int) -> tuple[aw.DeviceInfo, FakeDevice]:
    """A Contoso desk phone, provisioned and connected, answering login code requests."""
    link = await relay.admin_link(relay.contoso.device_admin.token)
    try:
        device = await link.typed(
            aw.DeviceInfo, aw.DeviceAdd, mac=mac, location="Floor 2 / Desk 7", name="Desk 7"
        )
        code = await link.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    finally:
        await link.close()
    result = await provision(relay.url, mac, code.code)
    phone = await FakeDevice(seed).connect(relay.url, result.credential)
    # The relay asks a waiting desk phone for its code by itself, for the device login page.
    async with asyncio.timeout(10):
        while not (phone.tasks and all(t.done() for t in phone.tasks)):
            await asyncio.sleep(0.05)
    return device, phone


async def user_page(browser: Any, relay: WebRelay, login: str) -> Any:
    page = await browser.new_page()
    await sign_in(page, relay.base, login)
    await page.wait_for_url(f"{relay.base}/devicelogin")
    return page


async def enter(page: Any, code: str) -> None:
    await page.fill("#code", code)
    await page.click("#code-form button[type=submit]")


async def refusal(page: Any) -> str:
    alert = page.get_by_role("alert")
    await alert.wait_for()
    text: str = await alert.inner_text()
    await page.evaluate("document.getElementById('message').replaceChildren()")
    return text


async def test_user_signs_in_their_desk_phone_with_the_code_it_shows(
    web_relay: WebRelay, browser: Any
) -> None:
    _, phone = await desk_phone(web_relay, "02:00:00:00:0a:01", seed=11)
    try:
        page = await user_page(browser, web_relay, "contoso-user")
        await enter(page, "not a code")
        assert "that is not a code" in await refusal(page)
        await enter(page, "ABCD-EFGH" if phone.code != "ABCD-EFGH" else "ABCD-EFGJ")
        assert await refusal(page) == "wrong code: check the code your phone or laptop shows"
        # Typed as people type it: lower case, no dash.
        await enter(page, phone.code.replace("-", "").lower())
        question = page.locator("#question")
        await question.wait_for()
        assert await question.inner_text() == (
            "Sign in the desk phone “Desk 7” (Floor 2 / Desk 7) as Contoso User?"
        )
        await screenshot(page, "devicelogin")
        await page.click("#approve")
        done = page.locator("#message [role=status]")
        await done.wait_for()
        assert await done.inner_text() == "The desk phone “Desk 7” is signed in to your account."
        state = await phone.next_state()
        while state.state != "signed_in":
            state = await phone.next_state()
        assert state.user_name == "Contoso User"
        await enter(page, phone.code)
        assert await refusal(page) == "this code was already used"
        link = await web_relay.admin_link(web_relay.contoso.device_admin.token)
        try:
            listed = await link.typed(aw.Devices, aw.DeviceList)
            audit = await link.typed(aw.AuditEntries, aw.AuditList, limit=5)
        finally:
            await link.close()
        assert listed.devices[0].user_id == web_relay.contoso.user.id
        assert audit.entries[-1].action == "device.sign_in.self"
        assert audit.entries[-1].actor.startswith("Contoso User (user ")
    finally:
        await phone.close()


async def test_another_tenants_user_and_an_expired_code_are_refused(
    web_relay: WebRelay, browser: Any
) -> None:
    _, phone = await desk_phone(web_relay, "02:00:00:00:0a:02", seed=12)
    outsider = await user_page(browser, web_relay, "fabrikam-user")
    await enter(outsider, phone.code)
    assert await refusal(outsider) == "wrong code: check the code your phone or laptop shows"
    # The phone goes offline (nobody asks it for a new code) and its code grows old.
    await phone.close()
    web_relay.clock.advance(16 * 60)
    page = await user_page(browser, web_relay, "contoso-user")
    await enter(page, phone.code)
    assert await refusal(page) == "this code has expired; the phone shows a new one shortly"


async def test_an_administrator_cannot_use_the_device_login_page(
    web_relay: WebRelay, browser: Any
) -> None:
    page = await browser.new_page()
    await sign_in(page, web_relay.base, "contoso-admin")
    await page.wait_for_url(f"{web_relay.base}/admin/")
    await page.goto(f"{web_relay.base}/devicelogin")
    assert "sign in with your user account here" in await refusal(page)
    await enter(page, "ABCD-EFGH")
    assert "sign in with your own user account" in await refusal(page)


async def test_laptop_signs_in_with_a_code_and_is_revoked_in_the_admin_center(
    web_relay: WebRelay, browser: Any, tmp_path: Path
) -> None:
    state_dir = tmp_path / "laptop"
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether", "client", "login", "--relay", web_relay.url,
        "--state-dir", str(state_dir), "--name", "Alex laptop", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert client.stdout is not None
    first = json.loads(await asyncio.wait_for(client.stdout.readline(), 30))
    assert first["verification_uri"] == f"{web_relay.base}/devicelogin"
    page = await user_page(browser, web_relay, "contoso-user")
    await page.goto(first["verification_uri_complete"])
    question = page.locator("#question")
    await question.wait_for()
    assert await question.inner_text() == "Sign in the laptop “Alex laptop” as Contoso User?"
    await screenshot(page, "devicelogin-laptop")
    await page.click("#approve")
    await page.locator("#message [role=status]").wait_for()
    out, err = await asyncio.wait_for(client.communicate(), 30)
    assert client.returncode == 0, err.decode()
    stored = json.loads(out.decode().strip().splitlines()[-1])
    assert stored["verified"]["user_id"] == web_relay.contoso.user.id
    files = ClientFiles(state_dir)
    token, laptop_id = load_credential(files), load_config(files).laptop_id
    laptop = await RelayLink.connect(web_relay.url, token, laptop_id=laptop_id)
    try:
        assert laptop.welcome.principal.user_id == web_relay.contoso.user.id
        # The code was used once: approving it again is refused.
        await page.goto(first["verification_uri_complete"])
        assert await refusal(page) == "this code was already used"
        # An owner revokes the laptop in the admin center.
        admin = await browser.new_page()
        await sign_in(admin, web_relay.base, "olivia")
        await admin.wait_for_url(f"{web_relay.base}/admin/")
        await admin.select_option("#tenant", web_relay.contoso.id)
        await admin.click("nav a[data-section=users]")
        row = admin.locator("#laptops tr", has_text="Alex laptop")
        await row.wait_for()
        await screenshot(admin, "admin-users")
        revoke = row.get_by_role("button", name="Revoke")
        await revoke.click()
        clicked = time.monotonic()
        await row.get_by_role("button", name="Confirm: revoke").click()
        # The laptop's open connection is closed at once (4001), not at its next request.
        code, _ = await asyncio.wait_for(laptop.closed, 2.0)
        assert code == wire.CloseCode.REVOKED and time.monotonic() - clicked < 2.0
        await row.locator("td", has_text="revoked").wait_for()
        started = time.monotonic()
        try:
            await RelayLink.connect(web_relay.url, token, laptop_id=laptop_id)
            raise AssertionError("a revoked credential still connects")
        except InvalidStatus as refused:
            assert refused.response.status_code == 401
        assert time.monotonic() - started < 5
    finally:
        await laptop.close()
