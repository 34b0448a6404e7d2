"""``btogether admin`` as administrators use it: bootstrap on the relay host, then commands
against the running relay with the owner's credential file — tables, --json, errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from relay.net.server import RelayServer
from relay.storage.sqlite_store import SqliteStore
from tests.btogether_cli import run_btogether
from tests.relay_harness import relay_settings


async def btogether(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btogether",
        *args,
        env=env or dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_bootstrap_then_administer_a_running_relay(tmp_path: Path) -> None:
    db, token_file = tmp_path / "relay.sqlite3", tmp_path / "owner-token"
    rc, out, err = await btogether(
        "admin",
        "bootstrap",
        "--db",
        str(db),
        "--owner",
        "Olivia",
        "--tenant",
        "Contoso",
        "--token-file",
        str(token_file),
    )
    assert rc == 0, err
    token = token_file.read_text().strip()
    assert token.startswith("btg_") and f"credential (shown once): {token}" in out
    assert token_file.stat().st_mode & 0o777 == 0o600
    tenant_id = next(line for line in out.splitlines() if line.startswith("tenant:"))
    tenant_id = tenant_id.rsplit("(", 1)[1].rstrip(")")
    rc, _, err = await btogether("admin", "bootstrap", "--db", str(db), "--owner", "Eve")
    assert rc == 1 and "already has an owner" in err

    server = RelayServer(relay_settings(db), SqliteStore(db))
    await server.start()
    try:
        common = ["--relay", f"ws://127.0.0.1:{server.port}/", "--token-file", str(token_file)]
        rc, template, _ = await btogether("admin", "devices", "template")
        assert rc == 0 and template.startswith("MAC address,Name,Kind,Location\n")
        csv = tmp_path / "devices.csv"
        csv.write_text(
            "MAC address,Location\n00:1B:44:11:3A:B7,Floor 2\n"
            "00:1B:44:11:3A:B8,Floor 3\nnonsense,Floor 4\n"
        )
        rc, _, err = await btogether(
            "admin", "devices", "import", str(csv), "--tenant", tenant_id, *common
        )
        assert rc == 1 and "nothing imported" in err and "line 4" in err
        rc, out, err = await btogether(
            "admin",
            "devices",
            "import",
            str(csv),
            "--tenant",
            tenant_id,
            "--kind",
            "desk_phone",
            "--skip-bad-rows",
            *common,
        )
        assert rc == 0, err
        assert "imported 2 device(s)" in out and "skipped line 4" in out
        rc, out, err = await btogether(
            "admin", "devices", "list", "--tenant", tenant_id, "--json", *common
        )
        devices = json.loads(out)["devices"]
        assert sorted(d["mac"] for d in devices) == ["00:1B:44:11:3A:B7", "00:1B:44:11:3A:B8"]
        rc, out, err = await btogether("admin", "codes", "create", devices[0]["id"], *common)
        assert rc == 0, err
        code = next(line for line in out.splitlines() if line.startswith("code:")).split()[1]
        assert len(code) == 6 and code.isdigit()
        rc, out, _ = await btogether("admin", "audit", *common)
        assert rc == 0
        header = out.splitlines()[0].split()
        assert header == ["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME"]
        assert "device.import" in out and "code.create" in out and "Olivia" in out
        rc, _, err = await btogether(
            "admin", "whoami", "--relay", f"ws://127.0.0.1:{server.port}/", "--token", "btg_wrong"
        )
        assert rc == 1 and "HTTP 401" in err
    finally:
        await server.stop()


async def test_an_owner_credential_file_others_may_read_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("btg_" + "0" * 64 + "\n")
    token_file.chmod(0o644)
    code, _, err = await run_btogether(
        "admin", "whoami", "--relay", "ws://127.0.0.1:9/", "--token-file", str(token_file)
    )
    assert code == 2 and f"chmod 600 {token_file}" in err and "Traceback" not in err, err
