"""The tray menu builder as pure code, and dispatching its actions to the client."""

from __future__ import annotations

import pytest

from client.tray.menu import (
    MAX_ROOMS,
    Action,
    MenuEntry,
    Notice,
    build_menu,
    dispatch_action,
    display_name,
    format_distance,
    notices,
)
from client.views import (
    JoinOutcome,
    NearbyPhone,
    NearbyRoom,
    PairedPhone,
    PairingCode,
    PendingPairing,
    TrayState,
)

PHONE = PairedPhone(phone_id="phone-1", name="Desk phone 4.12")
ROOMS = (
    NearbyRoom(room_id="room-a", name="Fjord", distance_m=1.24),
    NearbyRoom(room_id="room-b", name="Glacier", distance_m=4.0),
    NearbyRoom(room_id="room-c", name="Tundra", distance_m=12.6),
)


def _entry(entries: list[MenuEntry], label: str) -> MenuEntry:
    matches = [e for e in entries if e.label == label]
    assert len(matches) == 1, f"{label!r} not exactly once in {[e.label for e in entries]}"
    return matches[0]


def _actionable(entries: list[MenuEntry]) -> list[MenuEntry]:
    return [e for e in entries if e.action is not None]


def test_empty_state_while_disconnected_offers_only_the_meeting_and_quit() -> None:
    entries = build_menu(TrayState())
    assert entries[0] == MenuEntry("Relay unreachable, reconnecting…", enabled=False)
    assert not _entry(entries, "No rooms nearby").enabled
    assert not _entry(entries, "No phone of yours nearby").enabled
    assert [e.label for e in _actionable(entries) if e.enabled] == [
        "Set meeting…",
        "Quit btogether",
    ]
    assert _entry(entries, "Quit btogether").action == Action("quit")


def test_rooms_are_listed_in_ranked_order_with_distances_and_join_the_meeting() -> None:
    entries = build_menu(TrayState(relay_connected=True, rooms=ROOMS, meeting_id="m-42"))
    joins = [e for e in entries if e.action is not None and e.action.command == "join_room"]
    assert [e.label for e in joins] == ["Fjord · 1.2 m", "Glacier · 4.0 m", "Tundra · 13 m"]
    assert [e.action for e in joins] == [Action("join_room", (r.room_id,)) for r in ROOMS]
    assert all(e.enabled for e in joins)
    assert _entry(entries, "In meeting m-42").enabled is False
    assert _entry(entries, "Add a room to the meeting").enabled is False


def test_room_list_is_capped() -> None:
    rooms = tuple(
        NearbyRoom(room_id=f"r{i}", name=f"Room {i}", distance_m=float(i))
        for i in range(MAX_ROOMS + 3)
    )
    entries = build_menu(TrayState(relay_connected=True, rooms=rooms, meeting_id="m"))
    joins = [e for e in entries if e.action is not None and e.action.command == "join_room"]
    assert len(joins) == MAX_ROOMS
    assert joins[0].label.startswith("Room 0")


def test_rooms_cannot_be_added_without_a_meeting() -> None:
    entries = build_menu(TrayState(relay_connected=True, rooms=ROOMS))
    assert _entry(entries, "No meeting").enabled is False
    assert _entry(entries, "Rooms nearby (join a meeting first)").enabled is False
    assert not _entry(entries, "Fjord · 1.2 m").enabled


def test_unpaired_phone_nearby_can_be_connected() -> None:
    state = TrayState(
        relay_connected=True,
        phones=(NearbyPhone(phone_id="phone-1", name="Desk phone", distance_m=0.6),),
    )
    entry = _entry(build_menu(state), "Connect Desk phone · under 1 m")
    assert entry.enabled and entry.action == Action("connect_phone", ("phone-1",))


def test_paired_phone_offers_audio_and_unpair_and_is_not_offered_again() -> None:
    state = TrayState(
        relay_connected=True,
        paired=(PHONE,),
        phones=(NearbyPhone(phone_id="phone-1", name="Desk phone 4.12", distance_m=1.0),),
    )
    entries = build_menu(state)
    assert not _entry(entries, "Desk phone 4.12: paired").enabled
    audio = _entry(entries, "Use Desk phone 4.12 for audio")
    assert (audio.enabled, audio.checked) == (True, False)
    assert audio.action == Action("audio_on", ("phone-1",))
    assert _entry(entries, "Unpair Desk phone 4.12").action == Action("unpair", ("phone-1",))
    assert not any(e.label.startswith("Connect ") for e in entries)
    lock = _entry(entries, "Lock my phone with this laptop")
    assert (lock.enabled, lock.checked, lock.action) == (True, False, Action("lock_sync", (True,)))


def test_pending_pairing_that_needs_me_offers_confirm_and_decline() -> None:
    state = TrayState(
        relay_connected=True,
        pending=PendingPairing(phone_id="phone-1", name="Desk phone", needs_my_confirmation=True),
        phones=(
            NearbyPhone(phone_id="phone-1", name="Desk phone", distance_m=1.0),
            NearbyPhone(phone_id="phone-2", name="Spare", distance_m=3.0),
        ),
    )
    entries = build_menu(state)
    assert _entry(entries, "Confirm connecting Desk phone").action == Action(
        "confirm_pairing", ("phone-1",)
    )
    assert _entry(entries, "Decline Desk phone").action == Action("decline_pairing", ("phone-1",))
    # One pairing at a time: the other phone is shown but cannot be started now.
    assert not _entry(entries, "Connect Spare · 3.0 m").enabled
    assert not any(e.label.startswith("Connect Desk phone") for e in entries)


def test_pending_pairing_waiting_for_the_phone_can_be_cancelled() -> None:
    state = TrayState(
        relay_connected=True,
        pending=PendingPairing(phone_id="phone-1", name="Desk phone", needs_my_confirmation=False),
    )
    entries = build_menu(state)
    assert not _entry(entries, "Waiting for Desk phone to confirm…").enabled
    cancel = _entry(entries, "Cancel connecting Desk phone")
    assert cancel.enabled and cancel.action == Action("decline_pairing", ("phone-1",))


def test_active_audio_is_checked_and_releases_even_when_the_phone_dropped() -> None:
    state = TrayState(
        relay_connected=True,
        paired=(PairedPhone(phone_id="phone-1", name="Desk phone", online=False),),
        audio_phone_id="phone-1",
        lock_sync=True,
    )
    entries = build_menu(state)
    assert not _entry(entries, "Desk phone: paired, offline").enabled
    audio = _entry(entries, "Use Desk phone for audio")
    assert (audio.checked, audio.enabled, audio.action) == (
        True,
        True,
        Action("audio_off", ("phone-1",)),
    )
    lock = _entry(entries, "Lock my phone with this laptop")
    assert (lock.checked, lock.action) == (True, Action("lock_sync", (False,)))


def test_offline_phone_cannot_take_audio() -> None:
    state = TrayState(
        relay_connected=True, paired=(PairedPhone(phone_id="p", name="Phone", online=False),)
    )
    assert not _entry(build_menu(state), "Use Phone for audio").enabled


def test_disconnected_relay_greys_out_every_action_but_the_meeting_and_quit() -> None:
    full = TrayState(
        relay_connected=True,
        rooms=ROOMS,
        phones=(NearbyPhone(phone_id="phone-2", name="Spare", distance_m=2.0),),
        paired=(PHONE,),
        pending=PendingPairing(phone_id="phone-3", name="Third", needs_my_confirmation=True),
        lock_sync=True,
        audio_phone_id="phone-1",
        meeting_id="m-1",
    )
    connected = build_menu(full)
    assert len([e for e in _actionable(connected) if e.enabled]) == 11
    offline = build_menu(full.model_copy(update={"relay_connected": False}))
    assert [e.label for e in _actionable(offline) if e.enabled] == [
        "Set meeting…",
        "Leave meeting",
        "Quit btogether",
    ]
    # Same rows, only greyed out: the user still sees what is there, and a paired phone is
    # not called connected while the relay is down.
    assert [e.label for e in offline][2:] == [
        "Desk phone 4.12: paired (relay unreachable)"
        if e.label.startswith("Desk phone 4.12:")
        else e.label
        for e in connected
    ][2:]
    assert not any("connected" in e.label.lower() for e in offline[1:])


def test_the_meeting_can_be_set_and_left_from_the_menu() -> None:
    entries = build_menu(TrayState(relay_connected=True))
    assert _entry(entries, "Set meeting…").action == Action("set_meeting")
    assert not any(e.label == "Leave meeting" for e in entries)
    entries = build_menu(TrayState(relay_connected=True, meeting_id="weekly"))
    assert _entry(entries, "Leave meeting").action == Action("leave_meeting")


def test_notices_tell_the_pairing_code_the_outcome_and_a_rooms_answer() -> None:
    idle = TrayState(relay_connected=True)
    code = PairingCode(request_id="r-1", phone_name="Desk phone", code="123456")
    asking = TrayState(
        relay_connected=True,
        pending=PendingPairing(
            phone_id="phone-1", name="Desk phone (code 123456)", needs_my_confirmation=True
        ),
        pairing_code=code,
    )
    assert notices(idle, asking) == [
        Notice(
            "Connect Desk phone?",
            "Code 123456: check that the phone shows the same code, then confirm on both.",
        )
    ]
    assert notices(asking, asking) == []  # said once
    paired = TrayState(
        relay_connected=True, paired=(PairedPhone(phone_id="phone-1", name="Desk phone"),)
    )
    assert [n.title for n in notices(asking, paired)] == ["Desk phone connected"]
    assert [n.title for n in notices(asking, idle)] == ["Desk phone (code 123456) not connected"]
    join = JoinOutcome(join_id="j-1", room_name="Fjord", outcome="accepted", meeting_id="weekly")
    joined = TrayState(relay_connected=True, last_join=join)
    assert notices(idle, joined) == [Notice("Room joined", "Fjord joined meeting weekly.")]
    declined = TrayState(
        relay_connected=True,
        last_join=JoinOutcome(join_id="j-2", room_name="Fjord", outcome="declined", meeting_id="w"),
    )
    assert notices(joined, declined) == [
        Notice("Room not joined", "Fjord declined to join meeting w.")
    ]
    pending = TrayState(
        relay_connected=True,
        last_join=JoinOutcome(join_id="j-3", room_name="Fjord", outcome="pending", meeting_id="w"),
    )
    assert notices(declined, pending) == []


def test_names_from_the_relay_are_made_safe_for_a_menu() -> None:
    assert display_name("Room\n\x1b[31mA\t") == "Room [31mA"
    assert display_name("   ") == "(unnamed)"
    long = display_name("x" * 100)
    assert len(long) == 40 and long.endswith("…")
    assert format_distance(None) == "distance unknown"
    assert format_distance(float("nan")) == "distance unknown"
    assert format_distance(0.3) == "under 1 m"


class RecordingActions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def join_room(self, room_id: str) -> None:
        self.calls.append(("join_room", room_id))

    async def connect_phone(self, phone_id: str) -> None:
        self.calls.append(("connect_phone", phone_id))

    async def confirm_pairing(self, phone_id: str) -> None:
        self.calls.append(("confirm_pairing", phone_id))

    async def decline_pairing(self, phone_id: str) -> None:
        self.calls.append(("decline_pairing", phone_id))

    async def audio_on(self, phone_id: str) -> None:
        self.calls.append(("audio_on", phone_id))

    async def audio_off(self, phone_id: str) -> None:
        self.calls.append(("audio_off", phone_id))

    async def lock_sync(self, enabled: bool) -> None:
        self.calls.append(("lock_sync", enabled))

    async def unpair(self, phone_id: str) -> None:
        self.calls.append(("unpair", phone_id))

    async def set_meeting(self, meeting_id: str | None) -> None:
        self.calls.append(("set_meeting", meeting_id))

    async def quit(self) -> None:
        self.calls.append(("quit", None))


async def test_every_menu_action_reaches_the_matching_client_method() -> None:
    state = TrayState(
        relay_connected=True,
        rooms=ROOMS[:1],
        phones=(NearbyPhone(phone_id="phone-2", name="Spare", distance_m=2.0),),
        paired=(PHONE,),
        meeting_id="m-1",
    )
    actions = RecordingActions()
    for entry in _actionable(build_menu(state)):
        assert entry.action is not None
        if entry.action == Action("set_meeting"):
            continue  # the tray asks for the meeting first (tests/os/test_tray_xvfb.py)
        await dispatch_action(entry.action, actions)
    assert actions.calls == [
        ("set_meeting", None),
        ("join_room", "room-a"),
        ("audio_on", "phone-1"),
        ("unpair", "phone-1"),
        ("connect_phone", "phone-2"),
        ("lock_sync", True),
        ("quit", None),
    ]
    for action in (
        Action("confirm_pairing", ("p",)),
        Action("decline_pairing", ("p",)),
        Action("audio_off", ("p",)),
        Action("set_meeting", (" weekly ",)),
    ):
        await dispatch_action(action, actions)
    assert actions.calls[-4:] == [
        ("confirm_pairing", "p"),
        ("decline_pairing", "p"),
        ("audio_off", "p"),
        ("set_meeting", "weekly"),
    ]


@pytest.mark.parametrize(
    "action",
    [
        Action("join_room"),
        Action("lock_sync", ("yes",)),
        Action("quit", ("now",)),
        Action("unpair", (True,)),
        Action("set_meeting"),
        Action("set_meeting", ("  ",)),
        Action("leave_meeting", ("x",)),
        Action("nonsense", ("x",)),  # type: ignore[arg-type]
    ],
)
async def test_malformed_actions_are_refused(action: Action) -> None:
    actions = RecordingActions()
    with pytest.raises(ValueError, match="malformed tray action"):
        await dispatch_action(action, actions)
    assert actions.calls == []
