"""The admin center in a real browser: the whole provisioning story with a real beacon on the
simulated air, role refusals enforced by the relay, and the command line and the pages
offering the same admin requests."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, get_args

import pytest

from hw.bluetooth_address import adapter_address
from hw.sim.launch import start_air
from relay.protocol import admin_wire as aw
from tests.web.conftest import WebRelay, needs_browser, screenshot, sign_in

pytestmark = needs_browser
STATIC = Path(__file__).resolve().parents[2] / "relay" / "web" / "static"


async def btogether(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def signed_in_admin(browser: Any, relay: WebRelay, login: str) -> Any:
    page = await browser.new_page()
    await sign_in(page, relay.base, login)
    await page.wait_for_url(f"{relay.base}/admin/")
    await page.wait_for_selector("#devices")
    return page


def test_the_pages_and_the_command_line_offer_the_same_admin_requests() -> None:
    """Each admin request is sent by admin.js and built by `btogether admin`."""
    union = get_args(get_args(aw.AnyAdminRequest)[0])
    kinds = {model.model_fields["type"].default: model.__name__ for model in union}
    script = (STATIC / "admin.js").read_text()
    on_pages = set(re.findall(r'(?:call\(|type: )"([a-z_]+\.[a-z_]+|whoami)"', script))
    cli = Path(__file__).resolve().parents[2] / "relay" / "cli"
    # The command tree is relay/cli/admin.py; relay/cli/admin_commands.py runs the commands.
    commands = "".join((cli / name).read_text() for name in ("admin.py", "admin_commands.py"))
    on_command_line = {kind for kind, name in kinds.items() if f"aw.{name}" in commands}
    assert on_pages == set(kinds), f"pages lack {set(kinds) - on_pages}"
    assert on_command_line == set(kinds), f"commands lack {set(kinds) - on_command_line}"


async def test_a_device_administrator_cannot_manage_administrators(
    web_relay: WebRelay, browser: Any
) -> None:
    page = await signed_in_admin(browser, web_relay, "contoso-admin")
    await page.click("nav a[data-section=admins]")
    await page.fill("#admin-create input[name=name]", "Mallory")
    await page.select_option("#admin-create select[name=role]", "owner")
    await page.click("#admin-create button[type=submit]")
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert await alert.inner_text() == "admin.create needs the owner role; you are a device admin"
    # The page may not even make a set-up link for the owner: the relay refuses.
    await page.fill("#admin-link input[name=subject_id]", web_relay.owner.id)
    await page.click("#admin-link button[type=submit]")
    await page.locator("#admin-link + .result [role=alert]").wait_for()
    link = await web_relay.admin_link()
    try:
        audit = await link.typed(aw.AuditEntries, aw.AuditList, limit=10)
    finally:
        await link.close()
    refused = [e for e in audit.entries if e.outcome == "forbidden"]
    assert [e.action for e in refused] == ["admin.create", "setup_link.create"]
    assert all(e.actor.startswith("Contoso devices (device_admin") for e in refused)


@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")
async def test_provisioning_story_through_the_pages(
    web_relay: WebRelay, browser: Any, tmp_path: Path
) -> None:
    air = start_air([("phone", 0.0, 0.0)])
    state_dir = Path(tempfile.mkdtemp(prefix="btg-web-", dir="/tmp"))  # short socket paths
    env = {**os.environ, **air.env("phone"), "BTOGETHER_STATE_DIR": str(state_dir)}
    daemon: asyncio.subprocess.Process | None = None
    try:
        mac = await adapter_address(bus_address=air.bus_address("phone"))
        page = await signed_in_admin(browser, web_relay, "contoso-admin")
        # A CSV with a bad line: nothing is imported and the line is named.
        bad = tmp_path / "bad.csv"
        bad.write_text(f"MAC address,Location\n{mac},Floor 2 / Desk 7\nnot-a-mac,Floor 3\n")
        await page.set_input_files("#device-import input[name=csv]", str(bad))
        await page.click("#device-import button[type=submit]")
        alert = page.locator("#device-import + .result [role=alert]")
        await alert.wait_for()
        assert "nothing imported" in await alert.inner_text()
        assert "line 3" in await alert.inner_text()
        await screenshot(page, "admin-csv-refused")
        assert await page.locator("#devices tr[data-device]").count() == 0
        good = tmp_path / "good.csv"
        good.write_text(f"MAC address,Kind,Location\n{mac},desk_phone,Floor 2 / Desk 7\n")
        await page.set_input_files("#device-import input[name=csv]", str(good))
        await page.click("#device-import button[type=submit]")
        await page.locator("#device-import + .result", has_text="Imported 1 device(s).").wait_for()
        row = page.locator("#devices tr[data-device]", has_text=mac)
        await row.locator("td.state", has_text="Waiting for activation").wait_for()
        # Verification code → the beacon provisions with it on the simulated air.
        await row.get_by_role("button", name="Generate verification code").click()
        code = await page.locator("#verification-code").inner_text()
        assert re.fullmatch(r"\d{6}", code)
        await screenshot(page, "admin-verification-code")
        rc, out, err = await btogether("beacon", "provision", code, "--relay", web_relay.url,
                                       env=env)
        assert rc == 0, err
        assert "Provisioned for Contoso" in out
        # No reload from here on: the page hears the change and the connection.
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "btogether", "beacon", "run", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await row.locator("td.state", has_text="Waiting for sign-in").wait_for(timeout=20_000)
        await row.locator("td.online", has_text="Online").wait_for(timeout=30_000)
        await screenshot(page, "admin-devices")
        # The TAC flow: fetch the device's login code, choose the account, sign in.
        await row.get_by_role("button", name="Sign in a user").click()
        login_code = await page.locator("#login-code").inner_text()
        assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", login_code)
        await page.select_option("#sign-in-form select[name=user_id]",
                                 web_relay.contoso.user.id)
        await screenshot(page, "admin-sign-in-dialog")
        await page.click("#sign-in-form button[type=submit]")
        await row.locator("td.state", has_text="Signed in").wait_for()
        assert "Contoso User" in await row.inner_text()
        status = await btogether("beacon", "status", "--json", env=env)
        assert status[0] == 0, status[2]
        assert '"user_name": "Contoso User"' in status[1] or "Contoso User" in status[1]
    finally:
        if daemon is not None and daemon.returncode is None:
            daemon.terminate()
            try:
                await asyncio.wait_for(daemon.wait(), 15)
            except TimeoutError:
                daemon.kill()
                await daemon.wait()
        air.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
