"""How a device joins a tenant and gets an account: verification codes, provisioning,
login codes, sign-in, factory reset, and what each device is told about its state.

The flow (Teams' remote provisioning, as administrators know it): a listed device
waits for activation; the administrator generates a 6-digit verification code; the
device presents its MAC address and that code (:meth:`Provisioning.provision`) and
receives a credential and an identity key; it then waits for sign-in. The
administrator asks the relay for the device's login code, which the relay gets from
the connected device (``login_code.request`` → ``login_code.report``), and signs an
account in with it. Codes are single use and expire; wrong codes are throttled per
device (lock-out, with the reason kept for the administrator) and per source address.

Time and randomness come in as arguments or collaborators; refusals are
:class:`~relay.errors.RelayError` raised before anything changes. In-flight login
code requests, issued login codes and guess counters live in memory (they are
short-lived); verification codes and device state are durable.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from relay.admin_store import SqliteAdminStore
from relay.credentials import hash_token, new_token
from relay.device_import import InvalidMac, parse_mac
from relay.directory import Directory
from relay.errors import RelayError
from relay.model import Credential, Device, Tenant
from relay.protocol import wire
from relay.protocol.eid import IDENTITY_KEY_LEN
from relay.protocol.wire import DeviceMode, ErrorCode
from relay.service import Delivery, DevicePrincipal, Outcome, Presence, Principal, device_address
from relay.verification import (
    LOGIN_CODE_TTL_S,
    VERIFICATION_CODE_TTL_S,
    CodeCheck,
    DeviceGuesses,
    IssuedCode,
    SourceBucket,
    ThrottlePolicy,
    check_code,
    hash_code,
    mark_used,
    new_verification_code,
    normalize_login_code,
    normalize_verification_code,
)

log = structlog.get_logger("relay.provisioning")

DEFAULT_MODE: dict[str, DeviceMode] = {
    "desk_phone": "personal",
    "conference_phone": "common_area",
    "room_system": "meeting_room",
}
LOGIN_CODE_WAIT_S = 10.0
STATE_TEXT = {
    "waiting_for_activation": "waiting for activation",
    "waiting_for_sign_in": "waiting for sign-in",
    "signed_in": "signed in",
}
_WRONG = "wrong code, or no such device waiting for activation"


@dataclass(frozen=True, slots=True)
class Provisioned:
    device: Device
    tenant: Tenant
    credential_id: str
    token: str
    identity_key: bytes


@dataclass(frozen=True, slots=True)
class Lockout:
    until: float
    reason: str


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


class Provisioning:
    def __init__(
        self,
        store: SqliteAdminStore,
        directory: Directory,
        presence: Presence,
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
        self.throttle = throttle or ThrottlePolicy()
        self._rng = rng or random.SystemRandom()
        self._new_id = new_id
        self._random_bytes = random_bytes
        self._verification_ttl_s = verification_ttl_s
        self._login_code_wait_s = login_code_wait_s
        self._guesses: dict[str, DeviceGuesses] = {}
        self._lockouts: dict[str, Lockout] = {}
        self._sources: dict[str, SourceBucket] = {}
        self._login_requests: dict[str, tuple[str, asyncio.Future[str]]] = {}
        self._login_codes: dict[str, IssuedCode] = {}
        self._binding = asyncio.Lock()  # one provisioning at a time: a code is used once

    # --- throttling ------------------------------------------------------------------------
    def lockout(self, device_id: str, now: float) -> Lockout | None:
        """Why and until when wrong codes locked this device out, if they did."""
        lockout = self._lockouts.get(device_id)
        return lockout if lockout is not None and now < lockout.until else None

    def _take_source(self, source: str, now: float) -> None:
        bucket = self._sources.get(source) or SourceBucket.full(now, self.throttle)
        allowed, self._sources[source] = bucket.take(now, self.throttle)
        if not allowed:
            raise RelayError(ErrorCode.RATE_LIMITED, "too many attempts from this address; wait")
        if len(self._sources) > 10_000:  # forget full buckets of long-gone sources
            horizon = now - 60.0 * self.throttle.source_burst / self.throttle.source_per_minute
            for key in [k for k, b in self._sources.items() if b.updated_at < horizon]:
                del self._sources[key]

    def _check_not_locked(self, device_id: str, now: float) -> None:
        lockout = self.lockout(device_id, now)
        if lockout is not None:
            raise RelayError(
                ErrorCode.RATE_LIMITED,
                "device locked out until "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(lockout.until))} "
                f"({lockout.reason}); "
                "ask the administrator",
            )

    async def _wrong_guess(self, device: Device, what: str, source: str, now: float) -> None:
        """Count a wrong code; the guess that reaches the limit locks the device out."""
        guesses = self._guesses.get(device.id, DeviceGuesses())
        after = guesses.after_failure(now, self.throttle)
        self._guesses[device.id] = after
        if after.locked(now) and after.locked_until is not None:
            reason = f"{self.throttle.max_failures} wrong {what} codes, the last from {source}"
            self._lockouts[device.id] = Lockout(after.locked_until, reason)
            log.warning("device_locked_out", device=device.id, reason=reason)
            await self.store.add_audit(
                now,
                f"relay ({source})",
                device.tenant_id,
                "device.locked_out",
                device.id,
                "locked_out",
                {"reason": reason, "until": after.locked_until, "mac": device.mac},
            )

    def _clear_guesses(self, device_id: str) -> None:
        self._guesses.pop(device_id, None)
        self._lockouts.pop(device_id, None)

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
        self._clear_guesses(device.id)
        return code, issued.expires_at

    async def provision(
        self, mac_text: str, code_text: str, source: str, now: float
    ) -> Provisioned:
        """Bind the device with this MAC to its tenant if the code is right."""
        self._take_source(source, now)
        try:
            mac = parse_mac(mac_text)
        except InvalidMac as exc:
            raise RelayError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        typed = normalize_verification_code(code_text)
        if typed is None:
            raise RelayError(ErrorCode.INVALID_REQUEST, "a verification code is 6 digits")
        async with self._binding:
            device = await self.store.device_by_mac(mac)
            if device is None:
                raise RelayError(ErrorCode.NOT_FOUND, _WRONG)
            self._check_not_locked(device.id, now)
            issued = await self.store.verification_code(device.id)
            verdict = check_code(device.id, issued, typed, now)
            if verdict is CodeCheck.WRONG or verdict is CodeCheck.NONE_ISSUED:
                await self._wrong_guess(device, "verification", source, now)
                raise RelayError(ErrorCode.NOT_FOUND, _WRONG)
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
            assert tenant is not None  # devices reference their tenant
            key = self._random_bytes(IDENTITY_KEY_LEN)
            token = new_token()
            credential = Credential(
                self._new_id("c_"), hash_token(token), "device", device.id, device.tenant_id, now
            )
            await self.store.provision_device(device.id, key, credential, now)
            self._clear_guesses(device.id)
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
        assert bound is not None
        return Provisioned(bound, tenant, credential.id, token, key)

    async def reset(self, token: str, source: str, now: float) -> Device:
        """A device's factory reset: its credential stops working, it must be provisioned
        again (a new verification code is needed)."""
        self._take_source(source, now)
        credential = await self.store.credential_by_hash(hash_token(token))
        if credential is None or credential.subject_kind != "device":
            raise RelayError(ErrorCode.NOT_FOUND, "unknown device credential")
        device = await self.store.device(credential.subject_id)
        if credential.revoked_at is not None or device is None:
            raise RelayError(ErrorCode.NOT_FOUND, "the credential is already revoked")
        await self.store.reset_device(device.id, now)
        self._login_codes.pop(device.id, None)
        await self.directory.refresh(now, force=True)
        await self.store.add_audit(
            now, f"device ({source})", device.tenant_id, "device.reset", device.id, "ok", {}
        )
        reset = await self.store.device(device.id)
        assert reset is not None
        return reset

    # --- login codes and sign-in ----------------------------------------------------------------
    def ask_login_code(self, device: Device) -> tuple[str, asyncio.Future[str], wire.Event]:
        """Start asking a connected device waiting for sign-in for its login code: the
        request id, the future its report resolves, and the event to send it."""
        if device.state != "waiting_for_sign_in":
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"device {device.id} is {STATE_TEXT[device.state]}, not waiting for sign-in",
            )
        if not self.presence.is_online(device_address(device.id)):
            raise RelayError(ErrorCode.DEVICE_OFFLINE, f"device {device.id} is not connected")
        request_id = self._new_id("lc_")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._login_requests[request_id] = (device.id, future)
        return request_id, future, wire.LoginCodeRequest(request_id=request_id)

    async def wait_login_code(
        self, request_id: str, future: asyncio.Future[str]
    ) -> tuple[str, float]:
        """The code the device reported for ``request_id``, and when it expires."""
        device_id = self._login_requests[request_id][0]
        try:
            async with asyncio.timeout(self._login_code_wait_s):
                code = await future
        except TimeoutError:
            raise RelayError(
                ErrorCode.DEVICE_OFFLINE, "the device did not report its login code in time"
            ) from None
        finally:
            self._login_requests.pop(request_id, None)
        issued = self._login_codes[device_id]
        return code, issued.expires_at

    async def login_code_report(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        """``login_code.report`` from a device: remember the code (hashed) for sign-in."""
        assert isinstance(principal, DevicePrincipal) and isinstance(request, wire.LoginCodeReport)
        pending = self._login_requests.get(request.request_id)
        if pending is None or pending[0] != principal.device_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no login code request {request.request_id!r}")
        raw = normalize_login_code(request.code)
        if raw is None:
            raise RelayError(
                ErrorCode.INVALID_REQUEST, "a login code is 8 letters and digits, e.g. ABCD-EFGH"
            )
        self._login_codes[principal.device_id] = IssuedCode(
            hash_code(principal.device_id, raw), now, now + LOGIN_CODE_TTL_S
        )
        future = pending[1]
        if not future.done():
            future.set_result(f"{raw[:4]}-{raw[4:]}")
        return Outcome(wire.Done())

    async def sign_in(
        self, device: Device, user_id: str, code_text: str, mode: DeviceMode | None, now: float
    ) -> Device:
        """Sign an account in to the device with its login code (single use)."""
        self._check_not_locked(device.id, now)
        user = await self.store.user(user_id)
        if user is None or user.tenant_id != device.tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {user_id!r} in the device's tenant")
        if device.state != "waiting_for_sign_in":
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"device {device.id} is {STATE_TEXT[device.state]}, not waiting for sign-in",
            )
        issued = self._login_codes.get(device.id)
        verdict = check_code(device.id, issued, normalize_login_code(code_text), now)
        if verdict is CodeCheck.NONE_ISSUED:
            raise RelayError(
                ErrorCode.WRONG_STATE, "ask the relay for the device's login code first"
            )
        if verdict is CodeCheck.WRONG:
            await self._wrong_guess(device, "login", "an administrator", now)
            raise RelayError(ErrorCode.NOT_FOUND, "wrong login code")
        if verdict is CodeCheck.USED:
            raise RelayError(ErrorCode.WRONG_STATE, "this login code was already used")
        if verdict is CodeCheck.EXPIRED:
            raise RelayError(ErrorCode.EXPIRED, "the login code has expired; ask for a new one")
        assert issued is not None
        self._login_codes[device.id] = mark_used(issued, now)
        await self.store.sign_in_device_as(
            device.id, user.id, "signed_in", mode or DEFAULT_MODE[device.kind]
        )
        self._clear_guesses(device.id)
        await self.directory.refresh(now, force=True)
        signed_in = await self.store.device(device.id)
        assert signed_in is not None
        return signed_in

    async def sign_out(self, device: Device, now: float) -> Device:
        await self.store.sign_in_device_as(device.id, None, "waiting_for_sign_in", device.mode)
        await self.directory.refresh(now, force=True)
        signed_out = await self.store.device(device.id)
        assert signed_out is not None
        return signed_out

    # --- what devices are told ---------------------------------------------------------------
    async def device_state(self, device_id: str, now: float) -> wire.DeviceStateEvent | None:
        """The ``device.state`` event for a device (None if it is gone)."""
        device = await self.store.device(device_id)
        if device is None:
            return None
        tenant = await self.store.tenant(device.tenant_id)
        user = await self.store.user(device.user_id) if device.user_id else None
        await self.directory.refresh(now, force=True)
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
            if not self.presence.is_online(address):
                continue
            event = await self.device_state(device_id, now)
            if event is not None:
                out.append(Delivery(address, event))
        return out
