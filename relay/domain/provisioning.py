"""How a device joins a tenant and gets an account: verification codes, provisioning,
login codes, sign-in, factory reset, and what each device is told about its state.

The flow (Teams' remote provisioning, as administrators know it): a listed device
waits for activation; the administrator generates a 6-digit verification code; the
device presents its MAC address and that code (:meth:`Provisioning.provision`) and
receives a credential and an identity key; it then waits for sign-in. The
administrator asks the relay for the device's login code, which the relay gets from
the connected device (``login_code.request`` → ``login_code.report``), and signs an
account in with it. Codes are single use and expire.

Anyone may knock on ``/provision``, so its replies tell nothing apart: an unknown MAC
address, a wrong code and a refused guesser all get the same answer. Guesses are
counted per (device, source), per source and per device (see
:class:`~relay.domain.verification.ThrottlePolicy`) in a state that survives restarts; a
guesser is refused and the administrators alerted, the real device is never locked
out by a stranger.

Time and randomness come in as arguments or collaborators; refusals are
:class:`~relay.domain.errors.RelayError` raised before anything changes. Short-lived state
(issued login codes, login-code requests, guess counters) lives in
:class:`~relay.domain.ephemeral.EphemeralState`, so every relay node sees it; verification
codes and device state are durable in the store.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from relay.domain.credentials import hash_token, new_token
from relay.domain.device_import import InvalidMac, parse_mac
from relay.domain.directory import Directory
from relay.domain.ephemeral import EphemeralState
from relay.domain.errors import RelayError
from relay.domain.handlers import handles
from relay.domain.model import Credential, Device, Tenant
from relay.domain.routing import Presence
from relay.domain.service import Delivery, DevicePrincipal, Outcome, Principal, device_address
from relay.domain.store import AdminStore, DirectoryStore, StoreConflict
from relay.domain.verification import (
    LOGIN_CODE_TTL_S,
    VERIFICATION_CODE_TTL_S,
    CodeCheck,
    IssuedCode,
    ThrottlePolicy,
    check_code,
    dump_code,
    hash_code,
    load_code,
    mark_used,
    new_verification_code,
    normalize_login_code,
    normalize_verification_code,
)
from relay.protocol import wire
from relay.protocol.eid import IDENTITY_KEY_LEN
from relay.protocol.wire import DeviceMode, ErrorCode

log = structlog.get_logger("relay.provisioning")

DEFAULT_MODE: dict[str, DeviceMode] = {
    "desk_phone": "personal",
    "conference_phone": "common_area",
    "room_system": "meeting_room",
}
LOGIN_CODE_WAIT_S = 10.0
LOGIN_CODE_POLL_S = 0.05
STATE_TEXT = {
    "waiting_for_activation": "waiting for activation",
    "waiting_for_sign_in": "waiting for sign-in",
    "signed_in": "signed in",
}
# A login code is kept past its expiry, so a late attempt hears "expired", not "ask first".
_LOGIN_CODE_KEPT_S = LOGIN_CODE_TTL_S + 3600.0
# The one answer to an unknown MAC, a wrong code and a refused guesser alike.
WRONG = "wrong code, or no such device waiting for activation"


class ProvisioningStore(AdminStore, DirectoryStore, Protocol):
    """The roles of the store provisioning reads and writes."""


@dataclass(frozen=True, slots=True)
class Provisioned:
    device: Device
    tenant: Tenant
    credential_id: str
    token: str
    identity_key: bytes


@dataclass(frozen=True, slots=True)
class GuessAlert:
    """What the administrators are shown about a device being guessed at."""

    until: float
    reason: str


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


class Provisioning:
    def __init__(
        self,
        store: ProvisioningStore,
        directory: Directory,
        presence: Presence,
        state: EphemeralState,
        guesses: EphemeralState,
        *,
        throttle: ThrottlePolicy | None = None,
        rng: random.Random | None = None,
        new_id: Callable[[str], str] = _id,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        verification_ttl_s: float = VERIFICATION_CODE_TTL_S,
        login_code_wait_s: float = LOGIN_CODE_WAIT_S,
    ) -> None:
        self.store = store
        self.directory = directory
        self.presence = presence
        self._state = state  # login codes and their requests (shared by every node)
        self._guesses = guesses  # guess counters and alerts (must survive restarts)
        self.throttle = throttle or ThrottlePolicy()
        self._rng = rng or random.SystemRandom()
        self._new_id = new_id
        self._random_bytes = random_bytes
        self._verification_ttl_s = verification_ttl_s
        self._login_code_wait_s = login_code_wait_s

    # --- throttling ------------------------------------------------------------------------
    async def alert(self, device_id: str, now: float) -> GuessAlert | None:
        """Whether someone has been guessing codes for this device lately, and what it did."""
        text = await self._guesses.get(f"alert:{device_id}", now)
        if text is None:
            return None
        data = json.loads(text)
        return GuessAlert(float(data["until"]), str(data["reason"]))

    async def _take_source(self, source: str, now: float) -> None:
        minute = int(now // 60)
        count = await self._guesses.incr(f"src:{source}:{minute}", 60.0, now)
        if count > self.throttle.source_per_minute:
            raise RelayError(ErrorCode.RATE_LIMITED, "too many attempts from this address; wait")

    async def _refused(self, device_id: str, source: str, now: float) -> bool:
        """Whether this source already spent its wrong guesses for this device."""
        text = await self._guesses.get(f"guess:{device_id}:{source}", now)
        return text is not None and int(text) >= self.throttle.max_failures

    async def _wrong_guess(self, device: Device, what: str, source: str, now: float) -> None:
        """Count a wrong code from ``source``; alert the administrators when it reaches the
        limit, and void the verification code when the device is being swept."""
        throttle = self.throttle
        count = await self._guesses.incr(f"guess:{device.id}:{source}", throttle.lockout_s, now)
        total = await self._guesses.incr(f"guess:{device.id}", 86_400.0, now)
        if count == throttle.max_failures:
            until = now + throttle.lockout_s
            reason = (
                f"{throttle.max_failures} wrong {what} codes from {source}; that source is "
                "refused for this device for a while"
            )
            await self._raise_alert(device, until, reason, "device.guessing", source, now)
        if total == throttle.device_failures_per_day and what == "verification":
            await self.store.set_verification_code(
                device.id, IssuedCode(hash_code(device.id, secrets.token_hex(16)), now, now)
            )
            reason = (
                f"{total} wrong verification codes in a day from several sources; the code was "
                "voided: generate a new one"
            )
            until = now + 86_400.0
            await self._raise_alert(device, until, reason, "device.code_voided", source, now)

    async def _raise_alert(
        self, device: Device, until: float, reason: str, action: str, source: str, now: float
    ) -> None:
        log.warning("device_guessed", device=device.id, action=action, source=source)
        await self._guesses.set(
            f"alert:{device.id}",
            json.dumps({"until": until, "reason": reason}),
            max(1.0, until - now),
            now,
        )
        await self.store.add_audit(
            now,
            f"relay ({source})",
            device.tenant_id,
            action,
            device.id,
            "alert",
            {"reason": reason, "until": until, "mac": device.mac},
        )

    async def _clear_guesses(self, device_id: str, now: float) -> None:
        await self._guesses.delete(f"alert:{device_id}", now)
        await self._guesses.delete(f"guess:{device_id}", now)

    # --- verification codes and provisioning ----------------------------------------------
    async def issue_verification_code(self, device: Device, now: float) -> tuple[str, float]:
        """A new 6-digit code for a device waiting for activation; the old one is void."""
        if device.state != "waiting_for_activation":
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"device {device.id} is {STATE_TEXT[device.state]}; "
                "only a device waiting for activation gets a verification code",
            )
        code, issued = new_verification_code(device.id, now, self._rng, self._verification_ttl_s)
        await self.store.set_verification_code(device.id, issued)
        await self._clear_guesses(device.id, now)
        return code, issued.expires_at

    async def _match(
        self, mac: str, typed: str, source: str, now: float
    ) -> tuple[Device, IssuedCode] | None:
        """The listed device with this MAC whose code is ``typed``; counts wrong guesses."""
        candidates = [
            d for d in await self.store.devices_by_mac(mac)
            if not await self._refused(d.id, source, now)
        ]
        found: tuple[Device, IssuedCode] | None = None
        for device in candidates:
            issued = await self.store.verification_code(device.id)
            if issued is not None and check_code(device.id, issued, typed, now) not in (
                CodeCheck.WRONG,
                CodeCheck.NONE_ISSUED,
            ):
                found = (device, issued)
        if found is None:
            for device in candidates:
                if device.state == "waiting_for_activation":
                    await self._wrong_guess(device, "verification", source, now)
        return found

    async def provision(
        self, mac_text: str, code_text: str, source: str, now: float
    ) -> Provisioned:
        """Bind the device with this MAC to its tenant if the code is right."""
        await self._take_source(source, now)
        try:
            mac = parse_mac(mac_text)
        except InvalidMac as exc:
            raise RelayError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        typed = normalize_verification_code(code_text)
        if typed is None:
            raise RelayError(ErrorCode.INVALID_REQUEST, "a verification code is 6 digits")
        match = await self._match(mac, typed, source, now)
        if match is None:
            raise RelayError(ErrorCode.NOT_FOUND, WRONG)
        device, issued = match
        verdict = check_code(device.id, issued, typed, now)
        if verdict is CodeCheck.USED or device.state != "waiting_for_activation":
            raise RelayError(
                ErrorCode.WRONG_STATE,
                "this verification code was already used; ask the administrator for a new one",
            )
        if verdict is CodeCheck.EXPIRED:
            raise RelayError(
                ErrorCode.EXPIRED,
                "this verification code has expired; ask the administrator for a new one",
            )
        tenant = await self.store.tenant(device.tenant_id)
        if tenant is None:
            raise RelayError(ErrorCode.NOT_FOUND, WRONG)
        key = self._random_bytes(IDENTITY_KEY_LEN)
        token = new_token()
        credential = Credential(
            self._new_id("c_"), hash_token(token), "device", device.id, device.tenant_id, now
        )
        try:
            # Conditional on the code being unused: two devices racing, on any node, get
            # one success and one refusal.
            await self.store.provision_device(device.id, issued.code_hash, key, credential, now)
        except StoreConflict:
            raise RelayError(
                ErrorCode.WRONG_STATE,
                "this verification code was already used; ask the administrator for a new one",
            ) from None
        await self._clear_guesses(device.id, now)
        await self.directory.refresh(now, force=True)
        await self.store.add_audit(
            now,
            f"device ({source})",
            device.tenant_id,
            "device.provision",
            device.id,
            "ok",
            {"mac": mac},
        )
        log.info("device_provisioned", device=device.id, tenant=device.tenant_id)
        bound = await self.store.device(device.id)
        if bound is None:
            raise RelayError(ErrorCode.NOT_FOUND, WRONG)
        return Provisioned(bound, tenant, credential.id, token, key)

    async def reset(self, token: str, source: str, now: float) -> Device:
        """A device's factory reset: its credential stops working, it must be provisioned
        again (a new verification code is needed)."""
        await self._take_source(source, now)
        credential = await self.store.credential_by_hash(hash_token(token))
        if credential is None or credential.subject_kind != "device":
            raise RelayError(ErrorCode.NOT_FOUND, "unknown device credential")
        device = await self.store.device(credential.subject_id)
        if credential.revoked_at is not None or device is None:
            raise RelayError(ErrorCode.NOT_FOUND, "unknown device credential")
        await self.store.reset_device(device.id, now)
        await self._state.delete(_login_code_key(device.id), now)
        await self.directory.refresh(now, force=True)
        await self.store.add_audit(
            now, f"device ({source})", device.tenant_id, "device.reset", device.id, "ok", {}
        )
        reset = await self.store.device(device.id)
        if reset is None:
            raise RelayError(ErrorCode.NOT_FOUND, "unknown device credential")
        return reset

    # --- login codes and sign-in ----------------------------------------------------------------
    async def ask_login_code(self, device: Device, now: float) -> tuple[str, wire.Event]:
        """Start asking a connected device waiting for sign-in for its login code: the
        request id (to wait on) and the event to send it."""
        if device.state != "waiting_for_sign_in":
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"device {device.id} is {STATE_TEXT[device.state]}, not waiting for sign-in",
            )
        if not await self.presence.is_online(device_address(device.id)):
            raise RelayError(ErrorCode.DEVICE_OFFLINE, f"device {device.id} is not connected")
        request_id = self._new_id("lc_")
        await self._state.set(
            _login_request_key(request_id),
            json.dumps({"device_id": device.id}),
            self._login_code_wait_s + 5.0,
            now,
        )
        return request_id, wire.LoginCodeRequest(request_id=request_id)

    async def wait_login_code(
        self, request_id: str, clock: Callable[[], float]
    ) -> tuple[str, float]:
        """The code the device reported for ``request_id``, and when it expires. The report
        may reach any relay node: the shared state is the meeting point. Waits at most
        ``login_code_wait_s`` of real time."""
        key = _login_request_key(request_id)
        try:
            async with asyncio.timeout(self._login_code_wait_s):
                while True:
                    text = await self._state.get(key, clock())
                    if text is None:
                        break
                    data = json.loads(text)
                    if "code" in data:
                        return str(data["code"]), float(data["expires_at"])
                    await asyncio.sleep(LOGIN_CODE_POLL_S)
        except TimeoutError:
            pass
        finally:
            await self._state.delete(key, clock())
        raise RelayError(
            ErrorCode.DEVICE_OFFLINE, "the device did not report its login code in time"
        )

    @handles(wire.LoginCodeReport)
    async def login_code_report(
        self, principal: Principal, request: wire.LoginCodeReport, now: float
    ) -> Outcome:
        """``login_code.report`` from a device: remember the code (hashed) for sign-in."""
        if not isinstance(principal, DevicePrincipal):
            raise RelayError(ErrorCode.FORBIDDEN, "only a device reports its login code")
        key = _login_request_key(request.request_id)
        text = await self._state.get(key, now)
        data = json.loads(text) if text is not None else None
        if text is None or data is None or data.get("device_id") != principal.device_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no login code request {request.request_id!r}")
        raw = normalize_login_code(request.code)
        if raw is None:
            raise RelayError(
                ErrorCode.INVALID_REQUEST, "a login code is 8 letters and digits, e.g. ABCD-EFGH"
            )
        issued = IssuedCode(hash_code(principal.device_id, raw), now, now + LOGIN_CODE_TTL_S)
        await self._state.set(
            _login_code_key(principal.device_id), dump_code(issued), _LOGIN_CODE_KEPT_S, now
        )
        # The device login page finds the phone by the code a person types (scoped by
        # tenant, so one tenant's code never names another tenant's phone).
        await self._state.set(
            _shown_by_key(principal.tenant_id, raw), principal.device_id, _LOGIN_CODE_KEPT_S, now
        )
        answered = json.dumps(
            {**data, "code": f"{raw[:4]}-{raw[4:]}", "expires_at": issued.expires_at}
        )
        await self._state.replace(key, text, answered, self._login_code_wait_s, now)
        return Outcome(wire.Done())

    async def shown_login_code(self, device_id: str, now: float) -> IssuedCode | None:
        """The login code a device last reported (it shows it), if any."""
        text = await self._state.get(_login_code_key(device_id), now)
        return load_code(text) if text is not None else None

    async def device_showing(self, tenant_id: str, raw_code: str, now: float) -> str | None:
        """The device of a tenant that reported this (normalised) login code, if any."""
        return await self._state.get(_shown_by_key(tenant_id, raw_code), now)

    async def sign_in(
        self,
        device: Device,
        user_id: str,
        code_text: str,
        mode: DeviceMode | None,
        now: float,
        *,
        by: str = "an administrator",
    ) -> Device:
        """Sign an account in to the device with its login code (single use)."""
        user = await self.store.user(user_id)
        if user is None or user.tenant_id != device.tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {user_id!r} in the device's tenant")
        if device.state != "waiting_for_sign_in":
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"device {device.id} is {STATE_TEXT[device.state]}, not waiting for sign-in",
            )
        if await self._refused(device.id, by, now):
            raise RelayError(ErrorCode.NOT_FOUND, "wrong login code")
        key = _login_code_key(device.id)
        text = await self._state.get(key, now)
        issued = load_code(text) if text is not None else None
        verdict = check_code(device.id, issued, normalize_login_code(code_text), now)
        if verdict is CodeCheck.NONE_ISSUED:
            raise RelayError(
                ErrorCode.WRONG_STATE, "ask the relay for the device's login code first"
            )
        if verdict is CodeCheck.WRONG:
            await self._wrong_guess(device, "login", by, now)
            raise RelayError(ErrorCode.NOT_FOUND, "wrong login code")
        if verdict is CodeCheck.USED:
            raise RelayError(ErrorCode.WRONG_STATE, "this login code was already used")
        if verdict is CodeCheck.EXPIRED:
            raise RelayError(ErrorCode.EXPIRED, "the login code has expired; ask for a new one")
        if issued is None or text is None:
            raise RelayError(ErrorCode.WRONG_STATE, "ask for the device's login code first")
        used = dump_code(mark_used(issued, now))
        if not await self._state.replace(key, text, used, _LOGIN_CODE_KEPT_S, now):
            raise RelayError(ErrorCode.WRONG_STATE, "this login code was already used")
        await self.store.sign_in_device_as(
            device.id, user.id, "signed_in", mode or DEFAULT_MODE[device.kind]
        )
        await self._clear_guesses(device.id, now)
        await self.directory.refresh(now, force=True)
        signed_in = await self.store.device(device.id)
        if signed_in is None:
            raise RelayError(ErrorCode.NOT_FOUND, f"no device {device.id!r}")
        return signed_in

    async def sign_out(self, device: Device, now: float) -> Device:
        await self.store.sign_in_device_as(device.id, None, "waiting_for_sign_in", device.mode)
        await self.directory.refresh(now, force=True)
        signed_out = await self.store.device(device.id)
        if signed_out is None:
            raise RelayError(ErrorCode.NOT_FOUND, f"no device {device.id!r}")
        return signed_out

    # --- what devices are told ---------------------------------------------------------------
    async def device_state(self, device_id: str, now: float) -> wire.DeviceStateEvent | None:
        """The ``device.state`` event for a device (None if it is gone)."""
        device = await self.store.device(device_id)
        if device is None:
            return None
        tenant = await self.store.tenant(device.tenant_id)
        user = await self.store.user(device.user_id) if device.user_id else None
        policy = await self.directory.effective_policy(
            device.tenant_id, device.policy_id or (user.policy_id if user else None), now
        )
        console = await self.store.console_pairing(device.id)
        return wire.DeviceStateEvent(
            state=device.state,
            organisation=tenant.name if tenant else "",
            user_name=user.name if user else None,
            beaconing=policy.beaconing and device.state == "signed_in" and console is None,
            auto_confirm=await self.store.policy_auto_confirm(policy.id),
        )

    async def state_deliveries(self, device_ids: list[str], now: float) -> list[Delivery]:
        """``device.state`` for each of these devices that is connected."""
        out: list[Delivery] = []
        for device_id in device_ids:
            address = device_address(device_id)
            if not await self.presence.is_online(address):
                continue
            event = await self.device_state(device_id, now)
            if event is not None:
                out.append(Delivery(address, event))
        return out


def _login_request_key(request_id: str) -> str:
    return f"login-req:{request_id}"


def _login_code_key(device_id: str) -> str:
    return f"login-code:{device_id}"


def _shown_by_key(tenant_id: str, raw_code: str) -> str:
    return f"login-shown:{hash_code(tenant_id, raw_code)}"
