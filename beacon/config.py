"""The beacon daemon's settings: defaults < TOML file < ``BTOGETHER_*`` environment.

The file (``--config``, else ``$BTOGETHER_CONFIG``, else ``beacon.toml`` in the state
directory) looks like::

    auto_confirm = true            # unattended device: confirm prompts itself
    [audio]
    sink = "speakerphone"          # the PulseAudio/PipeWire sink and source to hand over
    source = "speakerphone_mic"
    [lock]
    system_bus = "unix:path=/run/dbus/system_bus_socket"
    session = "auto"
    [advertising]
    tx_power = -59
    [hooks]
    on_lock = "/usr/local/bin/show-lock-screen --now"
    timeout_s = 10
    [tls]
    ca_file = "/etc/btogether/internal-ca.pem"   # trust an internal CA for wss://

Every key with its default: ``packaging/config/beacon.toml`` (generated from these models
by :mod:`btogether.config_examples`).

Environment variables use ``__`` between table and key: ``BTOGETHER_AUTO_CONFIRM=1``,
``BTOGETHER_AUDIO__SINK=speakerphone``, ``BTOGETHER_HOOKS__ON_JOIN=…``.  Unknown keys,
wrong types and hook commands that cannot be split into words are refused with a
message naming the key; a config file is untrusted input like any other.
"""

from __future__ import annotations

import os
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hw.radio_model import DEFAULT_TX_POWER
from relay.protocol.frame import MAX_TX_POWER, MIN_TX_POWER

CONFIG_FILE = "beacon.toml"
CONFIG_ENV = "BTOGETHER_CONFIG"

HOOK_NAMES = (
    "on_state",
    "on_login_code",
    "on_pair_prompt",
    "on_pair_end",
    "on_lock",
    "on_unlock",
    "on_audio_take",
    "on_audio_release",
    "on_join_prompt",
    "on_join",
)


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DeviceName = Annotated[str, Field(min_length=1, max_length=256)]


class AudioSettings(_Section):
    """The device's speakerphone, as the sound server names it (``pactl list short sinks``)."""

    sink: DeviceName | None = Field(
        default=None,
        description="sink that becomes the default during a hand-off; default: none (no audio)",
        examples=["speakerphone"],
    )
    source: DeviceName | None = Field(
        default=None,
        description="source (microphone) that becomes the default during a hand-off",
        examples=["speakerphone_mic"],
    )
    server: DeviceName | None = Field(
        default=None,
        description="PulseAudio server string; default: PULSE_SERVER, then the usual socket",
        examples=["unix:/run/pulse/native"],
    )


class LockSettings(_Section):
    """Locking the device's own screen session through logind."""

    system_bus: str | None = Field(
        default=None,
        description="D-Bus address of logind; default: DBUS_SYSTEM_BUS_ADDRESS, else the system "
        "bus",
        examples=["unix:path=/run/dbus/system_bus_socket"],
    )
    session: str | None = Field(
        default=None,
        description="logind session id or path; default: XDG_SESSION_ID, else ours, else "
        "logind's auto, else the only session",
        examples=["c1"],
    )
    confirm_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="how long to wait for LockedHint to follow a lock"
    )
    retry_s: float = Field(default=5.0, gt=0, le=3600, description="retry a failed lock after")


class AdvertisingSettings(_Section):
    """The BLE advert carrying the rotating EID."""

    tx_power: int = Field(
        default=DEFAULT_TX_POWER,
        ge=MIN_TX_POWER,
        le=MAX_TX_POWER,
        description="calibrated signal strength at 1 m in dBm, carried in the advert",
    )
    adapter: str | None = Field(
        default=None, description="BlueZ adapter; default: the first one", examples=["hci0"]
    )
    local_name: Annotated[str, Field(max_length=8)] | None = Field(
        default=None, description="a short local name to advertise too", examples=["room-a"]
    )
    retry_s: float = Field(default=10.0, gt=0, le=3600, description="retry a failed advert after")


class ReconnectSettings(_Section):
    """Jittered exponential backoff towards the relay."""

    initial_s: float = Field(default=0.5, gt=0, le=60, description="first reconnect delay")
    cap_s: float = Field(default=30.0, gt=0, le=3600, description="longest reconnect delay")


class TlsSettings(_Section):
    """Trust for wss:// relay URLs, besides the system's certificate authorities."""

    ca_file: Path | None = Field(
        default=None,
        description="PEM file of an internal CA to trust for the relay's certificate",
        examples=["/etc/btogether/internal-ca.pem"],
    )


_HOOK = "command run on this event (no shell); default: none"


class HookSettings(_Section):
    """A command per event, run without a shell; details arrive as BTOGETHER_* variables."""

    timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="a hook still running after this is killed"
    )
    on_state: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-state"]
    )
    on_login_code: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-login-code"]
    )
    on_pair_prompt: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-pair-prompt"]
    )
    on_pair_end: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-pair-end"]
    )
    on_lock: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-lock"]
    )
    on_unlock: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-unlock"]
    )
    on_audio_take: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-audio-take"]
    )
    on_audio_release: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-audio-release"]
    )
    on_join_prompt: str | None = Field(
        default=None, description=_HOOK, examples=["/usr/local/bin/show-join-prompt"]
    )
    on_join: str | None = Field(
        default=None,
        description=_HOOK + "; packaging/hooks/open-meeting opens the meeting's URL",
        examples=["/usr/local/lib/btogether/open-meeting"],
    )

    @field_validator(*HOOK_NAMES)
    @classmethod
    def _splittable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command into words: {exc}") from None
        if not words:
            raise ValueError("the command is empty")
        return value

    def command(self, hook: str) -> list[str] | None:
        """The hook's argv, or None if the hook is not configured."""
        text: str | None = getattr(self, hook)
        return None if text is None else shlex.split(text)


class BeaconSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BTOGETHER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    auto_confirm: bool | None = Field(
        default=None,
        description="confirm pair and join prompts without asking; default: the relay's policy",
        examples=[True],
    )
    audio: AudioSettings = AudioSettings()
    lock: LockSettings = LockSettings()
    advertising: AdvertisingSettings = AdvertisingSettings()
    reconnect: ReconnectSettings = ReconnectSettings()
    hooks: HookSettings = HookSettings()
    tls: TlsSettings = TlsSettings()


def default_config_path(state_dir: Path, env: Mapping[str, str]) -> Path:
    return Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else state_dir / CONFIG_FILE


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def load_config(
    path: Path | None, *, required: bool, env: Mapping[str, str] | None = None
) -> BeaconSettings:
    """Settings from the file at ``path`` (skipped if absent and not ``required``) and env."""
    environ = dict(os.environ if env is None else env)
    file_values: dict[str, Any] = {}
    if path is not None and (required or path.exists()):
        file_values = _read_toml(path)

    class _Loaded(BeaconSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            env_source = EnvSettingsSource(
                settings_cls,
                env_prefix="BTOGETHER_",
                env_nested_delimiter="__",
                case_sensitive=False,
            )
            env_source.env_vars = {k.lower(): v for k, v in environ.items()}
            return (env_source, InitSettingsSource(settings_cls, file_values))

    origin = f"config file {path}" if file_values else "configuration"
    try:
        loaded = _Loaded()
    except ValidationError as exc:
        raise ConfigError(f"{origin} (or BTOGETHER_* environment): {_describe(exc)}") from exc
    return BeaconSettings.model_construct(**dict(loaded))
