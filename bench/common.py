"""What a benchmark prints around its figures: when, on which machine, under what load, and
each distribution with its spread (never one median alone); and the CPU time of the
server processes it measures.

Used by ``bench/client.py``, ``bench/provisioning.py`` and ``bench/desktop.py``; every
figure they print stands next to a baseline measured in the same run.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def machine() -> str:
    """Date, host, cores, CPU model, load average and Python: what the figures depend on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "load average unknown"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores "
        f"({cpu}), {load}, Python {platform.python_version()}"
    )


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted samples, nearest-rank (an observed value, no interpolation)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(samples: Sequence[float], *, scale: float = 1000.0, unit: str = "ms") -> str:
    """``n, min / p25 / median / p75 / p95 / max`` of samples in seconds (shown in ``unit``)."""
    if not samples:
        return "n=0"
    ordered = sorted(s * scale for s in samples)
    points = [ordered[0], *(nearest_rank(ordered, q) for q in (0.25, 0.5, 0.75, 0.95)), ordered[-1]]
    digits = 2 if ordered[0] < 1 else 1
    shown = " / ".join(f"{p:.{digits}f}" for p in points)
    return f"n={len(ordered):<4} min / p25 / median / p75 / p95 / max {shown} {unit}"


def line(name: str, samples: Sequence[float], baseline: Sequence[float], **kw: object) -> str:
    """A measurement and its baseline, one under the other."""
    return (
        f"{name:<28} {spread(samples, **kw)}\n"  # type: ignore[arg-type]
        f"{'  baseline':<28} {spread(baseline, **kw)}"  # type: ignore[arg-type]
    )


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time (user + system, all threads) the processes ``pids`` have used so far; one
    that has ended meanwhile (a PostgreSQL backend) counts for nothing."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def group_pids(leader: int) -> list[int]:
    """PostgreSQL's postmaster and its children (each backend calls setsid(), so they
    are found by parent, not by process group)."""
    pids = [leader]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == leader:
                pids.append(int(entry.name))
    return pids
