"""The pure rules that merge lock observations into one stream."""

from __future__ import annotations

import pytest

from hw.lock import LockSource, LockStateMerger


def test_confirmations_are_reported_once_whatever_their_source() -> None:
    merger = LockStateMerger(request_grace=2.0)
    assert merger.initial(False, LockSource.INITIAL, 0.0) is not None
    first = merger.confirmed(True, LockSource.LOGIND_LOCKED_HINT, 1.0)
    assert first is not None and first.locked and first.at == 1.0
    assert merger.confirmed(True, LockSource.GNOME_SCREENSAVER, 1.1) is None
    assert merger.confirmed(True, LockSource.LOGIND_LOCKED_HINT, 1.2) is None
    unlocked = merger.confirmed(False, LockSource.GNOME_SCREENSAVER, 5.0)
    assert unlocked is not None and not unlocked.locked


def test_request_is_reported_after_grace_only_if_nothing_confirmed_it() -> None:
    merger = LockStateMerger(request_grace=2.0)
    merger.initial(False, LockSource.INITIAL, 0.0)
    merger.requested(True, 10.0)
    assert merger.deadline() == 12.0
    assert merger.tick(11.9) is None
    event = merger.tick(12.0)
    assert event is not None and event.locked and event.source is LockSource.LOGIND_REQUEST
    assert merger.deadline() is None


def test_confirmation_within_grace_replaces_the_request() -> None:
    merger = LockStateMerger(request_grace=2.0)
    merger.initial(False, LockSource.INITIAL, 0.0)
    merger.requested(True, 10.0)
    assert merger.confirmed(True, LockSource.LOGIND_LOCKED_HINT, 10.5) is not None
    assert merger.deadline() is None
    assert merger.tick(13.0) is None


def test_requests_are_ignored_once_the_desktop_has_shown_it_confirms() -> None:
    merger = LockStateMerger(request_grace=2.0)
    merger.confirmed(False, LockSource.FREEDESKTOP_SCREENSAVER, 0.0)
    merger.requested(True, 1.0)
    assert merger.deadline() is None
    assert merger.locked is False


def test_requests_are_never_trusted_without_a_grace() -> None:
    merger = LockStateMerger(request_grace=None)
    merger.requested(True, 1.0)
    assert merger.deadline() is None


def test_request_for_the_current_state_is_dropped() -> None:
    merger = LockStateMerger(request_grace=1.0)
    merger.initial(True, LockSource.INITIAL, 0.0)
    merger.requested(True, 1.0)
    assert merger.deadline() is None


def test_unknown_initial_state_gives_no_event_and_first_confirmation_reports() -> None:
    merger = LockStateMerger()
    assert merger.initial(None, LockSource.INITIAL, 0.0) is None
    assert merger.locked is None
    event = merger.confirmed(False, LockSource.LOGIND_LOCKED_HINT, 1.0)
    assert event is not None and not event.locked


def test_negative_grace_is_rejected() -> None:
    with pytest.raises(ValueError, match="request_grace"):
        LockStateMerger(request_grace=-1)
