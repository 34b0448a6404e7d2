"""Device lists from administrators: MAC addresses and locations, one by one or from CSV.

The CSV is untrusted input.  Parsing is pure and all-or-nothing by default: every bad
row is reported with its line number and nothing is returned for import unless the
caller asked to skip bad rows.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

CSV_HEADER = ("MAC address", "Location")
HEADER_TEXT = ",".join(CSV_HEADER)
CSV_TEMPLATE = "MAC address,Location\n00:1B:44:11:3A:B7,Building 1 / Floor 2 / Room Aurora\n"
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ROWS = 10_000
MAX_LOCATION_LEN = 200

_MAC_HEX = re.compile(r"^[0-9A-Fa-f]{12}$")


class InvalidMac(ValueError):
    """The text is not a MAC address."""


def parse_mac(text: str) -> str:
    """Normalise a MAC address to ``AA:BB:CC:DD:EE:FF``.

    Accepts colon, dash or dot separators (``00-1b-44-11-3a-b7``, ``001b.4411.3ab7``) or
    none, any case.  Broadcast and all-zero addresses are refused: no device has them.
    """
    stripped = text.strip()
    cleaned = re.sub(r"[:\-.]", "", stripped)
    if not _MAC_HEX.match(cleaned) or not _separators_consistent(stripped):
        raise InvalidMac(f"{text.strip()!r} is not a MAC address (expected e.g. 00:1B:44:11:3A:B7)")
    value = cleaned.upper()
    if value in ("000000000000", "FFFFFFFFFFFF"):
        raise InvalidMac(f"{text.strip()!r} is not a device address (all zeros or broadcast)")
    return ":".join(value[i : i + 2] for i in range(0, 12, 2))


def _separators_consistent(text: str) -> bool:
    seps = {c for c in text if c in ":-."}
    if not seps:
        return True
    if len(seps) > 1:
        return False
    sep = seps.pop()
    groups = text.split(sep)
    if sep == ".":
        return len(groups) == 3 and all(len(g) == 4 for g in groups)
    return len(groups) == 6 and all(len(g) == 2 for g in groups)


def check_location(text: str) -> str:
    """A location label: trimmed, printable, at most MAX_LOCATION_LEN characters."""
    value = text.strip()
    if len(value) > MAX_LOCATION_LEN:
        raise ValueError(f"location is longer than {MAX_LOCATION_LEN} characters")
    if any(not c.isprintable() for c in value):
        raise ValueError("location contains control characters")
    return value


@dataclass(frozen=True, slots=True)
class DeviceRow:
    line: int
    mac: str
    location: str


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ImportPlan:
    """What a CSV would import, and what is wrong with it."""

    rows: list[DeviceRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_device_csv(data: bytes | str, known_macs: frozenset[str] = frozenset()) -> ImportPlan:
    """Parse a ``MAC address,Location`` CSV; every row is checked, every error kept.

    ``known_macs`` are MACs already listed in the tenant; listing one again is an error
    on that row (as is a MAC repeated within the file).
    """
    plan = ImportPlan()
    if isinstance(data, bytes):
        if len(data) > MAX_CSV_BYTES:
            plan.errors.append(RowError(0, f"file is larger than {MAX_CSV_BYTES} bytes"))
            return plan
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            plan.errors.append(RowError(0, f"file is not UTF-8 text ({exc.reason})"))
            return plan
    else:
        text = data.removeprefix("\ufeff")
    if "\x00" in text:
        plan.errors.append(RowError(0, "file contains NUL bytes: not a CSV file"))
        return plan
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    seen: dict[str, int] = {}
    header_seen = False
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if not header_seen:
                header_seen = True
                if tuple(c.strip().lower() for c in record) != tuple(h.lower() for h in CSV_HEADER):
                    plan.errors.append(
                        RowError(line, f"the first row must be the header {HEADER_TEXT}")
                    )
                    return plan
                continue
            if len(plan.rows) + len(plan.errors) >= MAX_ROWS:
                plan.errors.append(RowError(line, f"more than {MAX_ROWS} devices in one file"))
                return plan
            _parse_row(record, line, known_macs, seen, plan)
    except csv.Error as exc:
        plan.errors.append(RowError(reader.line_num, f"not valid CSV: {exc}"))
    if not header_seen:
        plan.errors.append(RowError(0, f"file is empty: expected the header {HEADER_TEXT}"))
    return plan


def _parse_row(
    record: list[str], line: int, known: frozenset[str], seen: dict[str, int], plan: ImportPlan
) -> None:
    if len(record) != 2:
        plan.errors.append(RowError(line, f"expected 2 fields ({HEADER_TEXT}), got {len(record)}"))
        return
    try:
        mac = parse_mac(record[0])
        location = check_location(record[1])
    except ValueError as exc:
        plan.errors.append(RowError(line, str(exc)))
        return
    if mac in known:
        plan.errors.append(RowError(line, f"{mac} is already listed in this tenant"))
    elif mac in seen:
        plan.errors.append(RowError(line, f"{mac} is listed twice (first on line {seen[mac]})"))
    else:
        seen[mac] = line
        plan.rows.append(DeviceRow(line, mac, location))
