"""`btogether admin sso …` and the users' email commands against a running relay and the test
OpenID provider: the client secret only from an owner-only file, a provider nobody answers for
refused with nothing saved, imported emails all-or-nothing, and what each command prints.

The first command runs as a process; the others run the same command tree in this process
(in a thread: each command runs its own event loop), which saves a Python start-up each."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from relay.cli.admin import add_arguments
from tests.oidc_harness import TestProvider
from tests.web.conftest import WebRelay
from tests.web.test_admin_center import btogether

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


async def test_the_command_line_configures_the_provider_and_imports_emails(
    web_relay: WebRelay, oidc_provider: TestProvider, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**os.environ, "BTOGETHER_RELAY_URL": web_relay.url,
           "BTOGETHER_ADMIN_TOKEN": web_relay.owner.token}
    monkeypatch.setenv("BTOGETHER_RELAY_URL", web_relay.url)
    monkeypatch.setenv("BTOGETHER_ADMIN_TOKEN", web_relay.owner.token)

    async def admin(*words: str, env: Any = None) -> tuple[int, str, str]:
        assert words[0] == "admin"
        parser = argparse.ArgumentParser(prog="btogether admin")
        add_arguments(parser)
        ns = parser.parse_args(words[1:])
        capsys.readouterr()
        code: int = await asyncio.to_thread(ns.func, ns)
        out, err = capsys.readouterr()
        # The relay in this process logs to the same stdout: its lines are not the command's.
        return code, "".join(line for line in out.splitlines(keepends=True)
                              if not LOG_LINE.match(line)), err

    client = await oidc_provider.register(web_relay.base)
    secret = tmp_path / "client-secret"
    secret.write_text(client.client_secret + "\n")
    secret.chmod(0o644)
    setting = ("admin", "sso", "set", "--tenant", "Contoso", "--issuer", oidc_provider.issuer,
               "--client-id", client.client_id, "--client-secret-file", str(secret),
               "--label", "Contoso ID", "--device-admin-group", "contoso-it",
               "--create-users", "on", "--auth-param", "ui_locales=en")
    code, out, err = await btogether(*setting, env=env)
    assert (code, out) == (2, "")
    assert err.strip() == (f"btogether admin: client secret file {secret} may be read by other "
                           f"users (mode 644); run: chmod 600 {secret}")
    secret.chmod(0o600)
    code, out, err = await admin(*setting, env=env)
    assert code == 0, err
    shown = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert shown["issuer"] == oidc_provider.issuer
    assert (shown["has_client_secret"], shown["create_users"], shown["redirect_path"]) == (
        "yes", "yes", "/oidc/callback")
    assert shown["auth_params.ui_locales"] == "en"
    assert client.client_secret not in out
    code, out, _ = await admin("admin", "sso", "show", "--tenant", "Contoso", env=env)
    assert code == 0 and oidc_provider.issuer in out and client.client_id in out
    # Nobody answers at this issuer: refused, and the provider above stays.
    code, out, err = await admin(
        "admin", "sso", "set", "--tenant", "Contoso", "--issuer", "http://127.0.0.1:9",
        "--client-id", "x", env=env)
    assert code == 1 and err.startswith(
        "btogether admin: refused (invalid_request): the provider cannot be used: cannot "
        "connect to 127.0.0.1:9 (connection refused); nothing was saved")
    code, out, _ = await admin("admin", "sso", "show", "--tenant", "Contoso", env=env)
    assert oidc_provider.issuer in out
    # Emails: a bad line imports nothing; a good file imports every line.
    emails = tmp_path / "emails.csv"
    emails.write_text("account,email\nContoso User,user@contoso.example\nNobody,x@contoso.example\n")
    code, out, _ = await admin("admin", "users", "import-emails", str(emails),
                                   "--tenant", "Contoso", env=env)
    assert out.strip() == "nothing was imported:\nline 3: no account 'Nobody' in this tenant"
    emails.write_text("Contoso User,User@Contoso.example\n")
    code, out, _ = await admin("admin", "users", "import-emails", str(emails),
                                   "--tenant", "Contoso", env=env)
    assert code == 0 and "user@contoso.example" in out
    code, out, _ = await admin("admin", "users", "emails", "--tenant", "Contoso", env=env)
    assert out.strip().splitlines()[1].split() == [
        "Contoso", "User", web_relay.contoso.user.id, "user@contoso.example"]
    code, out, err = await admin("admin", "users", "email", "Contoso User", "--tenant",
                                     "Contoso", env=env)
    assert (code, err.strip()) == (2, "btogether admin: give the email, or --clear to forget it")
    code, out, _ = await admin("admin", "users", "email", "Contoso User", "--clear",
                                   "--tenant", "Contoso", env=env)
    assert code == 0 and "email: -" in out
    code, out, _ = await admin("admin", "sso", "links", "--tenant", "Contoso", env=env)
    assert (code, out.strip()) == (0, "(none)")
    code, out, _ = await admin("admin", "sso", "check", "--tenant", "Contoso", env=env)
    assert code == 0 and "checked: 0" in out
    code, out, _ = await admin("admin", "sso", "remove", "--tenant", "Contoso", env=env)
    assert code == 0
    code, out, _ = await admin("admin", "sso", "show", "--tenant", "Contoso", env=env)
    assert out.strip() == "(none)"
