"""`btogether beacon run` as a separate process, as the demo and a supervisor run it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from hw.sim.launch import AirProcess
from hw.standin.logind import LogindStandIn
from relay.protocol import wire
from relay.protocol.eid import eid_at
from tests.beacon.conftest import Relay, World, beacon_cli, laptop, provisioned_phone


async def _line(stream: asyncio.StreamReader, prefix: str, within: float = 15.0) -> str:
    async with asyncio.timeout(within):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"the daemon exited before printing {prefix!r}")
            line = raw.decode().rstrip("\n")
            if line.startswith(prefix):
                return line


async def test_daemon_process_connects_advertises_locks_and_stops_cleanly(
    relay: Relay, world: World, air: AirProcess, logind: LogindStandIn
) -> None:
    await relay.admin.pair(world.alice.id, "laptop-1", world.phone.id)
    state_dir = provisioned_phone(relay, world)
    env = {**os.environ, **air.env("phone"), "PULSE_SERVER": f"unix:{state_dir}/none.sock"}
    env.pop("BTOGETHER_CONFIG", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether.cli", "beacon", "run", "--state-dir", str(state_dir),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ready = await _line(process.stdout, "ready")
        assert str(state_dir / "control.sock") in ready
        assert (state_dir / "control.sock").stat().st_mode & 0o777 == 0o600
        await _line(process.stdout, "connected")
        await _line(process.stdout, "advertising on")

        link = await laptop(relay, world)
        await link.lock_set("locked")
        applied = await link.next_event("lock.applied")
        assert isinstance(applied, wire.LockApplied) and applied.state == "locked"
        assert logind.session().locked_hint is True

        code, out, err = await beacon_cli("status", "--state-dir", str(state_dir), "--json", env=env)
        assert code == 0, err
        status = json.loads(out)
        assert status["connected"] is True and status["advertising"] is True
        assert status["lock"]["state"] == "locked"
        key, k = world.phone.identity_key, world.phone.rotation_exponent
        now = time.time()
        assert status["eid"] in {eid_at(key, t, k).hex() for t in (now - 2, now)}
        code, out, _ = await beacon_cli("status", "--state-dir", str(state_dir), env=env)
        assert code == 0 and "relay         connected" in out

        # Over the (simulated) air: a scanner on the neighbouring host hears the phone by name.
        scan = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "btogether.cli", "client", "scan", "--timeout", "2",
            "--key", f"phone={key.hex()}", env={**os.environ, **air.env("room")},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        heard, _ = await asyncio.wait_for(scan.communicate(), 30)
        assert scan.returncode == 0 and "name=phone" in heard.decode()
        await link.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 15)
    assert code == 0
    assert not (state_dir / "control.sock").exists()
    assert json.loads((state_dir / "status.json").read_text())["connected"] is False


async def test_bad_config_is_refused_with_the_key_and_exit_code_2(tmp_path: Path,
                                                                 relay: Relay,
                                                                 world: World) -> None:
    state_dir = provisioned_phone(relay, world)
    bad = tmp_path / "beacon.toml"
    bad.write_text('[hooks]\non_lock = "echo \\"unclosed"\n[audio]\nvolume = 11\n')
    code, _, err = await beacon_cli("run", "--state-dir", str(state_dir), "--config", str(bad))
    assert code == 2
    assert "hooks.on_lock" in err and "audio.volume" in err and str(bad) in err

    bad.write_text("auto_confirm = \n")
    code, _, err = await beacon_cli("run", "--state-dir", str(state_dir), "--config", str(bad))
    assert code == 2 and "not valid TOML" in err

    code, _, err = await beacon_cli("run", "--state-dir", str(state_dir),
                                    "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "cannot read config file" in err

    env = {**os.environ, "BTOGETHER_ADVERTISING__TX_POWER": "99"}
    code, _, err = await beacon_cli("run", "--state-dir", str(state_dir), env=env)
    assert code == 2 and "advertising.tx_power" in err


async def test_unprovisioned_device_is_told_to_provision(tmp_path: Path) -> None:
    code, _, err = await beacon_cli("run", "--state-dir", str(tmp_path))
    assert code == 2 and "not provisioned" in err


async def test_confirm_without_a_running_daemon_says_so(tmp_path: Path) -> None:
    code, _, err = await beacon_cli("confirm", "--state-dir", str(tmp_path))
    assert code == 1 and "the beacon daemon is not running" in err and "btogether beacon run" in err
