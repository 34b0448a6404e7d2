"""Sign-in with the tenant's identity provider, in a real browser against a real OpenID provider
(oidc-provider from npm, on loopback): accounts linked by imported email or created at first
sign-in, groups mapped to roles, the device login page and a laptop's device-code login
through the provider, a person disabled at the provider losing their laptops, key rotation,
bad tokens and replays refused, tenants kept apart, and the provider down."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from client.config import ClientFiles, load_config, load_credential
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.web.conftest import (
    PASSWORD,
    SsoSetup,
    needs_browser,
    provider_answer,
    provider_sign_in,
    screenshot,
    sign_in,
)

pytestmark = needs_browser


async def session_of(page: Any) -> dict[str, Any]:
    answer: dict[str, Any] = await page.evaluate(
        "fetch('/api/session', {credentials: 'same-origin'}).then((r) => r.json())"
    )
    return answer


async def refused_page(page: Any) -> str:
    alert = page.locator("#sso-error")
    await alert.wait_for()
    text: str = await alert.inner_text()
    return text


async def users_of(sso: SsoSetup, tenant_id: str) -> list[aw.UserInfo]:
    listed = await sso.admin_call(aw.Users, aw.UserList, tenant_id=tenant_id)
    return list(listed.users)


async def test_first_sign_in_links_the_account_with_the_imported_email(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    person = await sso.provider.account("Casey Contoso", email="Casey@Contoso.example")
    await sso.admin_call(aw.UserEmail, aw.UserEmailSet, user_id=relay.contoso.user.id,
                         email="casey@contoso.example")
    before = await users_of(sso, relay.contoso.id)
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, person)
    await page.wait_for_url(f"{relay.base}/devicelogin")
    assert await page.locator("#who").inner_text() == "Signed in as Contoso User."
    signed = await session_of(page)
    assert signed["person"]["id"] == relay.contoso.user.id
    assert signed["method"] == f"sso:{sso.infos[relay.contoso.id].id}"
    assert [u.id for u in await users_of(sso, relay.contoso.id)] == [u.id for u in before]
    # The link is stored and shown to the owner in the admin center.
    admin = await browser.new_page()
    await sign_in(admin, relay.base, "olivia")
    await admin.wait_for_url(f"{relay.base}/admin/")
    await admin.select_option("#tenant", relay.contoso.id)
    await admin.click("nav a[data-section=sso]")
    row = admin.locator(f"#sso-links tr[data-person='{relay.contoso.user.id}']")
    await row.wait_for()
    cells = await row.locator("td").all_inner_texts()
    assert cells[:4] == ["Contoso User", "user", person.sub, "casey@contoso.example"]
    await screenshot(admin, "admin-sso")
    # The second sign-in finds the person by their subject (the email no longer matters).
    await sso.admin_call(aw.UserEmail, aw.UserEmailSet, user_id=relay.contoso.user.id, email=None)
    again = await browser.new_page()
    await provider_sign_in(again, sso, relay.contoso, person)
    await again.wait_for_url(f"{relay.base}/devicelogin")
    assert (await session_of(again))["person"]["id"] == relay.contoso.user.id


async def test_an_unknown_person_is_refused_unless_the_tenant_creates_accounts(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    person = await sso.provider.account("Dana Newcomer")
    before = await users_of(sso, relay.contoso.id)
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, person)
    assert "there is no account for you here yet" in await refused_page(page)
    assert (await session_of(page))["person"] is None
    assert len(await users_of(sso, relay.contoso.id)) == len(before)  # nothing half-made
    # An unverified email is not matched with an imported one either.
    unverified = await sso.provider.account("Eve Unverified", email="eve@contoso.example",
                                            email_verified=False)
    await sso.admin_call(aw.UserEmail, aw.UserEmailSet, user_id=relay.contoso.user.id,
                         email="eve@contoso.example")
    other = await browser.new_page()  # each person in their own browser
    await provider_sign_in(other, sso, relay.contoso, unverified)
    assert "there is no account for you here yet" in await refused_page(other)
    await sso.configure(relay.contoso, create_users=True)
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, person)
    await page.wait_for_url(f"{relay.base}/devicelogin")
    created = [u for u in await users_of(sso, relay.contoso.id) if u.name == "Dana Newcomer"]
    assert len(created) == 1 and (await session_of(page))["person"]["id"] == created[0].id
    links = await sso.admin_call(aw.SsoLinks, aw.SsoLinkList, tenant_id=relay.contoso.id)
    assert [(link.name, link.subject) for link in links.links] == [("Dana Newcomer", person.sub)]


async def test_groups_make_device_administrators_and_owners(sso: SsoSetup, browser: Any) -> None:
    relay = sso.relay
    it = await sso.provider.account("Ivan Itdesk", groups=("contoso-it", "staff"))
    boss = await sso.provider.account("Olga Owner", groups=("relay-owners",))
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, it)
    await page.wait_for_url(f"{relay.base}/admin/")
    await page.wait_for_selector("#devices")
    assert await page.locator("#who").inner_text() == "Ivan Itdesk · device administrator"
    person = (await session_of(page))["person"]
    assert (person["kind"], person["role"], person["tenant_id"]) == (
        "admin", "device_admin", relay.contoso.id)
    owner = await browser.new_page()
    await provider_sign_in(owner, sso, relay.contoso, boss)
    await owner.wait_for_url(f"{relay.base}/admin/")
    await owner.wait_for_selector("#devices")
    assert await owner.locator("#who").inner_text() == "Olga Owner · owner"
    # Out of the group: the next sign-in makes Ivan a plain user (an account is created
    # only if the tenant allows it; here it does not, so he is refused).
    await sso.provider.update(it, groups=["staff"])
    again = await browser.new_page()
    await provider_sign_in(again, sso, relay.contoso, it)
    assert "there is no account for you here yet" in await refused_page(again)


async def test_a_laptop_signs_in_through_the_provider_and_is_cut_off_when_the_provider_disables_the_person(
    sso: SsoSetup, browser: Any, tmp_path: Path
) -> None:
    relay = sso.relay
    person = await sso.provider.account("Lee Laptop", email="lee@contoso.example")
    await sso.admin_call(aw.UserEmail, aw.UserEmailSet, user_id=relay.contoso.user.id,
                         email="lee@contoso.example")
    state_dir = tmp_path / "laptop"
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether", "client", "login", "--relay", relay.url,
        "--state-dir", str(state_dir), "--name", "Lee laptop", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert client.stdout is not None
    first = json.loads(await asyncio.wait_for(client.stdout.readline(), 30))
    # The code's page asks for a sign-in; the person picks the provider and comes back.
    page = await browser.new_page()
    await page.goto(first["verification_uri_complete"])
    await page.wait_for_url(f"{relay.base}/signin?next=**")
    await page.click(f"#signin-sso-{sso.infos[relay.contoso.id].id}")
    await page.wait_for_url(f"{sso.provider.issuer}/interaction/**")
    await page.fill("input[name=login]", person.login)
    await page.fill("input[name=password]", "provider password 1")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{relay.base}/devicelogin?code=**")
    question = page.locator("#question")
    await question.wait_for()
    assert await question.inner_text() == "Sign in the laptop “Lee laptop” as Contoso User?"
    await page.click("#approve")
    await page.locator("#message [role=status]").wait_for()
    _, err = await asyncio.wait_for(client.communicate(), 30)
    assert client.returncode == 0, err.decode()
    files = ClientFiles(state_dir)
    laptop = await RelayLink.connect(relay.url, load_credential(files),
                                     laptop_id=load_config(files).laptop_id)
    try:
        assert laptop.welcome.principal.user_id == relay.contoso.user.id
        # Disabled at the provider: the next check revokes the laptop (its connection closes
        # at once) and ends the browser session.
        await sso.provider.update(person, disabled=True)
        asked = time.monotonic()
        report = await sso.admin_call(aw.SsoCheckReport, aw.SsoCheck, tenant_id=relay.contoso.id)
        assert (report.checked, report.disabled, report.credentials_revoked, report.error) == (
            1, ["Contoso User"], 1, None)
        code, _ = await asyncio.wait_for(laptop.closed, 2.0)
        assert code == wire.CloseCode.REVOKED and time.monotonic() - asked < 3.0
    finally:
        await laptop.close()
    assert (await session_of(page))["person"] is None
    links = await sso.admin_call(aw.SsoLinks, aw.SsoLinkList, tenant_id=relay.contoso.id)
    assert links.links[0].disabled_at is not None
    # No way back in: the provider refuses them, and so does the local password.
    again = await browser.new_page()
    await again.goto(f"{relay.base}/signin")
    await again.click(f"#signin-sso-{sso.infos[relay.contoso.id].id}")
    await again.fill("input[name=login]", person.login)
    await again.fill("input[name=password]", "provider password 1")
    await again.click("button[type=submit]")
    assert await again.get_by_role("alert").inner_text() == "this account is disabled"
    password = await browser.new_page()
    await sign_in(password, relay.base, "contoso-user", PASSWORD)
    assert await password.get_by_role("alert").inner_text() == "wrong login or password"
    audit = await sso.admin_call(aw.AuditEntries, aw.AuditList, limit=50)
    revoked = [e for e in audit.entries if e.action == "credential.revoke"]
    assert [e.actor for e in revoked] == ["identity provider check (owner relay)"]
    disabled = [e for e in audit.entries if e.action == "sso.disabled"]
    assert [(e.tenant_id, e.target) for e in disabled] == [(relay.contoso.id, relay.contoso.user.id)]


@pytest.mark.relay_settings(sso_check_s=1.0)
async def test_the_relay_checks_by_itself_and_cuts_off_whom_the_provider_no_longer_accepts(
    sso: SsoSetup,
) -> None:
    """No owner asks: the relay's own periodic check finds the person gone at the provider."""
    relay = sso.relay
    await sso.configure(relay.contoso, create_users=True, allowed_groups=["staff"])
    kept = await sso.provider.account("Kim Kept", groups=("staff",))
    leaver = await sso.provider.account("Lou Leaver", groups=("staff",))
    for person in (kept, leaver):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            answer = await provider_answer(http, sso, relay.contoso, person)
            async with http.get(answer, allow_redirects=False) as r:
                assert r.status == 303
    users = {u.name: u.id for u in await users_of(sso, relay.contoso.id)}
    credential = await sso.admin_call(aw.CredentialIssued, aw.CredentialIssue,
                                      user_id=users["Lou Leaver"])
    laptop = await RelayLink.connect(relay.url, credential.token, laptop_id="lou-laptop")
    try:
        await sso.provider.update(leaver, groups=["visitors"])  # out of the allowed group
        code, _ = await asyncio.wait_for(laptop.closed, 10.0)
        assert code == wire.CloseCode.REVOKED
    finally:
        await laptop.close()
    links = {link.name: link for link in
             (await sso.admin_call(aw.SsoLinks, aw.SsoLinkList, tenant_id=relay.contoso.id)).links}
    assert links["Lou Leaver"].disabled_at is not None
    assert links["Kim Kept"].disabled_at is None and links["Kim Kept"].checked_at is not None


async def test_the_relay_follows_a_key_rotation_and_refuses_unpublished_keys(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    await sso.configure(relay.contoso, create_users=True)
    first, second, third = [await sso.provider.account(n) for n in ("Ann One", "Ben Two", "Cy Three")]
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, first)
    await page.wait_for_url(f"{relay.base}/devicelogin")
    kids = await sso.provider.rotate(keep_old=False)  # the old key is gone at once
    assert len(kids) == 1
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, second)
    await page.wait_for_url(f"{relay.base}/devicelogin")
    assert (await session_of(page))["person"]["name"] == "Ben Two"
    await sso.provider.spoil(sso.clients[relay.contoso.id], "unknown_key")
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, third)
    assert "signed with a key the provider does not publish" in await refused_page(page)
    names = {u.name for u in await users_of(sso, relay.contoso.id)}
    assert {"Ann One", "Ben Two"} <= names and "Cy Three" not in names


async def test_tokens_for_another_client_expired_replayed_or_unsigned_are_refused(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    await sso.configure(relay.contoso, create_users=True)
    client = sso.clients[relay.contoso.id]
    for mode, said in (
        ("wrong_audience", "the ID token was issued to another client (audience)"),
        ("expired", "the ID token has expired"),
        ("replay", "the ID token's nonce is not this sign-in's (a replayed token?)"),
        ("alg_none", "the ID token cannot be read"),
    ):
        person = await sso.provider.account(f"Mal {mode}")
        await sso.provider.spoil(client, mode)
        page = await browser.new_page()
        await provider_sign_in(page, sso, relay.contoso, person)
        assert said in await refused_page(page), mode
        assert (await session_of(page))["person"] is None
        assert f"Mal {mode}" not in {u.name for u in await users_of(sso, relay.contoso.id)}
    # Clocks a minute apart are tolerated; ten minutes are not.
    relay.clock.advance(-60)
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, await sso.provider.account("Sam Skew"))
    await page.wait_for_url(f"{relay.base}/devicelogin")
    relay.clock.advance(-540)
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, await sso.provider.account("Tom Skew"))
    assert "issued in the future (the clocks disagree)" in await refused_page(page)


async def test_a_replayed_or_borrowed_state_is_refused(sso: SsoSetup, browser: Any) -> None:
    relay = sso.relay
    await sso.configure(relay.contoso, create_users=True)
    person = await sso.provider.account("Rita Replay")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as rita:
        answer = await provider_answer(rita, sso, relay.contoso, person)
        # Another browser with the same answer (state and code) gets nowhere...
        thief = await browser.new_page()
        await thief.goto(answer)
        assert "started in another browser" in await refused_page(thief)
        assert (await session_of(thief))["person"] is None
        # ... and did not spoil it for the browser that started the sign-in.
        async with rita.get(answer, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/devicelogin")
        async with rita.get(f"{relay.base}/api/session") as r:
            assert (await r.json())["person"]["name"] == "Rita Replay"
        # Used once: the same answer again is refused.
        async with rita.get(answer, allow_redirects=False) as r:
            assert r.status == 400 and "already used" in await r.text()


async def test_one_tenants_provider_never_signs_anyone_in_to_another_tenant(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    await sso.configure(relay.fabrikam, device_admin_groups=["fabrikam-it"])
    person = await sso.provider.account("Fay Fabrikam", email="fay@fabrikam.example",
                                        groups=("contoso-it",))
    await sso.admin_call(aw.UserEmail, aw.UserEmailSet, user_id=relay.fabrikam.user.id,
                         email="fay@fabrikam.example")
    # Through Contoso's button she is Contoso's (a device administrator by her group) and
    # never Fabrikam's user, whose email she has.
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, person)
    await page.wait_for_url(f"{relay.base}/admin/")
    signed = (await session_of(page))["person"]
    assert (signed["kind"], signed["tenant_id"]) == ("admin", relay.contoso.id)
    assert (await sso.admin_call(aw.SsoLinks, aw.SsoLinkList, tenant_id=relay.fabrikam.id)).links == []
    # Fabrikam cannot take Contoso's client at the provider.
    contoso_client = sso.clients[relay.contoso.id]
    link = await relay.admin_link()
    try:
        refused = await link.call(aw.SsoSet, tenant_id=relay.fabrikam.id,
                                  issuer=sso.provider.issuer, client_id=contoso_client.client_id,
                                  check=False)
        raise AssertionError(f"accepted: {refused}")
    except Exception as exc:  # RequestFailed
        assert "already signs people in to the tenant 'Contoso'" in str(exc)
    finally:
        await link.close()
    # A code from Contoso's sign-in with the state of Fabrikam's is refused by the provider
    # (the code is another client's, and bound to another PKCE verifier).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as fay:
        contoso_answer = await provider_answer(fay, sso, relay.contoso, person)
        fabrikam_answer = await provider_answer(fay, sso, relay.fabrikam, person)
        code = parse_qs(urlsplit(contoso_answer).query)["code"][0]
        state = parse_qs(urlsplit(fabrikam_answer).query)["state"][0]
        swapped = f"{relay.base}/oidc/callback?" + urlencode(
            {"code": code, "state": state, "iss": sso.provider.issuer})
        async with fay.get(swapped, allow_redirects=False) as r:
            assert r.status == 400 and "the provider refused (invalid_grant" in await r.text()
        async with fay.get(f"{relay.base}/api/session") as r:
            assert (await r.json())["person"] is None
    # Through Fabrikam's own button she is Fabrikam's user (found by the imported email).
    mine = await browser.new_page()
    await provider_sign_in(mine, sso, relay.fabrikam, person)
    await mine.wait_for_url(f"{relay.base}/devicelogin")
    assert (await session_of(mine))["person"]["id"] == relay.fabrikam.user.id


async def test_provider_down_or_misconfigured_is_said_clearly_and_passwords_still_work(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    info = sso.infos[relay.contoso.id]
    port = sso.provider.issuer.rsplit(":", 1)[1]
    await sso.provider.down()
    try:
        page = await browser.new_page()
        await page.goto(f"{relay.base}/signin")
        await page.click(f"#signin-sso-{info.id}")
        assert await refused_page(page) == (
            f"Contoso ID cannot be used right now: cannot connect to 127.0.0.1:{port} "
            "(connection refused). Try again later, or sign in with your password.")
        await sign_in(page, relay.base, "contoso-user")
        await page.wait_for_url(f"{relay.base}/devicelogin")
        report = await sso.admin_call(aw.SsoCheckReport, aw.SsoCheck, tenant_id=relay.contoso.id)
        assert report.disabled == []
    finally:
        await sso.provider.up()
    # Down between the provider's answer and the relay's code exchange.
    person = await sso.provider.account("Pat Patience")
    await sso.admin_call(aw.UserEmail, aw.UserEmailSet, user_id=relay.contoso.user.id,
                         email=person.email)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as pat:
        answer = await provider_answer(pat, sso, relay.contoso, person)
        await sso.provider.down()
        try:
            async with pat.get(answer, allow_redirects=False) as r:
                status, text = r.status, await r.text()
        finally:
            await sso.provider.up()
    assert status == 502
    assert f"Contoso ID cannot sign you in: cannot connect to 127.0.0.1:{port} (connection " \
        "refused). Nobody was signed in; try again later." in text
    assert (await sso.admin_call(aw.SsoLinks, aw.SsoLinkList, tenant_id=relay.contoso.id)).links == []
    # A wrong client secret: the provider refuses the relay, the page says so.
    await sso.configure(relay.contoso, client_secret="not the secret")
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, person)
    assert "refused the relay's client id or secret (invalid_client" in await refused_page(page)
    # A wrong issuer is refused when it is set, and nothing is saved.
    link = await relay.admin_link()
    try:
        await link.call(aw.SsoSet, tenant_id=relay.contoso.id, issuer="http://127.0.0.1:9/",
                        client_id="x")
        raise AssertionError("a provider nobody answers for was saved")
    except Exception as exc:  # RequestFailed
        assert "the provider cannot be used: cannot connect to 127.0.0.1:9" in str(exc)
        assert "nothing was saved" in str(exc)
    finally:
        await link.close()
    listed = await sso.admin_call(aw.SsoProviders, aw.SsoList, tenant_id=relay.contoso.id)
    assert [p.issuer for p in listed.providers] == [sso.provider.issuer]


async def test_sign_out_ends_the_session_and_offers_the_providers_sign_out(
    sso: SsoSetup, browser: Any
) -> None:
    relay = sso.relay
    await sso.configure(relay.contoso, create_users=True)
    person = await sso.provider.account("Sid Signout")
    page = await browser.new_page()
    await provider_sign_in(page, sso, relay.contoso, person)
    await page.wait_for_url(f"{relay.base}/devicelogin")
    await page.click("#signout")
    offer = page.locator("#provider-signout")
    await offer.wait_for()
    assert await offer.inner_text() == "Also sign out of Contoso ID"
    assert (await session_of(page))["person"] is None
    await offer.click()
    await page.wait_for_url(f"{sso.provider.issuer}/session/end**")
    await page.click("button[name=logout]")
    await page.wait_for_url(f"{relay.base}/signin")
    # Signed out at the provider too: the next sign-in asks for the password again.
    await page.click(f"#signin-sso-{sso.infos[relay.contoso.id].id}")
    await page.wait_for_url(f"{sso.provider.issuer}/interaction/**")
