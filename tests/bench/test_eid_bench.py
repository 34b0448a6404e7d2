"""bench/eid.py runs end to end at its smallest size, new resolver and baseline, and its
JSON carries every figure the README quotes (a benchmark that breaks is noticed here, not
on the day its figures are needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_eid_benchmark_runs_both_resolvers_and_reports_every_figure(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable, "-P", "bench/eid.py", "--sizes", "6400", "--baseline-max", "6400",
            "--seconds", "0.2", "--changes", "1", "--keep", str(tmp_path), "--json",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = {f["implementation"]: f for f in json.loads(out.stdout.strip().splitlines()[-1])}
    assert set(figures) == {"new", "baseline"}
    for f in figures.values():
        assert f["devices"] == 6400
        assert set(f["sightings_per_s"]) == {"own tenant", "other tenants", "unknown"}
        assert all(rate > 0 for rate in f["sightings_per_s"].values())
        assert len(f["change_longest_ms"]) == 1
    assert figures["new"]["index_bytes_per_device"] > 0
    assert set(figures["new"]["sightings_per_cpu_s_median"]) == set(
        figures["new"]["sightings_per_s"]
    )
