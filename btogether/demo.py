"""``btogether demo``: the whole Better Together story on one machine, narrated.

No hardware and no configuration: a relay on a temporary SQLite database, the simulated
air with two rooms, a desk phone and a laptop, logind stand-ins on the laptop's and the
phone's buses, a headless PulseAudio for the phone (when the machine has one), and the
real daemons as separate processes.  Devices join the tenant through the real
administrator flow (device list → verification code → ``beacon provision`` → login
code → sign-in).  Then the story: the laptop discovers the rooms and the phone, the
nearest room is on top, the user connects the phone (both ends confirm), the laptop
locks and the phone follows, unlocks, the phone becomes the meeting's audio device,
and the laptop walks to the other room and the ranking follows.

Every step either succeeds with a one-line account of what happened or fails with a
message saying what did not happen and where the logs are; the exit code says which.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from btogether.sso_demo import SsoDemo
from btogether.stage import Actor, Stage, StageError
from hw.lock import LockBusConfig, create_session_locker

MEETING_ID = "weekly-sync-42"
# Metres.  Room A and room B are 12 m apart; the desk phone sits on the user's desk in
# room A; the laptop starts beside it and later walks over to room B.
FLOOR: dict[str, tuple[float, float]] = {
    "room-a": (0.0, 0.0),
    "room-b": (12.0, 0.0),
    "phone": (1.0, 1.5),
    "laptop": (0.6, -0.6),
}
LAPTOP_IN_ROOM_B = (11.4, -0.6)
DEVICES: dict[str, dict[str, str]] = {
    "room-a": {"mac": "02:00:5E:10:00:0A", "name": "Room Aurora", "kind": "room_system",
               "location": "Room Aurora", "account": "Aurora room"},
    "room-b": {"mac": "02:00:5E:10:00:0B", "name": "Room Borealis", "kind": "room_system",
               "location": "Room Borealis", "account": "Borealis room"},
    "phone": {"mac": "02:00:5E:10:00:0C", "name": "Alex's desk phone", "kind": "desk_phone",
              "location": "Room Aurora, desk 3", "account": "Alex Doe"},
}
PHONE_SINK, PHONE_SOURCE = "speakerphone", "speakerphone_mic"


class StepFailed(RuntimeError):
    pass


class Skipped(str):
    """A step's detail saying it did not run, and why (e.g. no PulseAudio on this machine):
    reported as skipped, never as a success."""

    __slots__ = ()


@dataclass
class Narrator:
    """Prints each step as it completes: human lines or JSON lines."""

    json_lines: bool
    started: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def say(self, text: str) -> None:
        if not self.json_lines:
            print(text, flush=True)

    def step(self, title: str, action: Callable[[], str]) -> str:
        number = len(self.steps) + 1
        if not self.json_lines:
            print(f"[{number:2d}] {title} …", end="", flush=True)
        t0 = time.monotonic()
        try:
            detail = action()
        except Exception as exc:  # any failure is this step's, reported and not a traceback
            error = str(exc) if isinstance(exc, StageError | StepFailed) else (
                f"{type(exc).__name__}: {exc}")
            record = {"step": number, "title": title, "ok": False, "error": error,
                      "elapsed_s": round(time.monotonic() - t0, 2)}
            self.steps.append(record)
            if self.json_lines:
                print(json.dumps(record), flush=True)
            else:
                print(" FAILED", flush=True)
            raise StepFailed(f"step {number} ({title}) failed: {error}") from exc
        skipped = isinstance(detail, Skipped)
        record = {"step": number, "title": title, "ok": True, "detail": detail,
                  "elapsed_s": round(time.monotonic() - t0, 2)}
        if skipped:
            record["skipped"] = True
        self.steps.append(record)
        if self.json_lines:
            print(json.dumps(record), flush=True)
        else:
            outcome = "skipped" if skipped else "ok"
            print(f" {outcome} ({record['elapsed_s']:.1f} s)\n     {detail}", flush=True)
        return detail


class Demo:
    """The cast and the story."""

    def __init__(
        self,
        stage: Stage,
        narrator: Narrator,
        audio: bool,
        floor: dict[str, tuple[float, float]] | None = None,
        devices: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.stage = stage
        self.floor = dict(FLOOR if floor is None else floor)
        self.devices = dict(DEVICES if devices is None else devices)
        self.narrator = narrator
        self.want_audio = audio
        self.pulse: Any = None
        self.pulse_note = ""
        self.admin_token_file = stage.workdir / "admin-token"
        self.admin_password = ""
        self.tenant_id = ""
        self.users: dict[str, str] = {}
        self.device_ids: dict[str, str] = {}
        self.db = str(stage.workdir / "relay.sqlite3")  # what `admin bootstrap --db` opens

    # --- helpers -------------------------------------------------------------------------

    def admin(self, *args: str) -> Any:
        return self.stage.run_json(
            self.stage.argv("admin", *args[:2], "--relay", self.stage.relay_url,
                            "--token-file", str(self.admin_token_file), "--json", *args[2:])
        )

    def on(self, host: str, *args: str, timeout: float = 30.0) -> Any:
        """Run a btogether command on a simulated host and parse its JSON output."""
        return self.stage.run_json(self.stage.argv(*args), env=self.host_env(host),
                                   timeout=timeout)

    def host_env(self, host: str) -> dict[str, str]:
        extra: dict[str, str] = {}
        if host == "phone" and self.pulse is not None:
            extra["PULSE_SERVER"] = self.pulse.server
        return self.stage.env_for(host, extra)

    def nearby(self) -> list[dict[str, Any]]:
        return list(self.on("laptop", "client", "nearby", "--json"))

    def phone_session_locked(self, host: str = "phone") -> bool:
        """Whether the phone's logind session is locked (what the person sees)."""
        assert self.stage.air is not None
        config = LockBusConfig(system_bus_address=self.stage.air.bus_address(host))

        async def read() -> bool:
            locker = create_session_locker(config)
            await locker.start()
            try:
                return bool(await locker.is_locked())
            finally:
                await locker.stop()

        return asyncio.run(read())

    # --- setting the stage ---------------------------------------------------------------

    def start_air(self) -> str:
        air = self.stage.start_air([(name, x, y) for name, (x, y) in self.floor.items()],
                                   noise_db=1.0, seed=7)
        where = ", ".join(f"{n} at ({x:g}, {y:g}) m" for n, (x, y) in self.floor.items())
        return f"{len(air.addresses)} hosts, each with its own D-Bus and simulated BlueZ: {where}"

    def start_desktops(self) -> str:
        assert self.stage.air is not None
        phones = [h for h, d in self.devices.items() if d["kind"] == "desk_phone"]
        desktops: list[tuple[str, list[str]]] = [("laptop", [])]
        desktops += [(h, ["--desktop-sets-hint"]) for h in phones]
        for host, extra in desktops:
            actor = self.stage.spawn(
                f"logind-{host}",
                [sys.executable, "-m", "hw.standin", "serve", "--system-bus",
                 self.stage.air.bus_address(host), "--session", "1", *extra],
            )
            self.stage.wait_for(partial(_ready_line, actor), f"the logind stand-in on {host}",
                                timeout=15)
        return ("logind stand-ins own org.freedesktop.login1 on the buses of: "
                + ", ".join(h for h, _ in desktops))

    def start_audio(self) -> str:
        if not self.want_audio:
            self.pulse_note = "audio hand-off skipped (--no-audio)"
            return Skipped(self.pulse_note)
        if importlib.util.find_spec("pulsectl") is None:
            # `pip install .` without the desktop extra: the phone could not move the audio.
            self.pulse_note = ("audio hand-off skipped: pulsectl is not installed "
                               "(pip install 'btogether[desktop]')")
            return Skipped(self.pulse_note)
        from hw.standin.pulseaudio import PulseAudioUnavailable, start_headless_pulseaudio

        try:
            self.pulse = start_headless_pulseaudio(
                sinks=("handset", PHONE_SINK), sources=("handset_mic", PHONE_SOURCE),
                directory=self.stage.workdir / "pulse",
            )
        except PulseAudioUnavailable as exc:
            self.pulse_note = f"audio hand-off skipped: no PulseAudio here ({exc})"
            return Skipped(self.pulse_note)
        self.pulse.play("handset")
        return (f"headless PulseAudio for the phone: sinks handset (default) and {PHONE_SINK}, "
                "a call stream playing on the handset")

    def start_relay(self) -> str:
        url = self.stage.start_relay()
        return f"relay at {url}, state in {self.stage.workdir / 'relay.sqlite3'}"

    def bootstrap(self) -> str:
        # The owner's password for the admin center (a local demo: kept in the work dir).
        self.admin_password = "demo-" + secrets.token_urlsafe(9)
        password_file = self.stage.workdir / "admin-password"
        password_file.touch(mode=0o600)
        password_file.write_text(self.admin_password + "\n")
        done = self.stage.run(self.stage.argv(
            "admin", "bootstrap", "--db", self.db,
            "--owner", "Demo Admin", "--tenant", "Contoso",
            "--token-file", str(self.admin_token_file), "--password-file", str(password_file)))
        found = re.search(r"^tenant: Contoso \((\S+)\)$", done.stdout, re.MULTILINE)
        if found is None:
            raise StepFailed(f"bootstrap printed no tenant id: {done.stdout!r}")
        self.tenant_id = found.group(1)
        accounts = ["Alex Doe"] + [d["account"] for d in self.devices.values()]
        for account in dict.fromkeys(accounts):
            user = self.admin("users", "create", account, "--tenant", self.tenant_id)
            self.users[account] = str(user["id"])
        return (f"owner 'Demo Admin' and tenant Contoso ({self.tenant_id}); accounts: "
                + ", ".join(self.users))

    def list_devices(self) -> str:
        rooms_csv = self.stage.workdir / "rooms.csv"
        rooms = [d for d in self.devices.values() if d["kind"] == "room_system"]
        rooms_csv.write_text("MAC address,Location\n" + "".join(
            f"{d['mac']},{d['location']}\n" for d in rooms))
        self.admin("devices", "import", str(rooms_csv), "--tenant", self.tenant_id,
                   "--kind", "room_system")
        for phone in (d for d in self.devices.values() if d["kind"] != "room_system"):
            self.admin("devices", "add", phone["mac"], "--tenant", self.tenant_id,
                       "--kind", phone["kind"], "--location", phone["location"],
                       "--name", phone["name"])
        listed = self.admin("devices", "list", "--tenant", self.tenant_id)
        rows = listed["devices"]
        by_mac = {str(r["mac"]).upper(): r for r in rows}
        for host, spec in self.devices.items():
            row = by_mac.get(spec["mac"])
            if row is None:
                raise StepFailed(f"{spec['mac']} is not in the device list: {rows}")
            self.device_ids[host] = str(row["id"])
            if row.get("state") != "waiting_for_activation":
                raise StepFailed(f"{host} is {row.get('state')}, not waiting for activation")
        return (f"{len(rooms)} rooms imported from CSV, {len(self.devices) - len(rooms)} "
                "desk phone(s) added by MAC: all waiting for activation")

    def provision(self, host: str) -> str:
        spec = self.devices[host]
        code = self.admin("codes", "create", self.device_ids[host])
        digits = code["code"]
        self.stage.run(
            self.stage.argv("beacon", "provision", str(digits), "--relay", self.stage.relay_url,
                            "--mac", spec["mac"]), env=self.host_env(host))
        config = self.stage.state_dir(host) / "beacon.toml"
        if spec["kind"] == "desk_phone":
            config.write_text(f'[audio]\nsink = "{PHONE_SINK}"\nsource = "{PHONE_SOURCE}"\n')
        else:
            config.write_text("auto_confirm = true\n")
        self.stage.spawn(f"beacon-{host}", self.stage.argv("beacon", "run"),
                         env=self.host_env(host))
        self.stage.wait_for(lambda: self.device_status(host).get("connected") or None,
                            f"the {host} beacon daemon to reach the relay", timeout=20)
        login = self.admin("codes", "login", self.device_ids[host])
        login_code = login["code"]
        self.admin("devices", "sign-in", self.device_ids[host], self.users[spec["account"]],
                   "--code", str(login_code))
        self.stage.wait_for(lambda: self.device_status(host).get("advertising") or None,
                            f"{spec['name']} to be signed in and beaconing", timeout=20)
        return (f"{spec['name']}: code {digits} entered on the device, login code {login_code} "
                f"used to sign in {spec['account']!r}; it now beacons its rotating EID")

    def device_status(self, host: str) -> dict[str, Any]:
        return dict(self.on(host, "beacon", "status", "--json"))

    def start_laptop(self) -> str:
        user = self.admin("credentials", "issue", self.users["Alex Doe"])
        token = user["token"]
        self.stage.run(self.stage.argv("client", "login", "--relay", self.stage.relay_url,
                                       "--token-file", "-", "--name", "Alex's laptop"),
                       env=self.host_env("laptop"), stdin=str(token) + "\n")
        self.stage.spawn("client-laptop", self.stage.argv("client", "run"),
                         env=self.host_env("laptop"))
        self.on("laptop", "client", "status", "--json", "--wait", "20")
        self.on("laptop", "client", "meeting", MEETING_ID, "--json")
        return f"Alex signed in on the laptop; `client run` scans and talks to the relay; " \
               f"current meeting {MEETING_ID}"

    # --- the story -----------------------------------------------------------------------

    def visible_to_alex(self) -> set[str]:
        """Device ids Alex's laptop may learn: the tenant's rooms and Alex's own phones."""
        return {self.device_ids[h] for h, d in self.devices.items()
                if d["kind"] == "room_system" or d["account"] == "Alex Doe"}

    def discover(self) -> str:
        def ready() -> list[dict[str, Any]] | None:
            near = self.nearby()
            heard = {d["device_id"] for d in near}
            return near if self.visible_to_alex() <= heard else None

        near = self.stage.wait_for(ready, "the laptop to discover both rooms and the phone",
                                   timeout=30)
        return "; ".join(f"{d['name']} ~{d['distance_m']:.1f} m" for d in near)

    def nearest_room(self, host: str) -> str:
        want = self.device_ids[host]

        def top_room() -> list[dict[str, Any]] | None:
            rooms = [d for d in self.nearby() if d.get("kind") == "room_system"]
            return rooms if rooms and rooms[0]["device_id"] == want else None

        rooms = self.stage.wait_for(top_room, f"{self.devices[host]['location']} to be the "
                                    "top-ranked room", timeout=30)
        return "rooms, nearest first: " + ", ".join(
            f"{r['name']} ({r['distance_m']:.1f} m)" for r in rooms)

    def connect_phone(self, host: str = "phone") -> str:
        laptop = self.stage.spawn("connect", self.stage.argv(
            "client", "connect", "--yes", "--json", "--timeout", "30",
            self.device_ids[host]), env=self.host_env("laptop"))

        def prompt() -> dict[str, Any] | None:
            if not laptop.alive() and laptop.process.returncode != 0:
                raise StepFailed(f"`client connect` exited {laptop.process.returncode}: "
                                 f"{laptop.tail()}")
            prompts = self.device_status(host).get("prompts") or []
            return prompts[0] if prompts else None

        shown = self.stage.wait_for(prompt, "the pair prompt on the phone", timeout=20)
        self.stage.run(self.stage.argv("beacon", "confirm"), env=self.host_env(host))
        code = laptop.process.wait(timeout=40)
        if code != 0:
            raise StepFailed(f"`client connect` exited {code}: {laptop.tail()}")
        pairings = self.on("laptop", "client", "pairings", "--json")
        if not pairings:
            raise StepFailed("the laptop lists no pairing after both ends confirmed")
        return (f"the phone showed code {shown.get('code')} and was confirmed on the device; "
                "the laptop confirmed too; the pairing is stored at the relay")

    def lock_laptop_session(self, lock: bool) -> None:
        """Lock (or unlock) the laptop's logind session as its desktop would; waits for nothing."""
        assert self.stage.air is not None
        verb = "lock" if lock else "unlock"
        self.stage.run([sys.executable, "-m", "hw.standin", verb, "--system-bus",
                        self.stage.air.bus_address("laptop"), "--session", "1"])

    def lock_laptop(self, lock: bool) -> str:
        verb = "lock" if lock else "unlock"
        self.lock_laptop_session(lock)
        self.stage.wait_for(lambda: self.phone_session_locked() == lock or None,
                            f"the phone's session to {verb}", timeout=20)
        state = "locked" if lock else "unlocked"
        return f"laptop session {state} (logind) → relay → phone: its logind session is {state}"

    def audio(self, on: bool) -> str:
        if self.pulse is None:
            return Skipped(self.pulse_note)
        if on:
            self.on("laptop", "client", "audio", "on", "--json", "--wait", "15")
            self.stage.wait_for(lambda: self._streams_on(PHONE_SINK, PHONE_SOURCE) or None,
                                f"the phone's speakerphone to become the default sink and "
                                f"{PHONE_SOURCE} the default source, with the call stream on "
                                "the sink", timeout=15)
            return (f"the phone took the meeting's audio: default sink {PHONE_SINK}, "
                    f"source {PHONE_SOURCE}, the running stream moved")
        self.on("laptop", "client", "audio", "off", "--json", "--wait", "15")
        self.stage.wait_for(lambda: self._streams_on("handset", "handset_mic") or None,
                            "the phone to give the audio back", timeout=15)
        return ("audio released: handset and handset_mic are the defaults again, "
                "the stream moved back")

    def _streams_on(self, sink_name: str, source_name: str) -> bool:
        """Whether ``sink_name`` and ``source_name`` are the defaults and every playing
        stream is on the sink (what the audio steps report, read back from PulseAudio)."""
        import pulsectl

        with pulsectl.Pulse("btogether-demo", server=self.pulse.server) as pulse:
            info = pulse.server_info()
            if (info.default_sink_name, info.default_source_name) != (sink_name, source_name):
                return False
            sink = pulse.get_sink_by_name(sink_name)
            streams = pulse.sink_input_list()
            return bool(streams) and all(s.sink == sink.index for s in streams)

    def walk(self) -> str:
        assert self.stage.air is not None
        self.stage.air.move("laptop", *LAPTOP_IN_ROOM_B)
        return "the laptop walked to room B; " + self.nearest_room("room-b")

    def close(self) -> None:
        if self.pulse is not None:
            self.pulse.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole Better Together story on this machine with simulated Bluetooth: "
        "relay (temporary SQLite), simulated air with two rooms, a desk phone and a laptop, "
        "provisioning through the admin flow, then discovery, connecting the phone, lock "
        "mirroring, audio hand-off and walking to another room. Exit code 0 when every "
        "step succeeded."
    )
    parser.add_argument("--json", action="store_true", help="print the steps as JSON lines")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs, databases) after a success")
    parser.add_argument("--serve", action="store_true",
                        help="after the story, keep the relay, devices and laptop running and "
                        "print the admin center's address and sign-in; Ctrl-C ends (implies "
                        "--keep)")
    parser.add_argument("--sso", action="store_true",
                        help="with --serve (implied): also start the test OpenID provider on "
                        "127.0.0.1 and let people sign in with it (needs Node.js; `./dev.sh demo "
                        "--serve --sso` installs it)")
    parser.add_argument("--workdir", type=Path, help="use this directory (default: a new temp dir)")
    parser.add_argument("--no-audio", action="store_true", help="skip the audio hand-off")
    parser.add_argument("--cluster", action="store_true",
                        help="run the story against three relay nodes behind HAProxy on "
                        "PostgreSQL and Redis started in the work directory, then kill the "
                        "phone's node and restart Redis and PostgreSQL, printing each "
                        "measured figure (needs the Debian packages haproxy, redis-server "
                        "and postgresql: ./dev.sh demo --cluster installs them)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workdir is not None and args.workdir.exists() and not args.workdir.is_dir():
        print(f"btogether demo: --workdir {args.workdir} is not a directory", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="btogether-demo-"))
    narrator = Narrator(json_lines=args.json)
    narrator.say("btogether demo: Better Together on simulated hardware "
                 f"(work directory {workdir})\n")
    ok = False
    story = _story
    with ExitStack() as stack:
        stage = stack.enter_context(Stage(workdir))
        if getattr(args, "cluster", False):
            from btogether.demo_cluster import ClusterDemo, cluster_story

            demo: Demo = ClusterDemo(stage, narrator, audio=not args.no_audio)
            story = cluster_story
        else:
            demo = Demo(stage, narrator, audio=not args.no_audio)
        stack.callback(demo.close)
        try:
            story(demo, narrator)
            sso = None
            if args.sso:
                sso = SsoDemo(demo.stage, demo.admin, demo.tenant_id)
                narrator.step("Start the test OpenID provider and sign Contoso in with it",
                              sso.start)
            ok = True
            if args.serve or args.sso:
                _serve(demo, workdir, sso)
        except StepFailed as exc:
            message = f"{exc}\nlogs: {workdir / 'logs'}"
            if args.json:
                print(json.dumps({"summary": "failed", "error": str(exc),
                                  "logs": str(workdir / "logs")}), flush=True)
            else:
                print(f"\nDEMO FAILED: {message}", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
    elapsed = time.monotonic() - narrator.started
    if ok:
        skipped = sum(1 for s in narrator.steps if s.get("skipped"))
        passed = sum(1 for s in narrator.steps if s["ok"]) - skipped
        if args.json:
            print(json.dumps({"summary": "ok", "steps": passed, "skipped": skipped,
                              "elapsed_s": round(elapsed, 1)}))
        elif skipped:
            print(f"\n{passed} steps succeeded and {skipped} were skipped in {elapsed:.0f} s: "
                  f"{demo.pulse_note}.")
        else:
            print(f"\nAll {passed} steps succeeded in {elapsed:.0f} s.")
        if not (args.keep or args.serve or args.sso) and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    return 1


def _serve(demo: Demo, workdir: Path, sso: SsoDemo | None = None) -> None:
    """Keep everything running for a person to look at the admin center, until Ctrl-C."""
    web = demo.stage.relay_url.replace("ws://", "http://", 1).rstrip("/")
    print(
        f"\nThe demo keeps running. Admin center: {web}/admin/\n"
        f"  sign in as 'demo admin' with the password {demo.admin_password}"
        f" (also in {workdir / 'admin-password'})\n"
        f"  device login page: {web}/devicelogin\n"
        + (sso.instructions() if sso is not None else "")
        + "Press Ctrl-C to end.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nending the demo", flush=True)


def set_the_stage(demo: Demo, n: Narrator,
                  relay_title: str = "Start the relay on a temporary SQLite database") -> None:
    """Everything before the story: processes, tenant, devices provisioned, laptop signed in."""
    n.step(f"Start the simulated air (BlueZ for {len(demo.floor)} hosts)", demo.start_air)
    n.step("Start the desktops' logind stand-ins", demo.start_desktops)
    n.step("Start the phone's sound server", demo.start_audio)
    n.step(relay_title, demo.start_relay)
    n.step("Administrator: bootstrap the tenant and accounts", demo.bootstrap)
    n.step("Administrator: list the devices (CSV import and one by MAC)", demo.list_devices)
    for host, spec in demo.devices.items():
        n.step(f"Provision and sign in {spec['name']}", partial(demo.provision, host))
    n.step("Alex signs in on the laptop and starts the client", demo.start_laptop)


def _story(demo: Demo, n: Narrator) -> None:
    set_the_stage(demo, n)
    n.step("The laptop discovers the rooms and the phone", demo.discover)
    n.step("The nearest room is at the top", lambda: demo.nearest_room("room-a"))
    n.step("Connect my desk phone (both ends confirm)", demo.connect_phone)
    n.step("The laptop locks, and the phone locks", lambda: demo.lock_laptop(True))
    n.step("The laptop unlocks, and the phone unlocks", lambda: demo.lock_laptop(False))
    n.step("Use the phone as the meeting's audio device", lambda: demo.audio(True))
    n.step("Give the audio back", lambda: demo.audio(False))
    n.step("Walk to room B: the ranking follows", demo.walk)


def _ready_line(actor: Actor) -> bool:
    """A stand-in process is ready once it printed ``ready``."""
    return actor.alive() and "ready" in actor.tail(50)
