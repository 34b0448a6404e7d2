"""The web side's pure cores and its admin requests without a browser: the front door's
routing, password hashes, the sign-in throttle, and the account requests over the admin
websocket (the command line's path) with their audit."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from relay.protocol import admin_wire as aw
from relay.protocol.link import RequestFailed
from relay.web.accounts import FailureRecord
from relay.web.frontdoor import Route, route
from relay.web.passwords import ScryptCost, hash_password, needs_rehash, verify_password
from relay.web.signin import ThrottleRules, after_failure, locked_until
from tests.web.conftest import WebRelay, http_person

CHEAP = ScryptCost(n=2**10)


def _head(first: str, *headers: str) -> bytes:
    return ("\r\n".join((first, *headers)) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_head("GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), Route.WEBSOCKET),
        (_head("GET /admin HTTP/1.1", "upgrade: WebSocket"), Route.WEBSOCKET),
        (_head("GET /healthz HTTP/1.1", "Host: x"), Route.WEBSOCKET),
        (_head("GET /metrics HTTP/1.1"), Route.WEBSOCKET),
        (_head("GET / HTTP/1.1", "Host: x"), Route.WEB),
        (_head("GET /admin/ HTTP/1.1", "Host: x"), Route.WEB),
        (_head("GET /static/admin.js HTTP/1.1"), Route.WEB),
        (_head("POST /admin/api/device.list HTTP/1.1", "Content-Length: 2"), Route.WEB),
        (_head("POST / HTTP/1.1"), Route.WEB),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", Route.MORE),
        (b"\x16\x03\x01\x02\x00", Route.WEBSOCKET),
        (b"G", Route.MORE),
        (b"X" * 20_000, Route.WEBSOCKET),
        (_head("garbage"), Route.WEBSOCKET),
    ],
)
def test_front_door_sends_handshakes_to_websockets_and_the_rest_to_the_web(
    head: bytes, expected: Route
) -> None:
    assert route(head) is expected


def test_password_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse battery", CHEAP, lambda n: b"s" * n)
    assert stored.startswith("scrypt$1024$8$1$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("anything", None)
    assert not verify_password("anything", "md5$nope")
    assert needs_rehash(stored)  # cheaper than the default cost


def test_throttle_locks_at_the_limit_and_forgets_after_the_window() -> None:
    rules = ThrottleRules(window_s=60, login_failures=3, lockout_s=100)
    record: FailureRecord | None = None
    for at in (0.0, 1.0):
        record = after_failure(record, "login:x", 3, at, rules)
        assert locked_until(record, at) is None
    record = after_failure(record, "login:x", 3, 2.0, rules)
    assert locked_until(record, 50.0) == 102.0
    assert locked_until(record, 102.0) is None
    fresh = after_failure(record, "login:x", 3, 200.0, rules)
    assert fresh.failures == 1 and fresh.first_at == 200.0


async def test_password_set_over_the_admin_websocket_is_audited_without_the_password(
    web_relay: WebRelay, tmp_path: Path
) -> None:
    secret = "a brand new secret 42"
    password_file = tmp_path / "pw"
    password_file.write_text(secret + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether", "admin", "users", "password",
        web_relay.contoso.user.id, "--password-file", str(password_file), "--login", "cu2",
        "--relay", web_relay.url, "--token", web_relay.owner.token, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert aw.LoginInfo.model_validate_json(out).login == "cu2"
    link = await web_relay.admin_link()
    try:
        audit = await link.typed(aw.AuditEntries, aw.AuditList, limit=5)
        entry = audit.entries[-1]
        assert entry.action == "password.set" and entry.outcome == "ok"
        assert entry.detail["password"] == "**********"
        assert secret not in str(audit.model_dump())
        # A device administrator may not set passwords.
        admin = await web_relay.admin_link(web_relay.contoso.device_admin.token)
        try:
            with pytest.raises(RequestFailed) as refused:
                await admin.call(
                    aw.PasswordSet, subject_kind="user", subject_id=web_relay.contoso.user.id,
                    password="another long one",
                )
            assert refused.value.code.value == "forbidden"
        finally:
            await admin.close()
    finally:
        await link.close()
    async with http_person(web_relay.base) as person:
        assert await person.sign_in("CU2", secret) == 200
        assert person.person is not None and person.person["id"] == web_relay.contoso.user.id


async def test_setup_link_sets_a_password_once(web_relay: WebRelay) -> None:
    link = await web_relay.admin_link()
    try:
        made = await link.typed(
            aw.SetupLink, aw.SetupLinkCreate, subject_kind="user",
            subject_id=web_relay.fabrikam.user.id,
        )
    finally:
        await link.close()
    assert made.login == "fabrikam-user" and made.expires_at > time.time() + 71 * 3600
    token = made.path.split("#", 1)[1]
    async with http_person(web_relay.base) as person:
        body = {"token": token, "password": "chosen by me 123"}
        status, text = await person.post("/api/setup", body)
        assert status == 200 and json.loads(text)["login"] == "fabrikam-user"
        status, text = await person.post("/api/setup", body)
        assert status == 409 and "already used" in json.loads(text)["error"]["message"]
        assert await person.sign_in("fabrikam-user", "chosen by me 123") == 200


async def test_relay_plain_paths_still_answer_and_a_browser_gets_the_sign_in_page(
    web_relay: WebRelay,
) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{web_relay.base}/healthz") as r:
            assert r.status == 200 and await r.text() == "ok\n"
        async with http.get(f"{web_relay.base}/") as r:
            assert r.status == 200 and str(r.url).endswith("/signin")
            assert "Sign in to btogether" in await r.text()
        # The same keep-alive connection now belongs to the web side: still answered.
        async with http.get(f"{web_relay.base}/readyz") as r:
            assert r.status == 200 and await r.text() == "ready\n"
        async with http.get(f"{web_relay.base}/static/../../node.py") as r:  # relay/node.py
            assert r.status in (403, 404)
