"""Device lists from administrators: MAC addresses, names, kinds and locations, from CSV.

The CSV's first row names its columns, in any order and any case: ``MAC address``
(required), ``Name``, ``Kind`` (``room_system``, ``conference_phone``, ``desk_phone``;
``Room system`` and ``desk-phone`` are read the same way) and ``Location``. A row without a
kind gets the one the administrator gave for the whole file, if any (the caller decides:
:attr:`DeviceRow.kind` is None then).

The CSV is untrusted input.  Parsing is pure and all-or-nothing by default: every bad
row is reported with its line number and nothing is returned for import unless the
caller asked to skip bad rows.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from relay.protocol.wire import DeviceKind

CSV_COLUMNS = ("MAC address", "Name", "Kind", "Location")
HEADER_TEXT = ",".join(CSV_COLUMNS)
CSV_TEMPLATE = (
    "MAC address,Name,Kind,Location\n"
    "00:1B:44:11:3A:B7,Room Aurora,room_system,Building 1 / Floor 2\n"
    "00:1B:44:11:3A:B8,Alex's desk phone,desk_phone,Building 1 / Floor 2 / 2.14\n"
)
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ROWS = 10_000
MAX_LOCATION_LEN = 200
MAX_NAME_LEN = 128
KINDS: tuple[DeviceKind, ...] = ("room_system", "conference_phone", "desk_phone")

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


def check_name(text: str) -> str:
    """A display name: trimmed, printable, 1 to MAX_NAME_LEN characters."""
    value = " ".join(text.split())
    if not value:
        raise ValueError("the name is empty")
    if len(value) > MAX_NAME_LEN:
        raise ValueError(f"the name is longer than {MAX_NAME_LEN} characters")
    if any(not c.isprintable() for c in value):
        raise ValueError("the name contains control characters")
    return value


def parse_kind(text: str) -> DeviceKind:
    """``room_system``, ``Room system``, ``room-system`` … as a device kind; ValueError if none."""
    value = re.sub(r"[\s-]+", "_", text.strip().lower())
    for kind in KINDS:
        if value == kind:
            return kind
    raise ValueError(f"{text.strip()!r} is not a device kind (expected one of {', '.join(KINDS)})")


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
    name: str | None = None
    kind: DeviceKind | None = None


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
    """Parse a device list CSV (see the module docstring); every row is checked, every error
    kept.

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
    columns: dict[str, int] | None = None
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if columns is None:
                columns, problem = _columns(record)
                if problem:
                    plan.errors.append(RowError(line, problem))
                    return plan
                continue
            if len(plan.rows) + len(plan.errors) >= MAX_ROWS:
                plan.errors.append(RowError(line, f"more than {MAX_ROWS} devices in one file"))
                return plan
            _parse_row(record, line, columns, known_macs, seen, plan)
    except csv.Error as exc:
        plan.errors.append(RowError(reader.line_num, f"not valid CSV: {exc}"))
    if columns is None:
        plan.errors.append(RowError(0, f"file is empty: expected a header such as {HEADER_TEXT}"))
    return plan


def _columns(header: list[str]) -> tuple[dict[str, int], str]:
    """Where each known column is; a message if the header is not one we can read."""
    known = {c.lower(): c for c in CSV_COLUMNS}
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = " ".join(cell.split()).lower()
        if name not in known:
            return columns, (
                f"the first row must name the columns ({HEADER_TEXT}, MAC address required); "
                f"{cell.strip()!r} is not one of them"
            )
        if known[name] in columns:
            return columns, f"the column {known[name]!r} is named twice"
        columns[known[name]] = index
    if "MAC address" not in columns:
        return (
            columns,
            f"the first row must name the columns, with a MAC address column ({HEADER_TEXT})",
        )
    return columns, ""


def _parse_row(
    record: list[str],
    line: int,
    columns: dict[str, int],
    known: frozenset[str],
    seen: dict[str, int],
    plan: ImportPlan,
) -> None:
    if len(record) != len(columns):
        header = ",".join(sorted(columns, key=columns.__getitem__))
        plan.errors.append(
            RowError(line, f"expected {len(columns)} fields ({header}), got {len(record)}")
        )
        return

    def cell(column: str) -> str:
        return record[columns[column]].strip() if column in columns else ""

    try:
        mac = parse_mac(cell("MAC address"))
        location = check_location(cell("Location"))
        name = check_name(cell("Name")) if cell("Name") else None
        kind = parse_kind(cell("Kind")) if cell("Kind") else None
    except ValueError as exc:
        plan.errors.append(RowError(line, str(exc)))
        return
    if mac in known:
        plan.errors.append(RowError(line, f"{mac} is already listed in this tenant"))
    elif mac in seen:
        plan.errors.append(RowError(line, f"{mac} is listed twice (first on line {seen[mac]})"))
    else:
        seen[mac] = line
        plan.rows.append(DeviceRow(line, mac, location, name, kind))


def kinds_for_rows(
    plan: ImportPlan, default: DeviceKind | None
) -> tuple[list[tuple[DeviceRow, DeviceKind]], list[RowError]]:
    """Each good row with its kind (its own, else ``default``); a row with neither is a bad
    row, so that no device becomes a desk phone because nobody said what it was."""
    rows: list[tuple[DeviceRow, DeviceKind]] = []
    errors = list(plan.errors)
    for row in plan.rows:
        kind = row.kind or default
        if kind is None:
            errors.append(
                RowError(
                    row.line,
                    "no kind: fill the Kind column or pass --kind (" + ", ".join(KINDS) + ")",
                )
            )
        else:
            rows.append((row, kind))
    errors.sort(key=lambda e: e.line)
    return rows, errors
