"""The dependency rules of the design hold, and the check fails when one is broken."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from btogether.import_rules import PACKAGES, violations

ROOT = Path(__file__).resolve().parents[2]


def test_the_tree_keeps_the_dependency_rules() -> None:
    assert violations(ROOT) == []


def _copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def _add_import(path: Path, line: str) -> None:
    text = path.read_text()
    head, _, rest = text.partition("from __future__ import annotations\n")
    path.write_text(f"{head}from __future__ import annotations\n{line}\n{rest}")


def test_each_forbidden_import_is_reported(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _add_import(root / "hw" / "process.py", "from relay.domain import service")
    _add_import(root / "relay" / "protocol" / "wire.py", "import relay.domain.errors")
    _add_import(root / "relay" / "domain" / "routing.py", "from client import config")
    _add_import(root / "beacon" / "core.py", "import client.proximity.scoring")
    _add_import(
        root / "client" / "proximity" / "scoring.py", "from beacon.state import DeviceIdentity"
    )
    _add_import(root / "relay" / "domain" / "errors.py", "from relay.domain.service import Delivery")
    found = "\n".join(re.sub(r":\d+ imports ", ": ", v) for v in violations(root))
    assert "hw.process: relay.domain.service: hw imports nothing of ours" in found
    assert "relay.protocol.wire: relay.domain.errors: the protocol package" in found
    assert "relay.domain.routing: client.config: relay never imports" in found
    assert "beacon.core: client.proximity.scoring: beacon and client never" in found
    assert "client.proximity.scoring: beacon.state: beacon and client never" in found
    assert "import cycle in relay:" in found and "relay.domain.errors" in found


def test_each_part_of_the_relay_imports_only_the_parts_below_it(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _add_import(root / "relay" / "storage" / "sqlite_store.py", "from relay.net import outbox")
    _add_import(root / "relay" / "domain" / "service.py", "import relay.storage.store_rows")
    _add_import(root / "relay" / "admin" / "edits.py", "from relay.web import passwords")
    _add_import(root / "relay" / "web" / "app.py", "from relay.node import RelayNode")
    _add_import(root / "relay" / "net" / "server.py", "from relay.storage import sqlite_store")
    (root / "relay" / "loose.py").write_text("from relay.domain import model\n")
    found = "\n".join(re.sub(r":\d+ imports ", ": ", v) for v in violations(root))
    assert "relay.storage.sqlite_store: relay.net.outbox: relay.storage may import only" in found
    assert "relay.domain.service: relay.storage.store_rows: relay.domain may import only" in found
    assert "relay.admin.edits: relay.web.passwords: relay.admin may import only" in found
    assert "relay.web.app: relay.node: relay.web may import only" in found
    assert "relay.net.server: relay.storage.sqlite_store: relay.net may import only" in found
    assert "relay.loose belongs to no part of the relay" in found


def test_imports_for_the_type_checker_only_do_not_count(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _add_import(
        root / "hw" / "process.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from relay.domain import service",
    )
    assert violations(root) == []


def test_a_pure_core_that_reaches_for_io_itself_or_through_our_modules_is_reported(
    tmp_path: Path,
) -> None:
    root = _copy(tmp_path)
    _add_import(root / "client" / "core.py", "import asyncio")
    _add_import(
        root / "client" / "proximity" / "nearby.py", "import socket"
    )  # the core imports nearby
    _add_import(root / "beacon" / "status.py", "from dbus_fast.aio import MessageBus")
    _add_import(root / "client" / "daemon.py", "import ssl")  # the shell may do I/O
    found = "\n".join(re.sub(r":\d+ imports ", ": ", v) for v in violations(root))
    assert "client.core: asyncio: client.core is a pure core" in found
    assert "client.proximity.nearby: socket: client.core is a pure core" in found
    assert "(client.proximity.nearby <- client.core)" in found
    assert "beacon.status: dbus_fast.aio: beacon.core is a pure core" in found
    assert "client.daemon" not in found and found.count("\n") == 2


def test_an_io_import_inside_a_function_of_a_module_the_core_imports_does_not_count(
    tmp_path: Path,
) -> None:
    root = _copy(tmp_path)
    # Like hw.scanner's create_scanner, which imports its bleak backend when called.
    _add_import(
        root / "client" / "proximity" / "nearby.py", "def _later() -> None:\n    import bleak"
    )
    assert violations(root) == []
    _add_import(root / "client" / "core.py", "def _later() -> None:\n    import bleak")
    assert [v for v in violations(root) if "client.core:" in v]
