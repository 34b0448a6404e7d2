"""Agents, profiles and GATT applications clients register with the simulated bluetoothd.

Kept per client and forgotten when it leaves the bus, with bluetoothd 5.66's answers
(``src/agent.c`` register_agent/unregister_agent/request_default, ``src/profile.c``
register_profile, ``src/gatt-database.c``), but never used: nothing here pairs,
connects a profile or serves GATT.  The agent is what bluetoothctl registers at start.
"""

from __future__ import annotations

from dbus_fast import Message

from hw.sim.bus import BluezError, already_exists, does_not_exist, invalid_arguments

AGENT_CAPABILITIES = (
    "",
    "DisplayOnly",
    "DisplayYesNo",
    "KeyboardOnly",
    "NoInputNoOutput",
    "KeyboardDisplay",
)


class Registrations:
    """AgentManager1, ProfileManager1 and GattManager1 bookkeeping."""

    def __init__(self) -> None:
        self._agents: dict[str, tuple[str, str]] = {}  # owner -> (path, capability)
        self.default_agent: str | None = None
        self._profiles: dict[tuple[str, str], str] = {}  # (owner, path) -> UUID
        self._gatt_apps: set[tuple[str, str]] = set()

    def agent_call(self, msg: Message, owner: str) -> bool:
        """RegisterAgent / UnregisterAgent / RequestDefaultAgent; False if not one of them."""
        if msg.member == "RegisterAgent" and msg.signature == "os":
            if owner in self._agents:  # one agent per client
                raise already_exists()
            path, capability = msg.body
            if capability not in AGENT_CAPABILITIES:
                raise invalid_arguments()
            self._agents[owner] = (path, capability or "KeyboardDisplay")
            return True
        if msg.member in ("UnregisterAgent", "RequestDefaultAgent") and msg.signature == "o":
            agent = self._agents.get(owner)
            if agent is None or agent[0] != msg.body[0]:
                raise does_not_exist()
            if msg.member == "UnregisterAgent":
                self._drop_agent(owner)
            else:
                self.default_agent = owner
            return True
        return False

    def profile_call(self, msg: Message, owner: str) -> bool:
        """RegisterProfile / UnregisterProfile; False if not one of them."""
        if msg.member == "RegisterProfile" and msg.signature == "osa{sv}":
            path, uuid, _options = msg.body
            if (owner, path) in self._profiles:
                raise already_exists()
            if uuid in self._profiles.values():
                raise BluezError("org.bluez.Error.NotPermitted", "UUID already registered")
            self._profiles[(owner, path)] = uuid
            return True
        if msg.member == "UnregisterProfile" and msg.signature == "o":
            if self._profiles.pop((owner, msg.body[0]), None) is None:
                raise does_not_exist()
            return True
        return False

    def gatt_call(self, msg: Message, owner: str) -> bool:
        """RegisterApplication / UnregisterApplication; False if not one of them."""
        if msg.member == "RegisterApplication" and msg.signature == "oa{sv}":
            if (owner, msg.body[0]) in self._gatt_apps:
                raise already_exists()
            self._gatt_apps.add((owner, msg.body[0]))
            return True
        if msg.member == "UnregisterApplication" and msg.signature == "o":
            if (owner, msg.body[0]) not in self._gatt_apps:
                raise does_not_exist()
            self._gatt_apps.discard((owner, msg.body[0]))
            return True
        return False

    def owner_left(self, owner: str) -> None:
        self._drop_agent(owner)
        self._profiles = {k: v for k, v in self._profiles.items() if k[0] != owner}
        self._gatt_apps = {k for k in self._gatt_apps if k[0] != owner}

    def _drop_agent(self, owner: str) -> None:
        self._agents.pop(owner, None)
        if self.default_agent == owner:
            self.default_agent = None
