"""Relay settings: defaults < TOML file < ``BTOGETHER_*`` environment variables < flags.

The TOML file holds the settings at top level or in a ``[relay]`` table, with the
field names below (``port = 8765``, ``db = "/var/lib/btogether/relay.sqlite3"``).
Environment variables are the upper-cased names with the ``BTOGETHER_`` prefix
(``BTOGETHER_PORT=9000``). Command-line flags win over both.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from relay.files import FileProblem, read_text


class ConfigFileError(ValueError):
    """The config file cannot be read or is not valid TOML."""


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BTOGETHER_", extra="forbid")

    host: str = Field(
        default="127.0.0.1", description="address to listen on (0.0.0.0: every interface)"
    )
    port: int = Field(default=8765, ge=0, le=65535, description="TCP port (0 picks a free one)")
    db: str = Field(
        default="relay.sqlite3",
        description="database: a SQLite file (created owner-only and migrated if needed; "
        "relative to the working directory) or sqlite:///path, or postgresql://… for a cluster",
    )
    redis: str | None = Field(
        default=None,
        examples=["redis://127.0.0.1:6379/0"],
        description="redis://… for a cluster of relay nodes (presence, delivery, short-lived "
        "state); none: this process alone",
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        default="normal",
        description="normal: every acknowledged change is written before it is answered and "
        "survives a crash (kill -9) of the relay; full: also fsync every group commit, so "
        "acknowledged changes survive power loss (slower: an fsync per commit)",
    )
    max_message_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="largest message accepted; a larger one closes the connection (1009)",
    )
    rate_per_second: float = Field(
        default=100.0, gt=0, description="sustained requests per second allowed per connection"
    )
    rate_burst: float = Field(
        default=200.0, ge=1, description="requests allowed in a burst above that rate"
    )
    rate_strikes: int = Field(
        default=50, ge=1, description="rate_limited errors before the connection is closed (1008)"
    )
    sighting_freshness_s: float = Field(
        default=120.0,
        gt=0,
        description="seconds a laptop's sighting of a device counts for pairing",
    )
    pair_request_ttl_s: float = Field(
        default=120.0, gt=0, description="seconds a pair request waits for both confirmations"
    )
    join_prompt_ttl_s: float = Field(
        default=60.0, gt=0, description="seconds a room's join prompt waits for an answer"
    )
    eid_neighbours: int = Field(
        default=1,
        ge=0,
        le=4,
        description="EID rotation windows accepted on each side of the current one (clock skew)",
    )
    ping_interval_s: float = Field(
        default=20.0, gt=0, description="seconds between websocket keepalive pings"
    )
    directory_check_s: float = Field(
        default=1.0,
        ge=0,
        description="seconds between checks for edits made to the database by another process",
    )
    outbox_messages: int = Field(
        default=256,
        ge=8,
        description="messages queued for a connection that does not read before it is "
        "closed (4003)",
    )
    max_connections_per_credential: int = Field(
        default=16, ge=1, description="laptops one user credential may connect at once (per node)"
    )
    pushes_per_minute: int = Field(
        default=20,
        ge=1,
        description="pair and join requests per credential and minute (they prompt others)",
    )
    max_unauthenticated: int = Field(
        default=512,
        ge=1,
        description="connections still in their handshake or provisioning, in all",
    )
    max_unauthenticated_per_address: int = Field(
        default=128,
        ge=1,
        description="of those, from one source address (not a trusted proxy; many laptops "
        "behind one NAT reconnect at once after a relay restart)",
    )
    handshake_timeout_s: float = Field(
        default=5.0, gt=0, description="time allowed for a websocket opening handshake"
    )
    provision_idle_s: float = Field(
        default=10.0, gt=0, description="an unauthenticated provisioning connection's lifetime"
    )
    sso_check_s: float = Field(
        default=900.0,
        ge=0,
        description="seconds between asking each tenant's identity provider whether the people "
        "linked to it may still sign in (one it refuses loses their laptops' credentials); "
        "0: only when an owner asks (btogether admin sso check)",
    )
    trusted_proxies: list[str] = Field(
        default=[],
        examples=[["10.0.0.5", "192.168.10.0/24"]],
        description="addresses or networks (CIDR) of proxies whose X-Forwarded-For is believed",
    )


MAX_CONFIG_BYTES = 1024 * 1024


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = read_text(path, MAX_CONFIG_BYTES, "config file")
        data = tomllib.loads(text)
    except FileProblem as exc:
        raise ConfigFileError(str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from exc
    relay_table = data.get("relay", data)
    if not isinstance(relay_table, dict):
        raise ConfigFileError(f"config file {path}: [relay] must be a table")
    return relay_table


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> RelaySettings:
    """Settings from all sources; raises ConfigFileError or pydantic's ValidationError."""
    file_values = read_config_file(config_file) if config_file else {}

    class _Loaded(RelaySettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, file_values))

    loaded = _Loaded(**{k: v for k, v in (overrides or {}).items() if v is not None})
    return RelaySettings.model_construct(**loaded.model_dump())
