"""Score the proximity trackers on scenarios/, then the proximity tracker under bluetoothd's rules.

    ./dev.sh bench proximity [--seeds 1-5] [--rules-only] [SCENARIO.toml ...]
    ./dev.sh bench proximity --starts 100

First the Markdown table of every scenario with every tracker (``btogether sim
table``; the README's proximity table comes from it), on every advert the scenario
sends.  Then the proximity tracker on what bluetoothd 5.66 would signal to the
client of each scan mode, the advert stream passed through the same rules as the
simulated air (``hw.sim.reporting.apply_advert``, ``hw.sim.bluez`` passive window):

* ``every advert`` — the scenario's adverts as they are (the table above);
* ``active`` — what the client does by default: a discovery filter with
  ``DuplicateData``, so bluetoothd signals every report (RSSI with a delta of 0);
* ``passive`` — an advertisement monitor without discovery: only adverts heard in
  the kernel's 30-of-60 ms passive scan window, and of those only RSSI moves of 8 dB
  or more from the last value signalled (RSSI_THRESHOLD); the tracker drops a device
  after its usual 10 s without a sample;
* ``passive, held`` — the same, but the tracker keeps a device until BlueZ says it is
  lost (what the scan command does in passive mode).

``--starts N`` measures instead the first seconds of N starts per scenario (seeds 0..N-1):
how often the first room the tracker names is not the true room, how often the top
changes in the first 5 s, and how long it takes to name a room — for the tracker as
configured next to the same tracker naming the first device heard at once (no settling),
in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, and bench/ holds scripts named
# like our packages (client.py, relay.py) that would shadow them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from client.proximity import sim_cli  # noqa: E402
from client.proximity.advert_model import Advert, scenario_adverts  # noqa: E402
from client.proximity.scenario import load_scenario  # noqa: E402
from client.proximity.scoring import Score, pool_scores, run_tracker, score_trace  # noqa: E402
from client.proximity.tracker import ProximityTracker, TrackerConfig  # noqa: E402
from hw.sim.bluez import PASSIVE_SCAN_INTERVAL_S, PASSIVE_SCAN_WINDOW_S  # noqa: E402
from hw.sim.reporting import HeardAdvert, RemoteDevice, apply_advert  # noqa: E402

MODES = ("every advert", "active", "passive", "passive, held")
OUR_DATA = ((0xFFFF, bytes(11)),)  # a still beacon: the same frame in every advert


def bluetoothd_reports(adverts: Iterable[Advert], mode: str, phase_s: float) -> Iterator[Advert]:
    """The adverts bluetoothd signals to a client scanning in ``mode``, with the RSSI signalled."""
    if mode == "every advert":
        yield from adverts
        return
    devices: dict[str, RemoteDevice] = {}
    heard = HeardAdvert(flags=0x06, manufacturer_data=OUR_DATA)
    passive = mode.startswith("passive")
    for advert in adverts:
        if passive and (advert.t + phase_s) % PASSIVE_SCAN_INTERVAL_S >= PASSIVE_SCAN_WINDOW_S:
            continue  # between passive scan windows: not heard at all
        device = devices.setdefault(advert.device, RemoteDevice(advert.device, "public"))
        # Passive monitoring is never a filtered discovery; the client's active one is.
        changed = apply_advert(
            device, heard, advert.rssi, filtered=not passive, duplicate=not passive
        )
        if changed:
            yield replace(advert, rssi=device.rssi)


def score_under_rules(path: Path, mode: str, seeds: list[int | None]) -> Score:
    scenario = load_scenario(path)
    config = TrackerConfig()
    if mode == "passive, held":
        config = TrackerConfig(timeout_s=1e9)  # presence is BlueZ's word, not silence
    scores = []
    for seed in seeds:
        rng = random.Random(scenario.seed if seed is None else seed)
        phase = random.Random(f"phase{seed}").uniform(0.0, 1.0)
        reports = bluetoothd_reports(scenario_adverts(scenario, rng), mode, phase)
        trace = run_tracker(ProximityTracker(config), reports, scenario.start)
        scores.append(score_trace(scenario, trace))
    return pool_scores(scores)


def rules_table(paths: list[Path], seeds: list[int | None]) -> str:
    lines = [
        "| scenario | reports as | accuracy | switch median s | switch p95 s | spurious / h "
        "| changes (missed) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for path in paths:
        for mode in MODES:
            s = score_under_rules(path, mode, seeds)
            median = "n/a" if s.switch_median_s is None else f"{s.switch_median_s:.2f}"
            p95 = "n/a" if s.switch_p95_s is None else f"{s.switch_p95_s:.2f}"
            flaps = "n/a" if s.spurious_per_hour is None else f"{s.spurious_per_hour:.1f}"
            lines.append(
                f"| {path.stem} | {mode} | {s.accuracy:.3f} | {median} | {p95} | {flaps} "
                f"| {s.switches} ({s.missed_switches}) |"
            )
    return "\n".join(lines)


START_WINDOW_S = 5.0


def starts(path: Path, config: TrackerConfig, runs: int) -> tuple[float, float, float]:
    """(share of starts naming a wrong room first, share changing the top, median s to name)."""
    scenario = load_scenario(path)
    truth = scenario.true_room(scenario.start)
    wrong = changed = 0
    firsts = []
    for seed in range(runs):
        tracker = ProximityTracker(config)
        tops: list[str] = []
        first_at = START_WINDOW_S
        for advert in scenario_adverts(scenario, random.Random(seed)):
            if advert.t > scenario.start + START_WINDOW_S:
                break
            tracker.observe(advert.device, advert.rssi, advert.tx_power, advert.t)
            top = tracker.top(advert.t)
            if top is not None and not tops:
                first_at = advert.t - scenario.start
            if top is not None and (not tops or tops[-1] != top):
                tops.append(top)
        firsts.append(first_at)
        wrong += bool(tops) and tops[0] != truth
        changed += len(tops) > 1
    return wrong / runs, changed / runs, statistics.median(firsts)


def main_starts(runs: int, paths: list[Path]) -> int:
    configured = TrackerConfig()
    at_once = replace(configured, settle_min_s=0.0, settle_s=0.0)
    print(
        "| scenario | wrong first room (settling / at once) | top changed in 5 s "
        "| first room named after, median s |"
    )
    print("|---|---:|---:|---:|")
    for path in paths:
        settled = starts(path, configured, runs)
        naive = starts(path, at_once, runs)
        print(
            f"| {path.stem} | {settled[0]:.2f} / {naive[0]:.2f} | {settled[1]:.2f} / "
            f"{naive[1]:.2f} | {settled[2]:.2f} / {naive[2]:.2f} |"
        )
    print(f"\n({runs} starts per scenario)", file=sys.stderr)
    return 0


def main() -> int:
    if "--starts" in sys.argv:
        starts_parser = argparse.ArgumentParser(prog="bench/proximity.py", description=__doc__)
        starts_parser.add_argument("--starts", type=int, required=True, help="starts per scenario")
        starts_parser.add_argument(
            "scenarios", nargs="*", type=Path, help="default: scenarios/*.toml"
        )
        starts_args = starts_parser.parse_args()
        chosen = starts_args.scenarios or sorted(sim_cli.DEFAULT_SCENARIOS.glob("*.toml"))
        return main_starts(starts_args.starts, chosen)
    parser = argparse.ArgumentParser(prog="bench/proximity.py", description=__doc__)
    sim_cli.add_arguments(parser)
    argv = sys.argv[1:]
    rules_only = "--rules-only" in argv
    argv = [a for a in argv if a != "--rules-only"]
    args = parser.parse_args(["table", *argv])
    if not rules_only:
        code = int(args.func(args))
        if code:
            return code
    paths = [Path(p) for p in args.scenarios] or sorted(sim_cli.DEFAULT_SCENARIOS.glob("*.toml"))
    started = time.monotonic()
    print("\nThe proximity tracker on what bluetoothd 5.66 signals in each scan mode:\n")
    seeds = args.seeds or [None]
    print(rules_table(paths, seeds))
    elapsed = time.monotonic() - started
    runs = len(paths) * len(MODES) * len(seeds)
    print(f"\n({runs} runs in {elapsed:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
