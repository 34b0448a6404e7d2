"""A cast of real btogether processes on one machine, for the demo and end-to-end tests.

The stage starts each program the way a person would — ``btogether relay serve``, the
simulated air, desktop stand-ins, ``btogether beacon run``, ``btogether client run`` —
as separate processes with their own state directories and logs, runs one-shot
commands (``btogether admin …``, ``btogether client nearby --json``…) and waits for
conditions with a deadline.  Nothing here knows the story; :mod:`btogether.demo` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from hw.process import stop_process
from hw.sim.launch import AirProcess, start_air

T = TypeVar("T")


class StageError(RuntimeError):
    """Something on the stage failed; the message says what and where to look."""


@dataclass
class Actor:
    """One long-running process on the stage."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it if it does not finish in time."""
        return stop_process(self.process, timeout, group=True)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stage:
    """Processes, their logs and state directories under ``workdir``."""

    workdir: Path
    log_level: str = "info"
    actors: dict[str, Actor] = field(default_factory=dict)
    air: AirProcess | None = None
    relay_url: str = ""
    base_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "BTOGETHER_"))}
        env.pop("PULSE_SERVER", None)
        env["PYTHONUNBUFFERED"] = "1"
        self.base_env = {**env, **self.base_env}

    # --- processes -------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        prefix = [sys.executable, "-m", "btogether.cli", "--log-level", self.log_level]
        return [*prefix, "--log-json", *args]

    def state_dir(self, name: str) -> Path:
        path = self.workdir / "state" / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def env_for(self, host: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of a program running on ``host`` (its bus, its state dir)."""
        env = dict(self.base_env)
        if host is not None:
            if self.air is not None and host in self.air.addresses:
                env.update(self.air.env(host))
            env["BTOGETHER_STATE_DIR"] = str(self.state_dir(host))
        if extra:
            env.update(extra)
        return env

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> Actor:
        """Start a long-running process; its stdout and stderr go to logs/NAME.log."""
        if name in self.actors and self.actors[name].alive():
            raise StageError(f"{name} is already running")
        log_path = self.workdir / "logs" / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else self.base_env,
                start_new_session=True,
            )
        actor = Actor(name, process, log_path)
        self.actors[name] = actor
        return actor

    def stop(self, name: str) -> None:
        actor = self.actors.get(name)
        if actor is not None:
            actor.stop()

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        check: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-shot command; with ``check``, a failure raises StageError with its output."""
        try:
            done = subprocess.run(
                list(argv),
                env=dict(env) if env is not None else self.base_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=stdin,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StageError(f"`{_show(argv)}` did not finish within {timeout:g} s") from exc
        if check and done.returncode != 0:
            raise StageError(
                f"`{_show(argv)}` exited with {done.returncode}:\n"
                f"{_last_lines(done.stderr) or _last_lines(done.stdout)}"
            )
        return done

    def run_json(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> Any:
        done = self.run(argv, env=env, timeout=timeout)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise StageError(f"`{_show(argv)}` did not print JSON: {done.stdout[:300]!r}") from exc

    def wait_for(
        self, check: Callable[[], T | None], what: str, timeout: float = 20.0,
        interval: float = 0.25,
    ) -> T:
        """Poll ``check`` until it returns something other than None/False."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = check()
            except StageError as exc:
                value, last_error = None, exc
            if value is not None and value is not False:
                return value
            if time.monotonic() >= deadline:
                detail = f" (last error: {last_error})" if last_error else ""
                raise StageError(f"timed out after {timeout:g} s waiting for {what}{detail}")
            time.sleep(interval)

    # --- the cast ----------------------------------------------------------------------

    def start_relay(self, name: str = "relay", port: int = 0) -> str:
        """Start ``btogether relay serve`` on a SQLite file in the work dir; returns its URL."""
        db = self.workdir / "relay.sqlite3"
        port_file = self.workdir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        actor = self.spawn(
            name,
            self.argv("relay", "serve", "--host", "127.0.0.1", "--port", str(port),
                      "--db", str(db), "--port-file", str(port_file)),
        )

        def bound() -> str | None:
            if not actor.alive():
                raise StageError(f"the relay exited ({actor.process.returncode}):\n{actor.tail()}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            return text or None

        bound_port = self.wait_for(bound, "the relay to listen", timeout=20)
        self.relay_url = f"ws://127.0.0.1:{bound_port}"
        return self.relay_url

    def restart_relay(self, name: str = "relay") -> str:
        """Stop the relay and start it again on the same database and port."""
        port = int(self.relay_url.rsplit(":", 1)[1])
        self.stop(name)
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start_relay(name, port=port)
            except StageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def start_air(
        self, hosts: Sequence[tuple[str, float, float]], noise_db: float = 1.0, seed: int = 7
    ) -> AirProcess:
        self.air = start_air(hosts, noise_db=noise_db, seed=seed)
        return self.air

    def close(self) -> None:
        for actor in reversed(list(self.actors.values())):
            actor.stop()
        if self.air is not None:
            self.air.stop()
            self.air = None

    def __enter__(self) -> Stage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _show(argv: Sequence[str]) -> str:
    args = list(argv)
    if args[:3] == [sys.executable, "-m", "btogether.cli"]:
        args = ["btogether", *[a for a in args[3:] if a not in ("--log-json",)]]
    return " ".join(args)


def _last_lines(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
