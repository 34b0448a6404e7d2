"""The daemon's pure decisions: lock sequence, device state, prompts, login codes."""

from __future__ import annotations

import random

import pytest

from beacon import core as c
from beacon.memory import DaemonMemory
from beacon.status import DeviceStatus
from relay.protocol import wire
from relay.protocol.login_code import LOGIN_CODE_KEEP_S, normalize_login_code

T0 = 1_800_000_000.0


def _core(last_seq: int = 0, override: bool | None = None) -> c.BeaconCore:
    return c.BeaconCore(
        device_id="dev-1",
        organisation="Contoso",
        memory=DaemonMemory(device_id="dev-1", last_lock_seq=last_seq),
        rng=random.Random(1),
        auto_confirm_override=override,
    )


def _welcome(user_id: str | None = "u-1") -> wire.Welcome:
    principal = wire.PrincipalInfo(role="device", tenant_id="t", user_id=user_id,
                                   device_id="dev-1")
    return wire.Welcome(principal=principal, server_time=T0 + 100)


def _state(state: str = "signed_in", beaconing: bool = True,
           auto_confirm: bool = False) -> wire.DeviceStateEvent:
    return wire.DeviceStateEvent(state=state, organisation="Contoso",  # type: ignore[arg-type]
                                 user_name="alice" if state == "signed_in" else None,
                                 beaconing=beaconing, auto_confirm=auto_confirm)


def _kinds(actions: list[c.Action]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, c.Show | c.RunHook)]


def test_a_lock_command_at_or_below_the_last_applied_seq_is_acked_not_applied() -> None:
    core = _core(last_seq=5)
    for seq in (4, 5):
        assert core.on_event(wire.LockCommand(seq=seq, state="locked", laptop_id="l"), T0) == [
            c.AckLock(seq)
        ]
    actions = core.on_event(wire.LockCommand(seq=6, state="locked", laptop_id="l"), T0)
    assert actions == [c.ApplyLock(6, "locked", "l")]


def test_an_applied_lock_is_remembered_before_it_is_acknowledged() -> None:
    core = _core()
    (apply,) = core.on_event(wire.LockCommand(seq=1, state="locked", laptop_id="l"), T0)
    assert isinstance(apply, c.ApplyLock) and core.unapplied_lock == apply
    actions = core.lock_applied(apply, confirmed=True)
    assert _kinds(actions) == [c.Remember, c.AckLock]
    assert core.memory.last_lock_seq == 1 and core.unapplied_lock is None
    assert c.RunHook("on_lock", {"device_id": "dev-1", "seq": "1", "lock_state": "locked",
                                 "laptop_id": "l", "confirmed": "1"}) in actions


def test_a_failed_lock_stays_unapplied_and_unacknowledged() -> None:
    core = _core()
    (apply,) = core.on_event(wire.LockCommand(seq=1, state="locked", laptop_id="l"), T0)
    assert isinstance(apply, c.ApplyLock)
    assert _kinds(core.lock_failed(apply, "logind is gone")) == []
    assert core.unapplied_lock == apply and core.memory.last_lock_seq == 0


def test_device_state_switches_advertising_on_only_while_signed_in_and_allowed() -> None:
    core = _core()
    core.on_welcome(_welcome(), T0)
    assert c.Advertise(False) not in core.on_event(_state("waiting_for_sign_in"), T0)
    assert c.Advertise(True) in core.on_event(_state("signed_in"), T0)
    assert c.Advertise(True) not in core.on_event(_state("signed_in"), T0)  # no change
    assert c.Advertise(False) in core.on_event(_state("signed_in", beaconing=False), T0)
    assert c.Advertise(True) in core.on_event(_state("signed_in"), T0)
    assert c.Advertise(False) in core.on_event(_state("waiting_for_sign_in"), T0)


def test_without_device_state_the_welcome_decides_after_a_grace_period() -> None:
    core = _core()
    core.on_welcome(_welcome(user_id="u-1"), T0)
    assert core.tick(T0 + 0.5) == []
    assert c.Advertise(True) in core.tick(T0 + 1.5)
    assert core.status is not None and core.status.legacy

    core = _core()
    core.on_welcome(_welcome(user_id=None), T0)
    assert c.Advertise(True) not in core.tick(T0 + 1.5)


def test_the_last_status_is_remembered_so_a_restart_goes_on_beaconing() -> None:
    core = _core()
    core.on_welcome(_welcome(), T0)
    core.on_event(_state("signed_in"), T0)
    restarted = c.BeaconCore(device_id="dev-1", organisation="Contoso", memory=core.memory,
                             rng=random.Random(2))
    assert restarted.start() == [c.Advertise(True)]


def test_a_login_code_request_is_answered_with_a_fresh_valid_code() -> None:
    core = _core()
    core.on_welcome(_welcome(user_id=None), T0)
    core.on_event(_state("waiting_for_sign_in"), T0)
    actions = core.on_event(wire.LoginCodeRequest(request_id="lc-1"), T0)
    (report,) = [a for a in actions if isinstance(a, c.ReportLoginCode)]
    assert report.request_id == "lc-1" and normalize_login_code(report.code) is not None
    assert c.Show(f"login-code {report.code}") in actions
    assert core.snapshot(T0)["login_code"] == report.code
    core.on_event(_state("signed_in"), T0)
    assert core.snapshot(T0)["login_code"] is None


def test_a_second_login_code_request_gets_the_code_on_the_screen_until_it_is_old() -> None:
    core = _core()
    core.on_welcome(_welcome(user_id=None), T0)
    core.on_event(_state("waiting_for_sign_in"), T0)

    def asked(request_id: str, at: float) -> str:
        actions = core.on_event(wire.LoginCodeRequest(request_id=request_id), at)
        (report,) = [a for a in actions if isinstance(a, c.ReportLoginCode)]
        assert report.request_id == request_id
        return report.code

    first = asked("lc-1", T0)
    assert asked("lc-2", T0 + 1) == first
    assert asked("lc-3", T0 + LOGIN_CODE_KEEP_S - 1) == first
    assert asked("lc-4", T0 + LOGIN_CODE_KEEP_S) != first


def _pair_prompt(request_id: str = "pr-1", expires_at: float = T0 + 200) -> wire.PairPrompt:
    return wire.PairPrompt(request_id=request_id, code="123456", laptop_id="l",
                           laptop_name="alice's laptop", phone_id="dev-1", phone_name="phone",
                           user_name="alice", expires_at=expires_at)


@pytest.mark.parametrize(("relay_says", "override", "auto"), [
    (True, None, True), (False, None, False), (True, False, False), (False, True, True),
])
def test_auto_confirm_follows_the_relay_unless_configured(
    relay_says: bool, override: bool | None, auto: bool
) -> None:
    core = _core(override=override)
    core.on_welcome(_welcome(), T0)
    core.on_event(_state(auto_confirm=relay_says), T0)
    actions = core.on_event(_pair_prompt(), T0)
    assert (c.ConfirmPair("pr-1", True) in actions) is auto
    assert ("pr-1" in core.prompts) is not auto


def test_confirm_answers_the_only_prompt_or_asks_which_one() -> None:
    core = _core()
    core.on_welcome(_welcome(), T0)
    with pytest.raises(c.ControlError, match="nothing is waiting"):
        core.confirm(None, True, T0)
    core.on_event(_pair_prompt("pr-1"), T0)
    core.on_event(wire.JoinPrompt(join_id="jn-1", meeting_id="m", user_name="bob",
                                  expires_at=T0 + 200), T0)
    with pytest.raises(c.ControlError, match="several prompts"):
        core.confirm(None, True, T0)
    with pytest.raises(c.ControlError, match="no pending prompt 'pr-9'"):
        core.confirm("pr-9", True, T0)
    assert c.RespondJoin("jn-1", False) in core.confirm("jn-1", False, T0)
    assert c.ConfirmPair("pr-1", True) in core.confirm(None, True, T0)
    assert core.prompts == {}


def test_prompts_expire_on_the_relay_clock() -> None:
    core = _core()
    core.on_welcome(_welcome(), T0)  # the relay's clock is 100 s ahead of ours
    core.on_event(_pair_prompt(expires_at=T0 + 150), T0)
    core.tick(T0 + 40)
    assert "pr-1" in core.prompts
    core.tick(T0 + 60)
    assert core.prompts == {}


def test_losing_the_relay_gives_the_audio_back_without_acking() -> None:
    core = _core()
    take = c.TakeAudio("ho-1", "standup", "l")
    core.audio_taken(take, True, "ok")
    actions = core.on_disconnect("code=1006")
    assert c.ReleaseAudio("ho-1", "standup", "relay connection lost", ack=False) in actions
    assert core.handoff is None


def test_a_garbled_status_is_ignored() -> None:
    core = _core()
    assert core._device_state({"state": "dancing"}) == []
    assert core.status is None or isinstance(core.status, DeviceStatus)
