"""The relay's decisions called directly: no socket, no database file, an explicit ``now``.

A :class:`Domain` wires the real :class:`~relay.domain.service.RelayService`,
:class:`~relay.admin.service.AdminService`, :class:`~relay.domain.provisioning.Provisioning`,
:class:`~relay.domain.consoles.Consoles` and :class:`~relay.domain.directory.Directory` to fakes that
implement the real interfaces — an in-memory :class:`~relay.domain.store.RelayStore`, the
in-memory :class:`~relay.domain.ephemeral.EphemeralState` the embedded relay runs on, and a
router whose connected addresses the test decides — with a clock the test moves. Every
principal the protocols know is here: a laptop (a user's credential), a device (a
device's credential), a device administrator and an owner (administrator records), and
the anonymous caller of ``/provision``. A decision takes microseconds, so these tests
can run once per mutant (``./dev.sh mutants``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TypeVar

import pytest

from relay.admin.service import AdminOutcome, AdminService
from relay.admin.store_admin import Admin, IssuedCredential
from relay.domain.consoles import Consoles
from relay.domain.directory import Directory
from relay.domain.ephemeral import MemoryEphemeral
from relay.domain.errors import RelayError
from relay.domain.model import AdminRecord, ConsolePairing, Device, Policy, Tenant, User
from relay.domain.provisioning import Provisioning
from relay.domain.service import (
    DevicePrincipal,
    LaptopPrincipal,
    Outcome,
    Principal,
    RelayService,
    Rules,
    device_address,
)
from relay.domain.verification import ThrottlePolicy
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.eid import eid_at
from relay.protocol.wire import ErrorCode
from tests.fakes import FakeRouter, MemoryStore
from tests.relay_harness import ManualClock

T = TypeVar("T")

RULES = Rules(
    sighting_freshness=120.0, pair_request_ttl=120.0, join_prompt_ttl=60.0, pushes_per_minute=20
)
THROTTLE = ThrottlePolicy(
    max_failures=5, lockout_s=900.0, source_per_minute=20, device_failures_per_day=100
)


# The admin requests kept in the browser sign-in tables (relay.web.account_admin: passwords,
# set-up links, laptop credentials; relay.web.sso_admin: single sign-on, e-mail
# addresses) need the accounts tables, which only the real stores have: tests/web,
# tests/provisioning and tests/contract run them over SQLite and PostgreSQL. Here they
# answer that they are not part of this layer.
async def _account_records_not_here(admin: AdminRecord, request: Any, now: float) -> AdminOutcome:
    raise RelayError(ErrorCode.UNAVAILABLE, f"{request.type} is not part of the domain layer")


def account_request_types() -> list[str]:
    """The admin request types whose handlers live outside the admin service (the composition
    root adds them: relay.node)."""
    from relay.admin.edits import AdminEdits
    from relay.domain.handlers import kind_of

    own = {
        kind
        for cls in (AdminService, AdminEdits)
        for name in dir(cls)
        for kind in getattr(getattr(cls, name), "__handles__", ())
    }
    return [kind_of(r) for r in aw.ADMIN_REQUESTS if kind_of(r) not in own]


class Ids:
    """Predictable ids (``jn_1``, ``pr_2`` …) and codes, so tests can name what the relay made."""

    def __init__(self) -> None:
        self._next = count(1)
        self._codes = count(123456)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._next)}"

    def new_code(self) -> str:
        return f"{next(self._codes) % 1_000_000:06d}"


@dataclass
class Person:
    user: User
    credential: IssuedCredential
    phone: Device
    phone_credential: IssuedCredential


@dataclass
class World:
    """Contoso: alice and bob (each with a personal desk phone), dave (Better Together
    Disabled by his policy, with a phone), a room (joins at once), a room that prompts, a
    room whose policy turns proximity join off, a conference phone in a common area, and a
    touch console paired with the room. Fabrikam: carol with her phone, and a room.
    Administrators: the owner, and one device administrator per tenant."""

    contoso: Tenant
    fabrikam: Tenant
    alice: Person
    bob: Person
    dave: Person
    carol: Person
    room: Device
    prompt_room: Device
    off_room: Device
    common_phone: Device
    console: Device
    fabrikam_room: Device
    disabled: Policy
    prompt: Policy
    off: Policy
    owner: AdminRecord
    contoso_admin: AdminRecord
    fabrikam_admin: AdminRecord
    credentials: dict[str, IssuedCredential] = field(default_factory=dict)


@dataclass
class Domain:
    """One relay node's decisions over fakes, and the handles a test needs."""

    store: MemoryStore
    ephemeral: MemoryEphemeral
    guesses: MemoryEphemeral
    router: FakeRouter
    directory: Directory
    provisioning: Provisioning
    consoles: Consoles
    service: RelayService
    admin_service: AdminService
    admin: Admin
    clock: ManualClock
    ids: Ids

    @property
    def now(self) -> float:
        return self.clock()

    # --- principals ------------------------------------------------------------------------
    async def laptop(self, person: Person, laptop_id: str = "laptop-1") -> LaptopPrincipal:
        principal = await self.service.authenticate(
            person.credential.token, laptop_id, f"{person.user.name}'s laptop", self.now
        )
        assert isinstance(principal, LaptopPrincipal)
        return principal

    async def device(self, credential: IssuedCredential, *, online: bool = True) -> DevicePrincipal:
        principal = await self.service.authenticate(credential.token, None, None, self.now)
        assert isinstance(principal, DevicePrincipal)
        if online:
            self.router.connect(principal.address)
        return principal

    async def phone(self, person: Person, *, online: bool = True) -> DevicePrincipal:
        return await self.device(person.phone_credential, online=online)

    async def paired(
        self, person: Person, laptop_id: str = "laptop-1"
    ) -> tuple[LaptopPrincipal, DevicePrincipal]:
        """A person's laptop paired with their phone (stored directly), the phone online."""
        await self.admin.pair(person.user.id, laptop_id, person.phone.id, f"{laptop_id} name")
        return await self.laptop(person, laptop_id), await self.phone(person)

    def online(self, *devices: Device) -> None:
        for device in devices:
            self.router.connect(device_address(device.id))

    def offline(self, *devices: Device) -> None:
        for device in devices:
            self.router.disconnect(device_address(device.id))

    # --- requests ------------------------------------------------------------------------------
    async def send(self, principal: Principal, request: wire.Request) -> Outcome:
        return await self.service.handle(principal, request, self.now)

    async def admin_send(self, admin: AdminRecord, request: aw.AdminRequest) -> AdminOutcome:
        return await self.admin_service.handle(admin, request, self.now)

    async def sight(self, laptop: LaptopPrincipal, *devices: Device) -> list[str]:
        """Report hearing each device's current EID; the ids of what the relay described."""
        sightings = [wire.Sighting(eid=self.eid(d).hex(), rssi=-60) for d in devices]
        outcome = await self.send(laptop, wire.SightingsReport(id=1, sightings=sightings))
        assert isinstance(outcome.result, wire.SightingsResult)
        return [d.device_id for d in outcome.result.devices]

    def eid(self, device: Device) -> bytes:
        return eid_at(device.identity_key, self.now, device.rotation_exponent)

    async def settled(self) -> None:
        """Let the EID index take in what changed (it follows the directory in the background)."""
        await self.directory.refresh(self.now, force=True)
        await self.directory.eids.idle.wait()


async def refused(call: Awaitable[Any]) -> RelayError:
    """The refusal a call raised (the test fails if it did not refuse)."""
    with pytest.raises(RelayError) as caught:
        await call
    return caught.value


def events(outcome: Outcome | AdminOutcome) -> list[tuple[str, str]]:
    """(address, event type) of what a decision delivers, in order."""
    return [(d.address, d.event.type) for d in outcome.deliveries]


async def build_domain(
    *, rules: Rules = RULES, throttle: ThrottlePolicy = THROTTLE, start: float = 1_800_000_000.0
) -> Domain:
    store = MemoryStore()
    await store.open()
    clock = ManualClock(start)
    ids = Ids()
    ephemeral, guesses = MemoryEphemeral(), MemoryEphemeral()
    router = FakeRouter()
    directory = Directory(store, 0.0, 1, clock=clock)
    provisioning = Provisioning(
        store,
        directory,
        router,
        ephemeral,
        guesses,
        throttle=throttle,
        rng=random.Random(7),
        new_id=ids.new_id,
        random_bytes=lambda n: bytes(range(n)),
        login_code_wait_s=2.0,
    )
    consoles = Consoles(store, router, new_id=ids.new_id)
    service = RelayService(
        store,
        directory,
        ephemeral,
        router,
        rules,
        handlers={
            "login_code.report": provisioning.login_code_report,
            "console.join": consoles.console_join,
        },
        device_state=provisioning.device_state,
        new_id=ids.new_id,
        new_code=ids.new_code,
    )
    admin_service = AdminService(
        store,
        provisioning,
        service,
        router,
        clock=clock,
        new_id=ids.new_id,
        handlers=dict.fromkeys(account_request_types(), _account_records_not_here),
    )
    admin = Admin(store, clock=clock)
    domain = Domain(
        store,
        ephemeral,
        guesses,
        router,
        directory,
        provisioning,
        consoles,
        service,
        admin_service,
        admin,
        clock,
        ids,
    )
    await directory.start(clock())
    return domain


async def build_world(domain: Domain) -> World:
    admin = domain.admin
    contoso = await admin.create_tenant("Contoso")
    fabrikam = await admin.create_tenant("Fabrikam")
    disabled = await admin.create_policy(
        contoso.id, "No Better Together", allow_better_together="Disabled"
    )
    prompt = await admin.create_policy(contoso.id, "Ask the room", proximity_join="prompt")
    off = await admin.create_policy(contoso.id, "No proximity join", proximity_join="off")

    async def person(tenant: Tenant, name: str, policy: Policy | None = None) -> Person:
        user = await admin.create_user(tenant.id, name, policy.id if policy else None)
        credential = await admin.issue_credential("user", user.id)
        phone = await admin.create_device(
            tenant.id, f"{name}'s phone", "desk_phone", "personal", location="desk"
        )
        phone = await admin.sign_in_device(phone.id, user.id)
        return Person(user, credential, phone, await admin.issue_credential("device", phone.id))

    alice = await person(contoso, "alice")
    bob = await person(contoso, "bob")
    dave = await person(contoso, "dave", disabled)
    carol = await person(fabrikam, "carol")
    room = await admin.create_device(
        contoso.id, "Room 4.01", "room_system", "meeting_room", location="floor 4"
    )
    prompt_room = await admin.create_device(
        contoso.id, "Boardroom", "room_system", "meeting_room", policy_id=prompt.id
    )
    off_room = await admin.create_device(
        contoso.id, "Quiet room", "room_system", "meeting_room", policy_id=off.id
    )
    common_phone = await admin.create_device(
        contoso.id, "Lobby phone", "conference_phone", "common_area"
    )
    console = await admin.create_device(
        contoso.id, "Room 4.01 panel", "conference_phone", "common_area"
    )
    fabrikam_room = await admin.create_device(fabrikam.id, "Atrium", "room_system", "meeting_room")
    await domain.store.pair_console(ConsolePairing(console.id, room.id, contoso.id, domain.now))
    owner = AdminRecord("a_owner", "Olivia", "owner", None, domain.now)
    contoso_admin = AdminRecord("a_contoso", "Connie", "device_admin", contoso.id, domain.now)
    fabrikam_admin = AdminRecord("a_fabrikam", "Fabian", "device_admin", fabrikam.id, domain.now)
    for record, token in ((owner, b"o"), (contoso_admin, b"c"), (fabrikam_admin, b"f")):
        await domain.store.add_admin(record, token * 32, f"ac_{record.id}")
    world = World(
        contoso,
        fabrikam,
        alice,
        bob,
        dave,
        carol,
        room,
        prompt_room,
        off_room,
        common_phone,
        console,
        fabrikam_room,
        disabled,
        prompt,
        off,
        owner,
        contoso_admin,
        fabrikam_admin,
    )
    for device in (room, prompt_room, off_room, common_phone, console, fabrikam_room):
        world.credentials[device.id] = await admin.issue_credential("device", device.id)
    await domain.settled()
    return world


@pytest.fixture
async def domain() -> AsyncIterator[Domain]:
    built = await build_domain()
    yield built
    await built.directory.close()


@pytest.fixture
async def world(domain: Domain) -> World:
    return await build_world(domain)
