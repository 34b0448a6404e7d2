"""A tray process for the Xvfb test: shows the real tray and reports what reaches TrayActions.

Protocol on stdout (one line each): ``shown``; ``{"call": name, "arg": value}`` for every
TrayActions call; ``refused <label>`` when asked to invoke a disabled row; ``stopped``.
Exit code 3 with ``unavailable: <why>`` when no tray can be shown here.
Commands on stdin: ``invoke <label>``, ``disconnect``, ``pairing`` (a pairing code to
compare: the tray notifies it), ``stop``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

import structlog

from client.tray.icon import Tray, TrayUnavailable, asyncio_action_sink
from client.views import NearbyRoom, PairedPhone, PairingCode, PendingPairing, TrayState

STATE = TrayState(
    relay_connected=True,
    rooms=(NearbyRoom(room_id="room-a", name="Fjord", distance_m=1.5),),
    paired=(PairedPhone(phone_id="phone-1", name="Desk phone"),),
    meeting_id="m-1",
)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class PrintingActions:
    """TrayActions that report each call on stdout."""

    async def _report(self, name: str, arg: object) -> None:
        _say(json.dumps({"call": name, "arg": arg}))

    async def join_room(self, room_id: str) -> None:
        await self._report("join_room", room_id)

    async def connect_phone(self, phone_id: str) -> None:
        await self._report("connect_phone", phone_id)

    async def confirm_pairing(self, phone_id: str) -> None:
        await self._report("confirm_pairing", phone_id)

    async def decline_pairing(self, phone_id: str) -> None:
        await self._report("decline_pairing", phone_id)

    async def audio_on(self, phone_id: str) -> None:
        await self._report("audio_on", phone_id)

    async def audio_off(self, phone_id: str) -> None:
        await self._report("audio_off", phone_id)

    async def lock_sync(self, enabled: bool) -> None:
        await self._report("lock_sync", enabled)

    async def unpair(self, phone_id: str) -> None:
        await self._report("unpair", phone_id)

    async def set_meeting(self, meeting_id: str | None) -> None:
        await self._report("set_meeting", meeting_id)

    async def quit(self) -> None:
        await self._report("quit", None)


def _commands(tray: Tray) -> None:
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "invoke":
            try:
                tray.invoke(rest)
            except (ValueError, KeyError):
                _say(f"refused {rest}")
        elif command == "disconnect":
            tray.update(STATE.model_copy(update={"relay_connected": False}))
            _say("updated")
        elif command == "pairing":
            pending = PendingPairing(
                phone_id="phone-2", name="Spare phone", needs_my_confirmation=True
            )
            code = PairingCode(request_id="r-1", phone_name="Spare phone", code="428113")
            tray.update(STATE.model_copy(update={"pending": pending, "pairing_code": code}))
            _say("updated")
        elif command == "stop":
            break
    tray.stop()


def main() -> int:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        tray = Tray(asyncio_action_sink(loop, PrintingActions()), state=STATE)
    except TrayUnavailable as exc:
        _say(f"unavailable: {exc}")
        return 3

    def setup(tray: Tray) -> None:
        _say("shown")
        _commands(tray)

    tray.run(setup)
    _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
