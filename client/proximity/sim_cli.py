"""``btogether sim``: score the proximity tracker against simulated floors.

``sim score SCENARIO.toml`` runs a tracker against the in-process advert model of a
scenario and prints its figures (see client.proximity.scoring for their exact definitions);
``sim table [SCENARIO ...]`` scores every scenario with every tracker.  A scenario that
cannot be used is reported on stderr with what is wrong and where, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from client.proximity.advert_model import scenario_adverts
from client.proximity.scenario import Scenario, ScenarioError, load_scenario
from client.proximity.scoring import Score, Trace, pool_scores, run_tracker, score_trace
from client.proximity.tracker import ProximityTracker, TrackerConfig

TRACKERS: dict[str, Callable[[], TrackerConfig]] = {
    "proximity": TrackerConfig,
    "naive": TrackerConfig.naive,
    "strongest": TrackerConfig.strongest,
}
DEFAULT_SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def simulate(scenario: Scenario, config: TrackerConfig, seed: int | None = None) -> Trace:
    """Run one tracker over one scenario's adverts; the trace of its answers."""
    rng = random.Random(scenario.seed if seed is None else seed)
    return run_tracker(ProximityTracker(config), scenario_adverts(scenario, rng), scenario.start)


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _print_score(name: str, tracker: str, score: Score, out: TextIO) -> None:
    print(f"scenario:           {name}", file=out)
    print(f"tracker:            {tracker}", file=out)
    print(f"accuracy:           {score.accuracy:.4f}", file=out)
    print(
        f"time to switch:     median {_fmt(score.switch_median_s, ' s')}, "
        f"p95 {_fmt(score.switch_p95_s, ' s')} "
        f"({score.switches} changes, {score.missed_switches} missed)",
        file=out,
    )
    print(
        f"spurious switches:  {_fmt(score.spurious_per_hour, ' per hour', 1)} "
        f"({score.spurious} in {score.stationary_hours:.2f} h stationary)",
        file=out,
    )


def _write_trace(path: str, trace: Trace) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t, top in trace:
            f.write(json.dumps({"t": round(t, 4), "top": top}) + "\n")


def cmd_score(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"btogether sim score: {exc}", file=sys.stderr)
        return 2
    trace = simulate(scenario, TRACKERS[args.tracker](), args.seed)
    score = score_trace(scenario, trace)
    if args.trace:
        try:
            _write_trace(args.trace, trace)
        except OSError as exc:
            print(f"btogether sim score: cannot write trace: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(score.as_json()))
    else:
        _print_score(args.scenario, args.tracker, score, sys.stdout)
    return 0


def table_rows(
    paths: Sequence[Path], trackers: Sequence[str], seeds: Sequence[int | None] = (None,)
) -> list[tuple[str, float, str, Score]]:
    """(scenario name, noise_db, tracker, score pooled over seeds) per scenario and tracker."""
    rows = []
    for path in paths:
        scenario = load_scenario(path)
        for tracker in trackers:
            score = pool_scores(
                [
                    score_trace(scenario, simulate(scenario, TRACKERS[tracker](), seed))
                    for seed in seeds
                ]
            )
            rows.append((path.stem, scenario.radio.noise_db, tracker, score))
    return rows


def _seeds(text: str) -> list[int]:
    """ "3" → [3]; "1-5" → [1, 2, 3, 4, 5]; "1,4,9" → [1, 4, 9]."""
    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-", 1))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seed list: {text!r}") from None
    if not seeds or len(seeds) > 1000 or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"between 1 and 1000 seeds, none negative: {text!r}")
    return seeds


def format_table(rows: Sequence[tuple[str, float, str, Score]]) -> str:
    """A Markdown table of scores."""
    lines = [
        "| scenario | noise dB | tracker | accuracy | switch median s | switch p95 s "
        "| spurious / h | changes (missed) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, noise, tracker, s in rows:
        lines.append(
            f"| {name} | {noise:g} | {tracker} | {s.accuracy:.3f} | {_fmt(s.switch_median_s)} "
            f"| {_fmt(s.switch_p95_s)} | {_fmt(s.spurious_per_hour, digits=1)} "
            f"| {s.switches} ({s.missed_switches}) |"
        )
    return "\n".join(lines)


def cmd_table(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.scenarios] or sorted(DEFAULT_SCENARIOS.glob("*.toml"))
    if not paths:
        print("btogether sim table: no scenarios given or found", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        rows = table_rows(paths, args.tracker or list(TRACKERS), args.seeds or [None])
    except ScenarioError as exc:
        print(f"btogether sim table: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                [
                    {"scenario": name, "noise_db": noise, "tracker": tracker, **s.as_json()}
                    for name, noise, tracker, s in rows
                ]
            )
        )
        return 0
    print(format_table(rows))
    print(f"\n({len(rows)} runs in {time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    score = sub.add_parser(
        "score",
        help="score a tracker against one scenario",
        description="Run a tracker over a scenario's simulated adverts and print its accuracy, "
        "time to switch and spurious switches (README: Which room am I in).",
    )
    score.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.add_argument("--trace", metavar="FILE", help="write the tracker's answers (JSON lines)")
    score.add_argument(
        "--tracker", choices=list(TRACKERS), default="proximity", help="which tracker"
    )
    score.add_argument("--seed", type=int, help="override the scenario's seed")
    score.set_defaults(func=cmd_score)
    table = sub.add_parser(
        "table",
        help="score every scenario with every tracker",
        description="Score every scenario with every tracker and print a Markdown table.",
    )
    table.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO.toml",
        help="the scenarios (default: every file in scenarios/)",
    )
    table.add_argument("--json", action="store_true", help="print a JSON list of rows")
    table.add_argument(
        "--tracker", action="append", choices=list(TRACKERS), help="only these (repeatable)"
    )
    table.add_argument(
        "--seeds",
        type=_seeds,
        metavar="N|A-B|A,B,…",
        help="run with these seeds instead of each scenario's own, and pool the figures",
    )
    table.set_defaults(func=cmd_table)
