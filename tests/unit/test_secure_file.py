"""Secret files are private, atomic, refused when exposed, and wiped."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hw.secure_file import InsecureFileError, read_private, wipe, write_private


def test_written_secret_is_owner_only_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "device.json"
    write_private(path, b"secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_private(path) == b"secret"


def test_rewrite_replaces_whole_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    write_private(path, b"first version, longer")
    write_private(path, b"second")
    assert read_private(path) == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["device.json"]


def test_secret_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    write_private(path, b"secret")
    path.chmod(0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        read_private(path)


def test_wipe_removes_the_file_and_reports_whether_there_was_one(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    write_private(path, b"secret")
    assert wipe(path) is True
    assert not path.exists()
    assert wipe(path) is False
