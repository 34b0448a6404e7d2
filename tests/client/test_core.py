"""The laptop client's decisions on the pure core: explicit inputs, explicit time, no I/O.

Each test plays the relay (answering the core's :class:`~client.core.Send` effects and
pushing events), the radio and the screen lock, and the user (commands), and reads the
effects and views that come out. The same core runs over a real relay, the simulated
air and logind in ``test_daemon.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from client import core as c
from client import operations as op
from client.config import ClientConfig, ScanSettings
from client.views import JoinOutcome, PairOutcome, PairStarted
from hw.scanner import AdvertLost, RawAdvert
from relay.protocol import wire
from relay.protocol.frame import TEST_COMPANY_ID, Frame, encode_frame

T0 = 1000.0
INTERVAL = 0.5
PHONE, ROOM, SPEAKER = "d_phone", "d_room", "d_speaker"
EIDS = {PHONE: b"\x01" * 8, ROOM: b"\x02" * 8, SPEAKER: b"\x03" * 8}
RSSI = {PHONE: -55, ROOM: -75, SPEAKER: -65}
NAMES = {PHONE: "Alice's desk phone", ROOM: "Room 4.01", SPEAKER: "Kitchen speakerphone"}


def _config(**overrides: Any) -> ClientConfig:
    fields: dict[str, Any] = {
        "relay_url": "ws://relay.test/",
        "laptop_id": "laptop-1",
        "laptop_name": "Alice's laptop",
        "scan": ScanSettings(report_interval_s=INTERVAL),
    }
    return ClientConfig.model_validate({**fields, **overrides})


def _core(**kwargs: Any) -> c.ClientCore:
    core = c.ClientCore(_config(**kwargs.pop("config", {})), **kwargs)
    core.start(T0)
    return core


def _sends(effects: list[c.Effect], kind: type[wire.Request] | None = None) -> list[c.Send]:
    return [
        e for e in effects if isinstance(e, c.Send) and (kind is None or type(e.request) is kind)
    ]


def _send(effects: list[c.Effect], kind: type[wire.Request]) -> c.Send:
    (send,) = _sends(effects, kind)
    return send


def _answer(effects: list[c.Effect], token: int) -> object:
    (answer,) = [e.answer for e in effects if isinstance(e, c.Answer) and e.token == token]
    return answer


def _refusal(effects: list[c.Effect], token: int) -> c.Refusal:
    answer = _answer(effects, token)
    assert isinstance(answer, c.Refusal), answer
    return answer


def _pairing(phone_id: str = PHONE) -> wire.PairingInfo:
    return wire.PairingInfo(
        laptop_id="laptop-1",
        laptop_name="Alice's laptop",
        phone_id=phone_id,
        phone_name=NAMES[phone_id],
        created_at=T0,
    )


def _welcome(handoffs: list[str] | None = None) -> wire.Welcome:
    principal = wire.PrincipalInfo(
        role="laptop", tenant_id="t-1", user_id="u-alice", laptop_id="laptop-1"
    )
    return wire.Welcome(principal=principal, server_time=T0, handoffs=handoffs or [])


def _connect(
    core: c.ClientCore, now: float, pairings: list[wire.PairingInfo] | None = None, **kw: Any
) -> list[c.Effect]:
    """Connect and answer the pairings request the core sends first; the effects after."""
    refresh = _send(core.on_connected(_welcome(**kw), now), wire.PairingsList)
    return core.on_reply(refresh.ticket, wire.PairingsResult(pairings=pairings or []), now)


def _advert(device_id: str, t: float, rssi: int | None = None) -> RawAdvert:
    frame = Frame(eid=EIDS[device_id], tx_power=-59, rotation_exponent=10)
    return RawAdvert(
        address=f"AA:00:00:00:00:0{list(EIDS).index(device_id)}",
        manufacturer_data={TEST_COMPANY_ID: encode_frame(frame)},
        rssi=RSSI[device_id] if rssi is None else rssi,
        tx_power=None,
        local_name=None,
        monotonic=t,
        wall=t,
    )


def _descriptor(device_id: str) -> wire.DeviceDescriptor:
    kind, mode, own = {
        PHONE: ("desk_phone", "personal", True),
        ROOM: ("room_system", "meeting_room", False),
        SPEAKER: ("conference_phone", "common_area", False),
    }[device_id]
    return wire.DeviceDescriptor(
        device_id=device_id,
        eid=EIDS[device_id].hex(),
        name=NAMES[device_id],
        kind=kind,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        location="floor 4",
        capabilities=[],
        own=own,
        rssi=RSSI[device_id],
    )


def _hear(core: c.ClientCore, start: float, seconds: float, devices: list[str]) -> float:
    """Every device advertises ten times a second; the relay resolves what is reported."""
    t = start
    while t < start + seconds:
        for device_id in devices:
            for send in _sends(core.on_scan(_advert(device_id, t), t), wire.SightingsReport):
                heard = {s.eid for s in send.request.sightings}  # type: ignore[attr-defined]
                devices_known = [_descriptor(d) for d in devices if EIDS[d].hex() in heard]
                core.on_reply(send.ticket, wire.SightingsResult(devices=devices_known), t)
        t = round(t + 0.1, 3)
    return t


def _nearby_core(
    devices: tuple[str, ...] = (PHONE, SPEAKER, ROOM), **kwargs: Any
) -> tuple[c.ClientCore, float]:
    core = _core(**kwargs)
    _connect(core, T0)
    return core, _hear(core, T0, 3.0, list(devices))


# --- hearing and naming ---------------------------------------------------------------------


def test_what_is_heard_is_reported_each_interval_and_named_nearest_first_once_resolved() -> None:
    core = _core()
    _connect(core, T0)
    assert core.next_deadline() == T0 + INTERVAL
    assert _sends(core.on_scan(_advert(ROOM, T0 + 0.1), T0 + 0.1)) == []
    effects = core.on_scan(_advert(PHONE, T0 + 0.2), T0 + 0.2)
    assert _sends(effects) == []
    report = _send(core.tick(T0 + INTERVAL), wire.SightingsReport)
    sightings = report.request.sightings  # type: ignore[attr-defined]
    assert {s.eid for s in sightings} == {EIDS[PHONE].hex(), EIDS[ROOM].hex()}
    assert core.tick(T0 + 2 * INTERVAL) == []  # one report at a time: the first is unanswered
    devices = [_descriptor(PHONE), _descriptor(ROOM)]
    core.on_reply(report.ticket, wire.SightingsResult(devices=devices), T0 + 0.6)
    assert core.reports_sent == 1 and core.adverts_heard == 2
    assert core.next_deadline() == T0 + 0.6 + INTERVAL  # an interval after the reply
    _hear(core, T0 + 0.7, 2.0, [PHONE, ROOM])
    entries = core.nearby_entries(T0 + 2.7)
    assert [e.name for e in entries] == ["Alice's desk phone", "Room 4.01"]
    phone, room = entries
    assert phone.own and phone.connectable and not phone.paired
    assert room.kind == "room_system" and not room.connectable
    assert phone.distance_m < room.distance_m and phone.age_s <= 0.2


def test_nothing_is_reported_while_the_relay_is_unreachable() -> None:
    core = _core()
    core.on_scan(_advert(PHONE, T0 + 0.1), T0 + 0.1)
    assert _sends(core.tick(T0 + INTERVAL)) == []
    _connect(core, T0 + 0.7)
    assert _send(core.tick(T0 + 2 * INTERVAL), wire.SightingsReport)


def test_a_device_the_radio_stack_lost_is_no_longer_nearby() -> None:
    core, t = _nearby_core((PHONE,))
    core.on_scan_started("passive", reports_every_advert=False, now=t)
    assert [n.device_id for n in core.nearby(t)] == [PHONE]
    core.on_scan(AdvertLost(_advert(PHONE, t).address, t, t), t)
    assert core.nearby(t + 0.1) == []


def test_adverts_of_other_companies_are_not_counted() -> None:
    core = _core()
    advert = _advert(PHONE, T0)
    other = RawAdvert(advert.address, {0x004C: b"\x02\x15"}, -50, None, None, T0, T0)
    core.on_scan(other, T0)
    assert core.adverts_heard == 0


# --- connecting my phone --------------------------------------------------------------------


def test_connect_asks_the_relay_and_answers_with_the_code() -> None:
    core, t = _nearby_core()
    effects = core.on_command(1, op.Connect(), t)
    request = _send(effects, wire.PairRequest)
    assert request.request.phone_id == PHONE  # type: ignore[attr-defined]
    assert not [e for e in effects if isinstance(e, c.Answer)]  # not before the relay replies
    result = wire.PairRequestResult(request_id="pr-1", code="123456", expires_at=T0 + 120)
    started = _answer(core.on_reply(request.ticket, result, t), 1)
    assert started == PairStarted(
        request_id="pr-1",
        code="123456",
        phone_id=PHONE,
        phone_name="Alice's desk phone",
        expires_at=T0 + 120,
    )
    tray = core.tray_state(t)
    assert tray.pending is not None and tray.pending.needs_my_confirmation
    assert tray.pairing_code is not None and tray.pairing_code.code == "123456"


def _prompt(request_id: str = "pr-1", code: str = "123456") -> wire.PairPrompt:
    return wire.PairPrompt(
        request_id=request_id,
        code=code,
        laptop_id="laptop-1",
        laptop_name="Alice's laptop",
        phone_id=PHONE,
        phone_name="Alice's desk phone (relay's name)",
        user_name="alice",
        expires_at=T0 + 120,
    )


def test_a_pair_prompt_that_comes_before_the_reply_to_the_request_is_the_same_request() -> None:
    core, t = _nearby_core()
    request = _send(core.on_command(1, op.Connect(phone="Alice's desk phone"), t), wire.PairRequest)
    core.on_relay_event(_prompt(), t)
    assert core.pending is not None and core.pending.phone_name.endswith("(relay's name)")
    result = wire.PairRequestResult(request_id="pr-1", code="123456", expires_at=T0 + 120)
    started = _answer(core.on_reply(request.ticket, result, t), 1)
    assert isinstance(started, PairStarted) and started.request_id == "pr-1"
    assert started.phone_name == "Alice's desk phone (relay's name)"
    assert core.pending.request_id == "pr-1" and core.pending.code == "123456"


def test_my_confirmation_survives_the_prompt_that_follows_it() -> None:
    core, t = _nearby_core()
    request = _send(core.on_command(1, op.Connect(), t), wire.PairRequest)
    result = wire.PairRequestResult(request_id="pr-1", code="123456", expires_at=T0 + 120)
    core.on_reply(request.ticket, result, t)
    confirm = _send(core.on_command(2, op.Confirm(), t), wire.PairConfirm)
    assert confirm.request.request_id == "pr-1"  # type: ignore[attr-defined]
    answer = _answer(core.on_reply(confirm.ticket, wire.PairConfirmResult(state="x"), t), 2)
    assert answer == op.Confirm.read_answer({"request_id": "pr-1", "state": "x"})
    core.on_relay_event(_prompt(), t)  # the relay re-sends the prompt (a reconnect)
    assert core.pending is not None and core.pending.confirmed_by_me
    assert core.tray_state(t).pending.needs_my_confirmation is False  # type: ignore[union-attr]


def test_a_pairing_completes_with_the_phones_event_and_a_waiting_command_is_answered() -> None:
    core, t = _nearby_core()
    request = _send(core.on_command(1, op.Connect(), t), wire.PairRequest)
    result = wire.PairRequestResult(request_id="pr-1", code="123456", expires_at=T0 + 120)
    core.on_reply(request.ticket, result, t)
    assert core.on_command(2, op.WaitPair(request_id="pr-1", timeout=30), t) == []
    assert core.next_deadline() == min(t + 30, core.next_deadline() or 0)
    effects = core.on_relay_event(wire.PairCompleted(request_id="pr-1", pairing=_pairing()), t + 1)
    assert _answer(effects, 2) == PairOutcome(
        request_id="pr-1", outcome="paired", pairing=_pairing()
    )
    assert list(core.pairings) == [PHONE] and core.pending is None
    # Asking again answers at once; connecting again says it is paired already.
    assert _answer(core.on_command(3, op.WaitPair(request_id="pr-1"), t + 2), 3) == PairOutcome(
        request_id="pr-1", outcome="paired", pairing=_pairing()
    )
    for phone in (None, "alice's desk phone"):
        refusal = _refusal(core.on_command(4, op.Connect(phone=phone), t + 2), 4)
        assert refusal.code == "already_paired" and "Alice's desk phone" in refusal.message


def test_a_wait_for_a_pairing_that_does_not_come_ends_pending_at_its_deadline() -> None:
    core = _core()
    assert core.on_command(1, op.WaitPair(request_id="pr-9", timeout=5), T0) == []
    assert core.tick(T0 + 4.9) == []
    answer = _answer(core.tick(T0 + 5), 1)
    assert answer == PairOutcome(request_id="pr-9", outcome="pending")


def test_declining_ends_the_pending_request_and_is_remembered() -> None:
    core, t = _nearby_core()
    core.on_relay_event(_prompt(), t)
    confirm = _send(core.on_command(1, op.Confirm(accept=False), t), wire.PairConfirm)
    core.on_reply(confirm.ticket, wire.PairConfirmResult(state="declined"), t)
    assert core.pending is None
    answer = _answer(core.on_command(2, op.WaitPair(request_id="pr-1"), t), 2)
    assert answer == PairOutcome(request_id="pr-1", outcome="declined")


def test_connect_refuses_what_cannot_be_connected_without_asking_the_relay() -> None:
    core, t = _nearby_core((SPEAKER, ROOM))
    refusal = _refusal(core.on_command(1, op.Connect(), t), 1)
    assert refusal.code == "no_phone"
    effects = core.on_command(2, op.Connect(phone="kitchen speakerphone"), t)
    refusal = _refusal(effects, 2)
    assert (refusal.code, refusal.source) == ("not_connectable", "client")
    assert "another account's or a shared conference phone" in refusal.message
    assert _sends(effects) == []
    assert _refusal(core.on_command(3, op.Confirm(), t), 3).code == "no_pending"


def test_a_prompt_for_another_laptop_of_mine_is_not_mine_to_confirm() -> None:
    core = _core()
    core.on_relay_event(_prompt().model_copy(update={"laptop_id": "laptop-2"}), T0)
    assert core.pending is None


def test_commands_that_need_the_relay_are_refused_while_it_is_unreachable() -> None:
    core = _core()
    core.on_connect_failed("cannot reach the relay at ws://relay.test/: refused", T0)
    refusal = _refusal(core.on_command(1, op.Connect(phone="d_any"), T0), 1)
    assert refusal.code == "relay_unreachable" and refusal.source == "client"
    assert "cannot reach the relay" in refusal.message
    assert core.status(T0).relay.connected is False
    assert _answer(core.on_command(2, op.ListPairings(), T0), 2) == []


def test_the_relays_refusal_and_a_lost_reply_are_told_apart() -> None:
    core, t = _nearby_core()
    first = _send(core.on_command(1, op.Connect(), t), wire.PairRequest)
    refused = c.RelayRefused(wire.ErrorCode.POLICY_DENIED, "AllowBetterTogether is Disabled")
    refusal = _refusal(core.on_reply(first.ticket, refused, t), 1)
    assert (refusal.code, refusal.source) == ("policy_denied", "relay")
    assert "Disabled" in refusal.message
    second = _send(core.on_command(2, op.Connect(), t), wire.PairRequest)
    assert _refusal(core.on_reply(second.ticket, c.Lost("timeout"), t), 2).code == "timeout"
    third = _send(core.on_command(3, op.Connect(), t), wire.PairRequest)
    closed = _refusal(core.on_reply(third.ticket, c.Lost("closed"), t), 3)
    assert closed.code == "relay_unreachable" and "closed before it answered" in closed.message


def test_unpair_asks_the_relay_then_forgets_the_pairing() -> None:
    core = _core()
    _connect(core, T0, [_pairing()])
    assert _refusal(core.on_command(1, op.Unpair(phone="Bob's phone"), T0), 1).code == "not_paired"
    remove = _send(core.on_command(2, op.Unpair(phone="Alice's desk phone"), T0), wire.PairRemove)
    assert remove.request.peer_id == PHONE  # type: ignore[attr-defined]
    answer = _answer(core.on_reply(remove.ticket, wire.Done(), T0), 2)
    assert op.Unpair.dump_answer(answer) == {"phone_id": PHONE, "paired": False}
    assert core.pairings == {}


# --- the screen lock --------------------------------------------------------------------------


def _paired_core(**kwargs: Any) -> c.ClientCore:
    core = _core(**kwargs)
    _connect(core, T0, [_pairing()])
    core.on_lock_watch_started("session 2 (logind)", T0)
    return core


def test_lock_changes_go_to_the_relay_but_not_the_state_read_at_start() -> None:
    core = _paired_core()
    assert _sends(core.on_lock(False, initial=True, now=T0)) == []
    lock = _send(core.on_lock(True, initial=False, now=T0 + 1), wire.LockSet)
    assert lock.request.state == "locked"  # type: ignore[attr-defined]
    assert _sends(core.on_lock(True, initial=False, now=T0 + 1.1)) == []  # a repeat
    unlock_first = core.on_lock(False, initial=False, now=T0 + 2)
    assert _sends(unlock_first) == []  # one report in flight at a time
    result = wire.LockSetResult(state="locked", phones=[])
    after = core.on_reply(lock.ticket, result, T0 + 2.1)
    assert _send(after, wire.LockSet).request.state == "unlocked"  # type: ignore[attr-defined]
    assert core.reporter.last_confirmed == "locked"


def test_a_lock_report_lost_with_the_connection_is_sent_again_after_the_reconnect() -> None:
    core = _paired_core()
    core.on_lock(False, initial=True, now=T0)
    effects = core.on_lock(True, initial=False, now=T0 + 1)
    assert c.SaveUnsentLock("locked") in effects  # kept on disk until the relay confirms it
    lock = _send(effects, wire.LockSet)
    core.on_disconnected(1006, "", T0 + 1.1)
    assert core.on_reply(lock.ticket, c.Lost("closed"), T0 + 1.1) == []
    assert core.reporter.pending
    assert "closed the connection (1006)" in (core.relay_error or "")
    again = _send(_connect(core, T0 + 5, [_pairing()]), wire.LockSet)
    assert again.request.state == "locked"  # type: ignore[attr-defined]
    effects = core.on_reply(again.ticket, wire.LockSetResult(state="locked", phones=[]), T0 + 5)
    assert c.SaveUnsentLock(None) in effects


def test_a_lock_report_whose_reply_timed_out_is_sent_again_a_second_later() -> None:
    core = _paired_core()
    core.on_lock(False, initial=True, now=T0)
    lock = _send(core.on_lock(True, initial=False, now=T0 + 1), wire.LockSet)
    assert core.on_reply(lock.ticket, c.Lost("timeout"), T0 + 11) == []
    assert _sends(core.on_lock(True, initial=False, now=T0 + 11.5), wire.LockSet) == []
    assert core.next_deadline() == T0 + 11 + c.LOCK_RETRY_S
    assert _send(core.tick(T0 + 12), wire.LockSet).request.state == "locked"  # type: ignore[attr-defined]


def test_a_not_paired_refusal_forgets_the_pairings_and_drops_the_report() -> None:
    core = _paired_core()
    core.on_lock(False, initial=True, now=T0)
    lock = _send(core.on_lock(True, initial=False, now=T0 + 1), wire.LockSet)
    refused = c.RelayRefused(wire.ErrorCode.NOT_PAIRED, "not paired")
    assert core.on_reply(lock.ticket, refused, T0 + 1) == [c.SaveUnsentLock(None)]
    assert core.pairings == {} and core.status(T0).lock.last_error == "not paired"
    assert _sends(core.on_lock(False, initial=False, now=T0 + 2)) == []


def test_lock_sync_off_is_saved_and_sends_nothing() -> None:
    core = _paired_core()
    core.on_lock(False, initial=True, now=T0)
    effects = core.on_command(1, op.SetLockSync(enabled=False), T0)
    assert c.SaveConfig() in effects and core.config.lock_sync is False
    assert op.SetLockSync.dump_answer(_answer(effects, 1)) == {"lock_sync": False}
    assert _sends(core.on_lock(True, initial=False, now=T0 + 1)) == []
    assert core.locked is True and core.reporter.last_confirmed is None


def test_a_lock_the_last_run_could_not_send_goes_out_once_pairings_are_known() -> None:
    core = _core(unsent_lock="locked")
    effects = core.on_connected(_welcome(), T0)
    refresh = _send(effects, wire.PairingsList)
    assert _sends(effects, wire.LockSet) == []  # not before the pairings are known
    after = core.on_reply(refresh.ticket, wire.PairingsResult(pairings=[_pairing()]), T0)
    assert _send(after, wire.LockSet).request.state == "locked"  # type: ignore[attr-defined]


# --- audio and meetings -----------------------------------------------------------------------


def test_audio_on_answers_when_the_phone_takes_over() -> None:
    core = _paired_core()
    assert _refusal(core.on_command(1, op.AudioOn(), T0), 1).code == "no_meeting"
    effects = core.on_command(2, op.AudioOn(meeting="m-1", wait=5), T0)
    assert c.SaveMeeting("m-1") in effects  # the meeting named becomes the current one
    select = _send(effects, wire.AudioSelect)
    assert core.on_reply(select.ticket, wire.AudioSelectResult(handoff_id="h-1"), T0) == []
    assert core.tray_state(T0).audio_phone_id == PHONE
    active = wire.AudioState(handoff_id="h-1", phone_id=PHONE, state="active")
    answer = _answer(core.on_relay_event(active, T0 + 1), 2)
    assert op.AudioOn.dump_answer(answer) == {
        "handoff_id": "h-1",
        "phone_id": PHONE,
        "meeting_id": "m-1",
        "state": "active",
        "reason": "",
    }


def test_audio_on_is_refused_when_the_phone_cannot_take_over() -> None:
    core = _paired_core()
    select = _send(core.on_command(1, op.AudioOn(meeting="m-1"), T0), wire.AudioSelect)
    core.on_reply(select.ticket, wire.AudioSelectResult(handoff_id="h-1"), T0)
    failed = wire.AudioState(handoff_id="h-1", phone_id=PHONE, state="failed", reason="no sink")
    refusal = _refusal(core.on_relay_event(failed, T0 + 1), 1)
    assert refusal.code == "audio_failed" and "no sink" in refusal.message


def test_audio_on_without_waiting_answers_pending_at_once() -> None:
    core = _paired_core(meeting_id="m-1")
    select = _send(core.on_command(1, op.AudioOn(wait=0), T0), wire.AudioSelect)
    answer = _answer(core.on_reply(select.ticket, wire.AudioSelectResult(handoff_id="h-1"), T0), 1)
    assert getattr(answer, "state", None) == "pending"


def _active_handoff(core: c.ClientCore) -> None:
    select = _send(core.on_command(90, op.AudioOn(meeting="m-1", wait=0), T0), wire.AudioSelect)
    core.on_reply(select.ticket, wire.AudioSelectResult(handoff_id="h-1"), T0)
    core.on_relay_event(wire.AudioState(handoff_id="h-1", phone_id=PHONE, state="active"), T0)


def test_audio_off_is_released_when_the_phone_says_so_or_at_the_deadline() -> None:
    core = _paired_core()
    assert _refusal(core.on_command(1, op.AudioOff(), T0), 1).code == "no_audio"
    _active_handoff(core)
    release = _send(core.on_command(2, op.AudioOff(wait=3), T0), wire.AudioRelease)
    assert core.on_reply(release.ticket, wire.Done(), T0) == []
    answer = _answer(core.tick(T0 + 3), 2)
    assert getattr(answer, "state", None) == "released"
    assert core.tray_state(T0 + 3).audio_phone_id is None


def test_a_hand_off_the_relay_forgot_is_shown_released_after_a_reconnect() -> None:
    core = _paired_core()
    _active_handoff(core)
    core.on_disconnected(1001, "going away", T0 + 1)
    _connect(core, T0 + 2, [_pairing()], handoffs=[])
    assert core.tray_state(T0 + 2).audio_phone_id is None
    assert _refusal(core.on_command(1, op.AudioOff(), T0 + 2), 1).code == "no_audio"


def test_unpairing_from_the_phone_ends_its_hand_off() -> None:
    core = _paired_core()
    _active_handoff(core)
    core.on_relay_event(wire.PairRemoved(laptop_id="laptop-1", phone_id=PHONE), T0 + 1)
    assert core.pairings == {} and core.handoffs["h-1"].reason == "unpaired"


def test_the_meeting_is_kept_and_cleared() -> None:
    core = _core()
    effects = core.on_command(1, op.SetMeeting(meeting="weekly"), T0)
    assert c.SaveMeeting("weekly") in effects
    assert op.SetMeeting.dump_answer(_answer(effects, 1)) == {"meeting_id": "weekly"}
    assert c.SaveMeeting(None) in core.on_command(2, op.SetMeeting(), T0)


def test_a_meeting_that_could_not_be_saved_is_saved_again_with_the_next_input() -> None:
    core = _core()
    core.on_command(1, op.SetMeeting(meeting="weekly"), T0)
    core.not_saved(c.SaveMeeting("weekly"))
    assert c.SaveMeeting("weekly") in core.tick(T0 + 1)
    assert core.tick(T0 + 2) == []


# --- joining a room ---------------------------------------------------------------------------


def test_a_nearby_room_named_by_a_word_joins_and_a_room_not_nearby_is_not_asked() -> None:
    core, t = _nearby_core()
    core.on_command(1, op.SetMeeting(meeting="m-1"), t)
    effects = core.on_command(2, op.Join(room="4.01"), t)
    join = _send(effects, wire.JoinRequest)
    assert join.request.room_id == ROOM and join.request.meeting_id == "m-1"  # type: ignore[attr-defined]
    result = wire.JoinRequestResult(join_id="j-1", outcome="accepted")
    answer = _answer(core.on_reply(join.ticket, result, t), 2)
    assert op.Join.dump_answer(answer) == {
        "join_id": "j-1",
        "room_id": ROOM,
        "meeting_id": "m-1",
        "outcome": "accepted",
    }
    assert core.tray_state(t).last_join == JoinOutcome(
        join_id="j-1", room_name="Room 4.01", outcome="accepted", meeting_id="m-1"
    )
    far = _refusal(core.on_command(3, op.Join(room="Borealis"), t), 3)
    assert far.code == "no_room" and "'Room 4.01'" in far.message
    assert _send(core.on_command(4, op.Join(room="d_elsewhere"), t), wire.JoinRequest)


def test_a_prompted_room_answers_the_waiting_join_later() -> None:
    core, t = _nearby_core()
    join = _send(core.on_command(1, op.Join(meeting="m-2", wait=30), t), wire.JoinRequest)
    result = wire.JoinRequestResult(join_id="j-2", outcome="pending")
    assert core.on_reply(join.ticket, result, t) == []
    answered = wire.JoinResult(join_id="j-2", room_id=ROOM, outcome="declined")
    answer = _answer(core.on_relay_event(answered, t + 4), 1)
    assert getattr(answer, "outcome", None) == "declined"
    assert core.tray_state(t).last_join is not None
    assert core.tray_state(t).last_join.outcome == "declined"  # type: ignore[union-attr]


def test_two_rooms_with_the_same_name_need_the_id() -> None:
    with pytest.raises(c.Refusal) as ambiguous:
        c.match_device([("r1", "Fjord"), ("r2", "fjord")], "FJORD")
    assert ambiguous.value.code == "ambiguous"
    assert c.match_device([("r1", "Room Borealis")], "borealis", words=True) == "r1"
    assert c.match_device([("r1", "Room Borealis")], "borealis") is None


# --- the connection ---------------------------------------------------------------------------


def test_waiting_for_the_connection_is_answered_by_it_or_by_the_error_at_the_deadline() -> None:
    core = _core()
    assert core.on_command(1, op.WaitConnected(timeout=10), T0) == []
    assert core.on_command(2, op.WaitConnected(timeout=1), T0) == []
    core.on_connect_failed("the relay answered HTTP 401", T0 + 0.5)
    answer = _answer(core.tick(T0 + 1), 2)
    assert op.WaitConnected.dump_answer(answer) == {
        "connected": False,
        "error": "the relay answered HTTP 401",
    }
    effects = core.on_connected(_welcome(), T0 + 2)
    assert op.WaitConnected.dump_answer(_answer(effects, 1)) == {"connected": True, "error": None}
    status = core.status(T0 + 2).relay
    assert status.connected and status.user_id == "u-alice" and status.connections == 1


def test_being_replaced_by_another_client_with_my_laptop_id_is_said_so() -> None:
    core = _core()
    _connect(core, T0)
    core.on_disconnected(wire.CloseCode.REPLACED, "replaced", T0 + 1)
    assert core.relay_error == "another client with this laptop id connected to the relay"
    assert core.status(T0 + 1).relay.connected is False


def test_status_shows_the_lock_watch_scanning_and_pending_request() -> None:
    core, t = _nearby_core(lock_watch=False)
    core.on_relay_event(_prompt(), t)
    status = core.status(t)
    assert status.lock.watch == "off" and status.scan.nearby == 3
    assert status.pending is not None and status.pending.code == "123456"
    core.on_scan_failed("no Bluetooth adapter", t)
    assert core.status(t).scan.status == "unavailable: no Bluetooth adapter"
