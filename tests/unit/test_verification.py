"""Verification and login codes: lifetime, single use, throttling."""

from __future__ import annotations

import random

import pytest

from relay.domain.verification import (
    LOGIN_CODE_ALPHABET,
    CodeCheck,
    check_code,
    mark_used,
    new_login_code,
    new_verification_code,
    normalize_login_code,
    normalize_verification_code,
)

T0 = 1_700_000_000.0


def test_verification_code_is_six_digits_and_accepted_once_within_24_hours() -> None:
    code, issued = new_verification_code("dev-1", T0, random.Random(1))
    assert len(code) == 6 and code.isdigit()
    typed = normalize_verification_code(code[:3] + " " + code[3:])
    assert check_code("dev-1", issued, typed, T0 + 23 * 3600) is CodeCheck.ACCEPTED
    used = mark_used(issued, T0 + 60)
    assert check_code("dev-1", used, typed, T0 + 120) is CodeCheck.USED


def test_verification_code_expires_after_24_hours() -> None:
    code, issued = new_verification_code("dev-1", T0, random.Random(1))
    assert check_code("dev-1", issued, code, T0 + 24 * 3600) is CodeCheck.EXPIRED


def test_code_is_bound_to_its_device() -> None:
    code, issued = new_verification_code("dev-1", T0, random.Random(1))
    assert check_code("dev-2", issued, code, T0) is CodeCheck.WRONG


def test_wrong_or_missing_code_is_judged_as_such() -> None:
    code, issued = new_verification_code("dev-1", T0, random.Random(1))
    other = f"{(int(code) + 1) % 1_000_000:06d}"
    assert check_code("dev-1", issued, other, T0) is CodeCheck.WRONG
    assert check_code("dev-1", None, code, T0) is CodeCheck.NONE_ISSUED
    assert check_code("dev-1", issued, None, T0) is CodeCheck.WRONG


@pytest.mark.parametrize("text", ["12345", "1234567", "12a456", "", "١٢٣٤٥٦"])
def test_text_that_cannot_be_a_verification_code_normalises_to_none(text: str) -> None:
    assert normalize_verification_code(text) is None


def test_login_code_is_case_and_dash_insensitive_and_avoids_lookalikes() -> None:
    shown, issued = new_login_code("dev-1", T0, random.Random(7))
    assert len(shown) == 9 and shown[4] == "-"
    assert all(c in LOGIN_CODE_ALPHABET for c in shown.replace("-", ""))
    typed = normalize_login_code(shown.lower().replace("-", " "))
    assert check_code("dev-1", issued, typed, T0 + 1) is CodeCheck.ACCEPTED
    assert normalize_login_code("O0I1-ABCD") is None
