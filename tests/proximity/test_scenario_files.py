"""Scenario files are untrusted: every kind of mistake is named, with where it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from btogether.cli import main
from client.proximity.scenario import ScenarioError, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

GOOD = """
[radio]
path_loss_exponent = 2.0
noise_db = 4.0
advert_interval_ms = 100
seed = 3

[[room]]
name = "a"
x = 0
y = 0

[[room]]
name = "b"
x = 8
y = 0
tx_power = -65

[[wall]]
x1 = 4
y1 = -5
x2 = 4
y2 = 5
loss_db = 6

[[laptop]]
path = [{t = 0, x = 1, y = 0}, {t = 20, x = 1, y = 0}, {t = 25, x = 7, y = 0},
        {t = 60, x = 7, y = 0}]
room_at = [{t = 0, room = "a"}, {t = 22.5, room = "b"}]
"""


def test_a_good_scenario_is_read_with_defaults_filled_in() -> None:
    s = parse_scenario(GOOD)
    assert [r.name for r in s.rooms] == ["a", "b"]
    assert s.rooms[0].tx_power == -59
    assert s.rooms[1].tx_power == -65
    assert s.advert_interval_s == pytest.approx(0.1)
    assert s.position(22.5) == pytest.approx((4.0, 0.0))
    assert s.true_room(22.4) == "a"
    assert s.true_changes() == [(22.5, "b")]
    assert s.stationary_intervals() == [(0, 20), (25, 60)]
    assert s.radio.walls[0].loss_db == 6


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("seed = 3", "seed = 3\ncolour = 1", "radio.colour: Extra inputs are not permitted"),
        ("noise_db = 4.0", 'noise_db = "4"', "radio.noise_db: Input should be a valid number"),
        ("noise_db = 4.0", "noise_db = nan", "radio.noise_db: Input should be a finite number"),
        ("noise_db = 4.0", "noise_db = -1.0", "radio.noise_db: Input should be greater than"),
        ("advert_interval_ms = 100", "advert_interval_ms = 0", "radio.advert_interval_ms"),
        ("noise_db = 4.0\n", "", "radio.noise_db: Field required"),
        ("tx_power = -65", "tx_power = -65\nz = 1", "room[1].z: Extra inputs"),
        ('name = "b"', 'name = "a"', "room[1].name 'a' is already used by room[0]"),
        ('{t = 22.5, room = "b"}', '{t = 22.5, room = "c"}', "room_at[1].room 'c' is not a"),
        ("{t = 25, x = 7", "{t = 19, x = 7", "path[2].t = 19.0 must be later than path[1].t"),
        (
            'room_at = [{t = 0, room = "a"}',
            'room_at = [{t = 5, room = "a"}',
            "the true room must be known from the start",
        ),
        ("loss_db = 6", "loss_db = inf", "wall[0].loss_db: Input should be a finite number"),
        ("x = 8", "x = 8e300", "room[1].x: Input should be less than or equal to 100000"),
        (
            "{t = 20, x = 1, y = 0}, {t = 25, x = 7, y = 0},\n        {t = 60, x = 7, y = 0}",
            "",
            "laptop[0].path: List should have at least 2 items",
        ),
        ("[[laptop]]", "[[laptop]]\n[[laptop]]", "laptop: List should have at most 1 item"),
        ("x = 8", "x = = 8", "not valid TOML"),
    ],
)
def test_mistakes_are_named_with_their_place(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ScenarioError) as info:
        parse_scenario(GOOD.replace(old, new, 1), "floor.toml")
    assert str(info.value).startswith("floor.toml: ")
    assert expected in str(info.value)


def test_a_scenario_asking_for_too_much_work_is_refused() -> None:
    text = GOOD.replace("{t = 60, x = 7, y = 0}", "{t = 86000, x = 7, y = 0}")
    text = text.replace("advert_interval_ms = 100", "advert_interval_ms = 20")
    text += "".join(f'\n[[room]]\nname = "r{k}"\nx = {k}\ny = 5\n' for k in range(200))
    with pytest.raises(ScenarioError, match="adverts; the limit is"):
        parse_scenario(text)


def test_unreadable_files_are_scenario_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[radio]")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(bad)


def test_the_command_reports_a_bad_file_with_exit_code_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "floor.toml"
    path.write_text(GOOD.replace('room = "b"', 'room = "nowhere"'), encoding="utf-8")
    assert main(["sim", "score", str(path)]) == 2
    err = capsys.readouterr().err
    assert "floor.toml" in err and "'nowhere' is not a [[room]]" in err
    assert "Traceback" not in err


def test_score_prints_json_and_writes_a_trace_that_scores_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from client.proximity.scoring import score_trace

    path = tmp_path / "floor.toml"
    path.write_text(GOOD, encoding="utf-8")
    trace_file = tmp_path / "trace.jsonl"
    assert main(["sim", "score", str(path), "--json", "--trace", str(trace_file)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"accuracy", "switch_median_s", "switch_p95_s", "spurious_per_hour"}
    assert figures["accuracy"] > 0.95
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert lines[0] == {"t": 0, "top": None}
    assert all(set(line) == {"t", "top"} for line in lines)
    assert [line["top"] for line in lines[1:3]] == ["a", "b"]
    again = score_trace(load_scenario(path), [(line["t"], line["top"]) for line in lines])
    assert again.accuracy == pytest.approx(figures["accuracy"], abs=1e-3)


def test_score_prints_readable_figures_for_each_tracker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "floor.toml"
    path.write_text(GOOD, encoding="utf-8")
    for tracker in ("proximity", "naive", "strongest"):
        assert main(["sim", "score", str(path), "--tracker", tracker]) == 0
        out = capsys.readouterr().out
        assert f"tracker:            {tracker}" in out
        assert "accuracy:" in out and "spurious switches:" in out


def test_table_scores_every_scenario_with_every_tracker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "floor.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["sim", "table", str(path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "| floor |" in line]
    assert len(rows) == 3


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_is_valid_and_long_enough(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.end - scenario.start >= 30 * 60


def test_table_pools_several_seeds_and_refuses_a_bad_seed_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "floor.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["sim", "table", str(path), "--tracker", "naive", "--seeds", "1-3"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "| floor |" in line)
    assert row.endswith("| 3 (0) |")  # one change per run, three runs
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "table", str(path), "--seeds", "one"])
    assert exit_info.value.code == 2
    assert "not a seed list" in capsys.readouterr().err
