"""The demo's narrator: a skipped step is reported as skipped, never as a success."""

from __future__ import annotations

import json

import pytest

from btogether.demo import Narrator, Skipped, StepFailed


def test_a_skipped_step_is_reported_as_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    narrator = Narrator(json_lines=True)
    narrator.step("ran", lambda: "done")
    narrator.step("not here", lambda: Skipped("no PulseAudio here"))
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get("skipped", False) for r in records] == [False, True]
    assert records[1]["detail"] == "no PulseAudio here"
    human = Narrator(json_lines=False)
    human.step("not here", lambda: Skipped("no PulseAudio here"))
    assert " skipped (" in capsys.readouterr().out


def test_a_failed_step_raises_with_its_number_and_title() -> None:
    narrator = Narrator(json_lines=True)

    def broken() -> str:
        raise ValueError("nope")

    with pytest.raises(StepFailed, match=r"step 1 \(breaks\) failed: ValueError: nope"):
        narrator.step("breaks", broken)
