"""Administrators' device lists: MAC parsing and all-or-nothing CSV import."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.domain.device_import import (
    CSV_TEMPLATE,
    InvalidMac,
    kinds_for_rows,
    parse_device_csv,
    parse_mac,
)


@pytest.mark.parametrize(
    "text",
    ["00:1b:44:11:3a:b7", "00-1B-44-11-3A-B7", "001b.4411.3ab7", "001B44113AB7", " 00:1B:44:11:3A:B7 "],
)
def test_mac_addresses_in_common_notations_normalise_to_colon_upper_case(text: str) -> None:
    assert parse_mac(text) == "00:1B:44:11:3A:B7"


@pytest.mark.parametrize(
    "text",
    ["", "00:1B:44:11:3A", "00:1B:44:11:3A:B7:01", "00:1B:44:11:3A:BG", "00:1B-44:11:3A:B7",
     "0:1B:44:11:3A:B7B", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"],
)
def test_malformed_or_impossible_mac_addresses_are_refused(text: str) -> None:
    with pytest.raises(InvalidMac):
        parse_mac(text)


def test_template_parses_cleanly() -> None:
    plan = parse_device_csv(CSV_TEMPLATE)
    assert plan.ok
    assert [(r.mac, r.name, r.kind) for r in plan.rows] == [
        ("00:1B:44:11:3A:B7", "Room Aurora", "room_system"),
        ("00:1B:44:11:3A:B8", "Alex's desk phone", "desk_phone"),
    ]


def test_columns_come_in_any_order_and_kinds_in_any_spelling() -> None:
    data = (
        "kind , location,mac ADDRESS,Name\n"
        "Room system,Floor 2,00:1B:44:11:3A:B7,  Room   Aurora \n"
        "conference-phone,Floor 3,00:1B:44:11:3A:B8,\n"
        ",Floor 4,00:1B:44:11:3A:B9,Spare\n"
        "kitchen,Floor 5,00:1B:44:11:3A:BA,Toaster\n"
    )
    plan = parse_device_csv(data)
    assert [(r.mac[-2:], r.name, r.kind, r.location) for r in plan.rows] == [
        ("B7", "Room Aurora", "room_system", "Floor 2"),
        ("B8", None, "conference_phone", "Floor 3"),
        ("B9", "Spare", None, "Floor 4"),
    ]
    assert [(e.line, "not a device kind" in e.message) for e in plan.errors] == [(5, True)]


def test_a_row_without_a_kind_is_bad_unless_the_file_gets_one() -> None:
    plan = parse_device_csv("MAC address,Kind\n00:1B:44:11:3A:B7,\n00:1B:44:11:3A:B8,desk_phone\n")
    rows, errors = kinds_for_rows(plan, None)
    assert [(r.mac[-2:], kind) for r, kind in rows] == [("B8", "desk_phone")]
    assert [e.line for e in errors] == [2] and "no kind" in errors[0].message
    rows, errors = kinds_for_rows(plan, "room_system")
    assert [kind for _, kind in rows] == ["room_system", "desk_phone"] and not errors


def test_good_csv_with_bom_quotes_and_blank_lines_imports_every_row() -> None:
    data = (
        "\ufeffMAC address,Location\r\n"
        "00:1B:44:11:3A:B7,\"Building 1, Room Aurora\"\r\n"
        "\r\n"
        "00-1B-44-11-3A-B8,Room Borealis\r\n"
    ).encode()
    plan = parse_device_csv(data)
    assert plan.ok
    assert [(r.line, r.mac, r.location) for r in plan.rows] == [
        (2, "00:1B:44:11:3A:B7", "Building 1, Room Aurora"),
        (4, "00:1B:44:11:3A:B8", "Room Borealis"),
    ]


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    data = (
        "MAC address,Location\n"
        "00:1B:44:11:3A:B7,Aurora\n"
        "not-a-mac,Borealis\n"
        "00:1B:44:11:3A:B7,Aurora again\n"
        "00:1B:44:11:3A:B9\n"
        "00:1B:44:11:3A:BA,Cirrus\n"
    )
    plan = parse_device_csv(data, known_macs=frozenset({"00:1B:44:11:3A:BA"}))
    assert not plan.ok
    assert [e.line for e in plan.errors] == [3, 4, 5, 6]
    assert "listed twice (first on line 2)" in plan.errors[1].message
    assert "already listed" in plan.errors[3].message
    assert [r.mac for r in plan.rows] == ["00:1B:44:11:3A:B7"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "file is empty"),
        (b"mac,where\n00:1B:44:11:3A:B7,x\n", "must name the columns"),
        (b"Location,Name\nx,y\n", "with a MAC address column"),
        (b"MAC address,Name,name\n00:1B:44:11:3A:B7,a,b\n", "named twice"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"MAC address,Location\n\"00:1B:44:11:3A:B7,x\n", "not valid CSV"),
    ],
)
def test_files_that_are_not_device_lists_are_refused_with_a_reason(data: bytes, message: str) -> None:
    plan = parse_device_csv(data)
    assert not plan.ok and message in plan.errors[0].message


@given(st.binary(max_size=300))
def test_csv_parsing_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    plan = parse_device_csv(data)
    assert plan.ok or plan.errors
