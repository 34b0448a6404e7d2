"""The laptop tray's menu, built from what the client knows (pure: no toolkit, no I/O).

:func:`build_menu` turns a :class:`~client.views.TrayState` (the client's view for the
tray) into :class:`MenuEntry` rows; each actionable row carries an :class:`Action` naming
a client command and its arguments, which the client carries out through the
:class:`TrayActions` interface (:func:`dispatch_action`). The tray (:mod:`client.tray.icon`)
only draws the rows; tests and other front ends call the builder.

Rooms and phones are shown in the order given: the client ranks them (nearest first).
Everything that needs the relay is greyed out while it is unreachable; setting the meeting
(the client's own state) and Quit never are. A paired phone is shown as paired, never as
"connected": the relay does not tell the laptop whether the phone is reachable.

:func:`notices` says what deserves a desktop notification between two states: a pairing
code to compare, a phone that got paired or a request that ended, a room's answer to a
join.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal, Protocol

from client.views import TrayState

ActionCommand = Literal[
    "join_room",
    "connect_phone",
    "confirm_pairing",
    "decline_pairing",
    "audio_on",
    "audio_off",
    "lock_sync",
    "unpair",
    "set_meeting",
    "leave_meeting",
    "quit",
]

MAX_ROOMS = 5
MAX_PHONES = 3
MAX_NAME = 40


@dataclass(frozen=True)
class Action:
    """A client command and its arguments, e.g. ``Action("join_room", ("room-1",))``."""

    command: ActionCommand
    args: tuple[str | bool, ...] = ()


@dataclass(frozen=True)
class Notice:
    """A desktop notification: a title and one or two sentences."""

    title: str
    message: str


@dataclass(frozen=True)
class MenuEntry:
    """One row: ``checked`` None is a plain item; ``separator`` rows have no label or action."""

    label: str
    action: Action | None = None
    enabled: bool = True
    checked: bool | None = None
    separator: bool = False


SEPARATOR = MenuEntry(label="", enabled=False, separator=True)


class TrayActions(Protocol):
    """What the client does for each menu action (one method per :data:`ActionCommand`)."""

    async def join_room(self, room_id: str) -> None: ...

    async def connect_phone(self, phone_id: str) -> None: ...

    async def confirm_pairing(self, phone_id: str) -> None: ...

    async def decline_pairing(self, phone_id: str) -> None: ...

    async def audio_on(self, phone_id: str) -> None: ...

    async def audio_off(self, phone_id: str) -> None: ...

    async def lock_sync(self, enabled: bool) -> None: ...

    async def unpair(self, phone_id: str) -> None: ...

    async def set_meeting(self, meeting_id: str | None) -> None: ...

    async def quit(self) -> None: ...


async def dispatch_action(action: Action, actions: TrayActions) -> None:
    """Carry out ``action`` through ``actions``; a malformed action raises ValueError."""
    command, args = action.command, action.args
    if command == "quit" and not args:
        await actions.quit()
        return
    if command == "leave_meeting" and not args:
        await actions.set_meeting(None)
        return
    if command == "lock_sync" and len(args) == 1 and isinstance(args[0], bool):
        await actions.lock_sync(args[0])
        return
    if len(args) != 1 or not isinstance(args[0], str):
        raise ValueError(f"malformed tray action {action!r}")
    target = args[0]
    if command == "join_room":
        await actions.join_room(target)
    elif command == "connect_phone":
        await actions.connect_phone(target)
    elif command == "confirm_pairing":
        await actions.confirm_pairing(target)
    elif command == "decline_pairing":
        await actions.decline_pairing(target)
    elif command == "audio_on":
        await actions.audio_on(target)
    elif command == "audio_off":
        await actions.audio_off(target)
    elif command == "unpair":
        await actions.unpair(target)
    elif command == "set_meeting" and target.strip():
        await actions.set_meeting(target.strip())
    else:
        raise ValueError(f"malformed tray action {action!r}")


def display_name(name: str) -> str:
    """A device name fit for a menu: no control characters, bounded length."""
    cleaned = "".join(
        " " if unicodedata.category(ch).startswith("C") else ch for ch in name
    ).strip()
    cleaned = " ".join(cleaned.split()) or "(unnamed)"
    return cleaned if len(cleaned) <= MAX_NAME else cleaned[: MAX_NAME - 1] + "…"


def format_distance(distance_m: float | None) -> str:
    if distance_m is None or distance_m != distance_m or distance_m < 0:
        return "distance unknown"
    if distance_m < 1.0:
        return "under 1 m"
    return f"{distance_m:.1f} m" if distance_m < 10 else f"{distance_m:.0f} m"


def build_menu(state: TrayState) -> list[MenuEntry]:
    """The tray menu for ``state`` (see the module docstring)."""
    online = state.relay_connected
    entries = [
        MenuEntry(
            "Connected to the relay" if online else "Relay unreachable, reconnecting…",
            enabled=False,
        ),
        MenuEntry(
            f"In meeting {display_name(state.meeting_id)}" if state.meeting_id else "No meeting",
            enabled=False,
        ),
        # Asks for the meeting (the tray's own prompt); the client's state, no relay needed.
        MenuEntry("Set meeting…", action=Action("set_meeting")),
        *([MenuEntry("Leave meeting", action=Action("leave_meeting"))] if state.meeting_id else []),
        SEPARATOR,
        *_room_entries(state),
        SEPARATOR,
        *_phone_entries(state),
        SEPARATOR,
        MenuEntry(
            "Lock my phone with this laptop",
            action=Action("lock_sync", (not state.lock_sync,)),
            enabled=online and bool(state.paired),
            checked=state.lock_sync,
        ),
        SEPARATOR,
        MenuEntry("Quit btogether", action=Action("quit")),
    ]
    return entries


def notices(before: TrayState, after: TrayState) -> list[Notice]:
    """What changed from ``before`` to ``after`` that the user should be told of."""
    out: list[Notice] = []
    code = after.pairing_code
    if code is not None and (before.pairing_code is None or before.pairing_code != code):
        out.append(
            Notice(
                f"Connect {display_name(code.phone_name)}?",
                f"Code {code.code}: check that the phone shows the same code, then confirm "
                "on both.",
            )
        )
    newly_paired = {p.phone_id for p in after.paired} - {p.phone_id for p in before.paired}
    for phone in after.paired:
        if phone.phone_id in newly_paired and before.pending is not None:
            out.append(
                Notice(
                    f"{display_name(phone.name)} connected",
                    "Your desk phone is paired with this laptop: it locks with it and can "
                    "take the meeting's audio.",
                )
            )
    ended = before.pending is not None and after.pending is None
    if ended and not newly_paired:
        out.append(
            Notice(
                f"{display_name(before.pending.name)} not connected",  # type: ignore[union-attr]
                "The pair request was declined or expired.",
            )
        )
    join = after.last_join
    if join is not None and join != before.last_join and join.outcome != "pending":
        room = display_name(join.room_name)
        meeting = display_name(join.meeting_id)
        message = {
            "accepted": f"{room} joined meeting {meeting}.",
            "declined": f"{room} declined to join meeting {meeting}.",
            "expired": f"{room} did not answer in time.",
        }.get(join.outcome, f"{room} did not join meeting {meeting} ({join.outcome}).")
        out.append(
            Notice("Room joined" if join.outcome == "accepted" else "Room not joined", message)
        )
    return out


def _room_entries(state: TrayState) -> list[MenuEntry]:
    if not state.rooms:
        return [MenuEntry("No rooms nearby", enabled=False)]
    can_join = state.relay_connected and state.meeting_id is not None
    header = (
        "Add a room to the meeting" if state.meeting_id else "Rooms nearby (join a meeting first)"
    )
    return [
        MenuEntry(header, enabled=False),
        *(
            MenuEntry(
                f"{display_name(room.name)} · {format_distance(room.distance_m)}",
                action=Action("join_room", (room.room_id,)),
                enabled=can_join,
            )
            for room in state.rooms[:MAX_ROOMS]
        ),
    ]


def _phone_entries(state: TrayState) -> list[MenuEntry]:
    online = state.relay_connected
    entries: list[MenuEntry] = []
    pending = state.pending
    if pending is not None:
        name = display_name(pending.name)
        if pending.needs_my_confirmation:
            entries += [
                MenuEntry(
                    f"Confirm connecting {name}",
                    action=Action("confirm_pairing", (pending.phone_id,)),
                    enabled=online,
                ),
                MenuEntry(
                    f"Decline {name}",
                    action=Action("decline_pairing", (pending.phone_id,)),
                    enabled=online,
                ),
            ]
        else:
            entries += [
                MenuEntry(f"Waiting for {name} to confirm…", enabled=False),
                MenuEntry(
                    f"Cancel connecting {name}",
                    action=Action("decline_pairing", (pending.phone_id,)),
                    enabled=online,
                ),
            ]
    for phone in state.paired:
        name = display_name(phone.name)
        using = state.audio_phone_id == phone.phone_id
        status = "paired" if phone.online else "paired, offline"
        if not online:
            status = "paired (relay unreachable)"
        entries += [
            MenuEntry(f"{name}: {status}", enabled=False),
            MenuEntry(
                f"Use {name} for audio",
                action=Action("audio_off" if using else "audio_on", (phone.phone_id,)),
                enabled=online and (phone.online or using),
                checked=using,
            ),
            MenuEntry(f"Unpair {name}", action=Action("unpair", (phone.phone_id,)), enabled=online),
        ]
    paired_ids = {p.phone_id for p in state.paired}
    pending_id = pending.phone_id if pending is not None else None
    offered = [
        p for p in state.phones if p.phone_id not in paired_ids and p.phone_id != pending_id
    ][:MAX_PHONES]
    for nearby in offered:
        entries.append(
            MenuEntry(
                f"Connect {display_name(nearby.name)} · {format_distance(nearby.distance_m)}",
                action=Action("connect_phone", (nearby.phone_id,)),
                enabled=online and pending is None,
            )
        )
    if not entries:
        entries.append(MenuEntry("No phone of yours nearby", enabled=False))
    return entries
