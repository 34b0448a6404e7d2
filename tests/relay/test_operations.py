"""Operations: health, readiness and metrics on the websocket port; the CLI; SIGTERM; settings."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from relay.admin.store_admin import Admin
from relay.config import ConfigFileError, load_settings
from relay.protocol import wire
from relay.protocol.link import RelayLink
from relay.storage.sqlite_store import SqliteStore
from tests.relay.conftest import RelayHarness, World


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return (
                response.status,
                response.headers.get("Content-Type", ""),
                response.read().decode(),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, "", exc.read().decode()


async def test_health_readiness_and_metrics_share_the_port(
    relay: RelayHarness, world: World
) -> None:
    assert (await asyncio.to_thread(_get, relay.http + "/healthz"))[0] == 200
    assert (await asyncio.to_thread(_get, relay.http + "/readyz"))[0] == 200
    laptop = await relay.laptop(world.alice)
    await laptop.ping()
    await laptop.exchange('{"type":"nope","id":1}', 1)
    status, content_type, body = await asyncio.to_thread(_get, relay.http + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'btogether_relay_connections{role="laptop"} 1.0' in body
    assert 'btogether_relay_requests_total{outcome="ok",type="ping"} 1.0' in body
    assert 'btogether_relay_requests_total{outcome="unknown_type",type="?"} 1.0' in body
    assert "btogether_relay_request_seconds_bucket" in body
    assert (await asyncio.to_thread(_get, relay.http + "/elsewhere"))[0] == 404
    await laptop.close()


def _settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def test_settings_precedence_file_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _settings_file(tmp_path, '[relay]\nport = 9001\nhost = "0.0.0.0"\nrate_burst = 7\n')
    settings = load_settings(config)
    assert (settings.port, settings.host, settings.rate_burst) == (9001, "0.0.0.0", 7)
    monkeypatch.setenv("BTOGETHER_PORT", "9002")
    assert load_settings(config).port == 9002
    assert load_settings(config, {"port": 9003, "host": None}).port == 9003


def test_bad_settings_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError):
        load_settings(_settings_file(tmp_path, "port = ["))
    with pytest.raises(ConfigFileError):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ValidationError):
        load_settings(_settings_file(tmp_path, "port = 70000\n"))
    with pytest.raises(ValidationError):
        load_settings(_settings_file(tmp_path, "colour = 'blue'\n"))


async def _provision(db: Path) -> tuple[str, str]:
    store = SqliteStore(db)
    await store.open()
    admin = Admin(store)
    tenant = await admin.create_tenant("Contoso")
    user = await admin.create_user(tenant.id, "alice")
    credential = await admin.issue_credential("user", user.id)
    await store.close()
    return user.id, credential.token


async def test_serve_command_logs_json_per_request_and_closes_1001_on_sigterm(
    tmp_path: Path,
) -> None:
    db = tmp_path / "relay.sqlite3"
    _, token = await _provision(db)
    port_file = tmp_path / "port"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btogether",
        "--log-level",
        "info",
        "--log-json",
        "relay",
        "serve",
        "--port",
        "0",
        "--db",
        str(db),
        "--port-file",
        str(port_file),
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        link = await RelayLink.connect(f"ws://127.0.0.1:{port}/", token, laptop_id="l1")
        await link.ping()
        process.send_signal(signal.SIGTERM)
        code, _ = await asyncio.wait_for(link.closed, 10)
        assert code == wire.CloseCode.GOING_AWAY
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    lines = (await process.stderr.read()).decode().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    requests = [e for e in events if e["event"] == "request"]
    assert len(requests) == 1
    assert requests[0]["type"] == "ping" and requests[0]["outcome"] == "ok"
    assert requests[0]["role"] == "laptop" and requests[0]["laptop"] == "l1"
