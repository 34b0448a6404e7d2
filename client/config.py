"""The laptop client's settings and where it keeps them (its state directory).

The state directory is ``--state-dir``, else ``$BTOGETHER_STATE_DIR``, else
``$XDG_STATE_HOME/btogether``, else ``~/.local/state/btogether``. It holds:

* ``client.json`` — what the commands write (:data:`COMMAND_KEYS`): the relay URL and the
  CA file to trust for it (``client login``), this laptop's stable id and name (generated
  once by ``client login`` and kept), and lock sync (rewritten when it is switched).
  Written atomically, owner-only. Keys of :class:`ClientSettings` found there (older
  versions wrote them) are still read.
* ``client.toml`` — optional settings a person edits (:class:`ClientSettings`: scanning,
  reconnect pacing, which logind session to watch); ``--config`` or
  ``$BTOGETHER_CLIENT_CONFIG`` name another file. Its values win over ``client.json``'s.
  Every key with its default: ``packaging/config/client.toml``.
* ``credential`` — the user credential the relay issued, owner-only (refused if others
  can read it, see :mod:`hw.secure_file`).
* ``control.sock`` — the running client's control socket (:mod:`hw.control_socket`).
* ``unsent-lock.json`` — a lock state the relay has not confirmed yet, so that it is
  still sent if the client restarts before it could reach the relay.
* ``meeting.json`` — the current meeting, so that it survives a restart of ``client run``.

Files are untrusted input: anything unreadable or invalid raises :class:`ConfigError`
with a message a user can act on (commands print it and exit 2).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hw.secure_file import InsecureFileError, read_private, write_private
from relay.protocol.frame import DEFAULT_COMPANY_ID

STATE_DIR_ENV = "BTOGETHER_STATE_DIR"
CONFIG_FILE = "client.json"
CREDENTIAL_FILE = "credential"
SOCKET_FILE = "control.sock"
UNSENT_LOCK_FILE = "unsent-lock.json"
MEETING_FILE = "meeting.json"
SETTINGS_FILE = "client.toml"
SETTINGS_ENV = "BTOGETHER_CLIENT_CONFIG"
# What `client login` and the running client write to client.json; everything else is
# ClientSettings, for client.toml.
COMMAND_KEYS = ("relay_url", "ca_file", "laptop_id", "laptop_name", "lock_sync")
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
MAX_CREDENTIAL_BYTES = 4096

LaptopId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
# Sent in an HTTP header: printable ASCII only.
LaptopName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")]


class ConfigError(ValueError):
    """The client's configuration is missing or invalid; the message says what to do."""


class ScanSettings(BaseModel):
    """How the client scans and reports what it hears."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company_id: int = Field(
        default=DEFAULT_COMPANY_ID,
        ge=0,
        le=0xFFFF,
        description="manufacturer data company ID of our adverts (0xFFFF: the SIG's test ID)",
    )
    mode: Literal["auto", "active", "passive"] = Field(
        default="auto", description="passive where BlueZ offers it (auto), or force one"
    )
    min_rssi: int | None = Field(
        default=None,
        ge=-127,
        le=20,
        description="ask BlueZ to report only adverts at least this loud (dBm); default: all",
        examples=[-90],
    )
    report_interval_s: float = Field(
        default=1.0, ge=0.05, le=60.0, description="report what was heard to the relay this often"
    )
    fresh_s: float = Field(
        default=3.0, gt=0, le=60.0, description="report only EIDs heard within this many seconds"
    )
    forget_after_s: float = Field(
        default=10.0, gt=0, le=600.0, description="drop a device not heard for this long"
    )
    retry_s: float = Field(default=5.0, gt=0, le=600.0, description="retry an unavailable radio")


class LockWatchSettings(BaseModel):
    """Which screen session's lock the client mirrors to the paired phone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="logind session id or object path; default: XDG_SESSION_ID, else the "
        "session of this process, else logind's choice for this user (`client status` "
        "shows which)",
        examples=["2"],
    )


class ClientSettings(BaseModel):
    """What ``client.toml`` may set: how the client works, not who it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reconnect_initial_s: float = Field(
        default=0.5, gt=0, le=60.0, description="first delay before reconnecting to the relay"
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, le=3600.0, description="longest delay before reconnecting"
    )
    scan: ScanSettings = ScanSettings()
    lock: LockWatchSettings = LockWatchSettings()


class ClientConfig(ClientSettings):
    """Everything ``client run`` needs besides the credential."""

    relay_url: str
    ca_file: str | None = Field(
        default=None, description="PEM file of an internal CA trusted for a wss:// relay"
    )
    laptop_id: LaptopId
    laptop_name: LaptopName
    lock_sync: bool = True

    @field_validator("relay_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_relay_url(value)


def check_relay_url(value: str) -> str:
    """A ws:// or wss:// URL with a host, else ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"relay URL {value!r} must look like wss://relay.example.com/")
    return value


@dataclass(frozen=True)
class ClientFiles:
    """The paths in one state directory."""

    state_dir: Path

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_FILE

    @property
    def credential_path(self) -> Path:
        return self.state_dir / CREDENTIAL_FILE

    @property
    def socket_path(self) -> Path:
        return self.state_dir / SOCKET_FILE

    @property
    def unsent_lock_path(self) -> Path:
        return self.state_dir / UNSENT_LOCK_FILE

    @property
    def meeting_path(self) -> Path:
        return self.state_dir / MEETING_FILE

    def load_meeting(self) -> str | None:
        """The meeting the last run was in; None if none (or unreadable)."""
        try:
            data = json.loads(self.meeting_path.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        meeting = data.get("meeting_id") if isinstance(data, dict) else None
        return meeting if isinstance(meeting, str) and 0 < len(meeting) <= 128 else None

    def save_meeting(self, meeting_id: str | None) -> None:
        if meeting_id is None:
            self.meeting_path.unlink(missing_ok=True)
        else:
            write_private(self.meeting_path, json.dumps({"meeting_id": meeting_id}).encode())

    def settings_path(self, explicit: Path | None, environ: Mapping[str, str]) -> Path:
        """client.toml: ``--config``, else ``$BTOGETHER_CLIENT_CONFIG``, else in the state dir."""
        if explicit is not None:
            return explicit.expanduser()
        if environ.get(SETTINGS_ENV):
            return Path(environ[SETTINGS_ENV]).expanduser()
        return self.state_dir / SETTINGS_FILE

    def load_unsent_lock(self) -> Literal["locked", "unlocked"] | None:
        """The lock state left unsent by the last run; None if none (or unreadable)."""
        try:
            data = json.loads(self.unsent_lock_path.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        state = data.get("unsent") if isinstance(data, dict) else None
        return state if state in ("locked", "unlocked") else None

    def save_unsent_lock(self, state: Literal["locked", "unlocked"] | None) -> None:
        if state is None:
            self.unsent_lock_path.unlink(missing_ok=True)
        else:
            write_private(self.unsent_lock_path, json.dumps({"unsent": state}).encode())


def resolve_state_dir(explicit: Path | None, environ: Mapping[str, str]) -> Path:
    """Where the client keeps its files (see the module docstring)."""
    if explicit is not None:
        return explicit.expanduser()
    if environ.get(STATE_DIR_ENV):
        return Path(environ[STATE_DIR_ENV]).expanduser()
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"]).expanduser() / "btogether"
    return Path(environ.get("HOME") or Path.home()) / ".local" / "state" / "btogether"


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"the control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "use a shorter --state-dir"
        )


def _not_logged_in(files: ClientFiles) -> ConfigError:
    return ConfigError(
        f"no client configuration in {files.state_dir}: run "
        "`btogether client login --relay URL --token-file FILE` first"
    )


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors()
    )


def _read_json(files: ClientFiles) -> dict[str, Any]:
    try:
        raw = files.config_path.read_bytes()
    except FileNotFoundError:
        raise _not_logged_in(files) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {files.config_path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{files.config_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{files.config_path} is invalid: not a JSON object")
    return data


def load_settings(path: Path, *, required: bool) -> dict[str, Any]:
    """The keys set in a client.toml (checked); {} if it is absent and not ``required``."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"the settings file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the settings file {path} is not valid TOML: {exc}") from exc
    try:
        ClientSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"the settings file {path} is invalid: {_problems(exc)}") from None
    return data


def load_config(files: ClientFiles, settings: Path | None = None) -> ClientConfig:
    """client.json with ``settings`` (a client.toml) over it; ConfigError if missing or invalid.

    A settings file that does not exist is skipped.
    """
    data = _read_json(files)
    overrides = load_settings(settings, required=False) if settings is not None else {}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        return ClientConfig.model_validate(data)
    except ValidationError as exc:
        where = f"{files.config_path}" + (f" with {settings}" if overrides else "")
        raise ConfigError(f"{where} is invalid: {_problems(exc)}") from None


def save_config(files: ClientFiles, config: ClientConfig) -> None:
    """Write the commands' keys to client.json, keeping whatever else it holds."""
    try:
        data = _read_json(files)
    except ConfigError:
        data = {}
    data.update(config.model_dump(mode="json", include=set(COMMAND_KEYS)))
    if data.get("ca_file") is None:
        data.pop("ca_file", None)
    write_private(files.config_path, (json.dumps(data, indent=2) + "\n").encode())


def check_credential(token: str) -> str:
    """The credential with surrounding whitespace removed; ValueError if it cannot be one."""
    token = token.strip()
    if not token:
        raise ValueError("the credential is empty")
    if len(token) > MAX_CREDENTIAL_BYTES or not all("\x21" <= c <= "\x7e" for c in token):
        raise ValueError("the credential must be one word of printable ASCII")
    return token


def load_credential(files: ClientFiles) -> str:
    """The stored user credential; ConfigError if missing, insecure or malformed."""
    try:
        raw = read_private(files.credential_path)
    except FileNotFoundError:
        raise _not_logged_in(files) from None
    except InsecureFileError as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {files.credential_path}: {exc.strerror}") from exc
    try:
        return check_credential(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{files.credential_path} does not hold a credential: {exc}") from exc


def default_laptop_name() -> str:
    # The host name (uname nodename, what socket.gethostname() returns on Unix).
    name = "".join(c for c in platform.node() if "\x20" <= c <= "\x7e").strip()
    return (name or "laptop")[:128]


def new_laptop_id() -> str:
    return f"laptop-{secrets.token_hex(8)}"


def login(
    files: ClientFiles,
    relay_url: str,
    token: str,
    laptop_name: str | None = None,
    ca_file: str | None = None,
) -> ClientConfig:
    """Store the relay URL, CA file and credential; keep this laptop's id (and name) if known.

    Raises ConfigError (bad URL, name or credential) without writing anything.
    """
    try:
        check_relay_url(relay_url)
        token = check_credential(token)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    previous: dict[str, Any] = {}
    if files.config_path.exists():
        try:
            previous = _read_json(files)
        except ConfigError:
            previous = {}  # a broken file is replaced, and a new laptop id is made
    if laptop_name is not None and not (
        0 < len(laptop_name) <= 128 and all("\x20" <= c <= "\x7e" for c in laptop_name)
    ):
        raise ConfigError("the laptop name must be 1-128 printable ASCII characters")
    fields: dict[str, Any] = {
        **previous,
        "relay_url": relay_url,
        "ca_file": ca_file,
        "laptop_id": previous.get("laptop_id") or new_laptop_id(),
        "laptop_name": laptop_name or previous.get("laptop_name") or default_laptop_name(),
    }
    try:
        config = ClientConfig.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    write_private(files.credential_path, token.encode("ascii") + b"\n")
    save_config(files, config)
    return config
