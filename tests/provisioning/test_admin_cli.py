"""``btogether admin`` as an administrator uses it: one set of commands against a running
relay, names and MAC addresses wherever ids go, no --tenant for an owner of one tenant,
device lists with Name and Kind columns, renames and deletions, duplicate names refused.

The relay is a real ``btogether relay serve`` process; the commands run in this process
through the real entry point (``btogether.cli.main``), which is what ``btogether`` runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from btogether.cli import main
from tests.btogether_cli import relay_serve_process


@dataclass
class Admin:
    url: str
    token_file: Path
    capsys: pytest.CaptureFixture[str]

    def run(self, *args: str) -> tuple[int, str, str]:
        argv = ["admin", *args[:2], "--relay", self.url, "--token-file", str(self.token_file)]
        code = main([*argv, *args[2:]])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self.run(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    def fails(self, *args: str, code: int = 1) -> str:
        got, _, err = self.run(*args)
        assert got == code, err
        assert err.count("\n") == 1, err  # one line
        return err


@pytest.fixture
def admin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Admin]:
    db, token_file = tmp_path / "relay.sqlite3", tmp_path / "owner-token"
    code = main(
        [
            "admin",
            "bootstrap",
            "--db",
            str(db),
            "--owner",
            "Olivia",
            "--tenant",
            "Contoso",
            "--token-file",
            str(token_file),
            "--json",
        ]
    )
    bootstrapped = json.loads(capsys.readouterr().out)
    assert code == 0 and bootstrapped["tenant"]["name"] == "Contoso"
    assert bootstrapped["token"] == token_file.read_text().strip()
    with relay_serve_process(db, tmp_path) as url:
        yield Admin(url, token_file, capsys)


def test_an_owner_of_one_tenant_works_by_names_and_macs(admin: Admin, tmp_path: Path) -> None:
    rooms = tmp_path / "rooms.csv"
    rooms.write_text(
        "MAC address,Name,Kind,Location\n"
        "00:1B:44:11:3A:B7,Room Aurora,room_system,Building 1 / Floor 2\n"
        "00-1b-44-11-3a-b8,Alex's desk phone,Desk phone,Building 1 / Floor 2 / 2.14\n"
    )
    added = admin.json("devices", "import", str(rooms))["added"]  # no --tenant, no --kind
    assert [(d["name"], d["kind"]) for d in added] == [
        ("Room Aurora", "room_system"),
        ("Alex's desk phone", "desk_phone"),
    ]
    by_name = admin.json("codes", "create", "room aurora")  # a name, ignoring case
    by_mac = admin.json("codes", "create", "001b.4411.3ab8")  # a MAC in another notation
    assert (by_name["device_id"], by_mac["device_id"]) == (added[0]["id"], added[1]["id"])

    policy = admin.json("policies", "create", "No Better Together", "--better-together", "Disabled")
    alex = admin.json("users", "create", "Alex Doe", "--policy", "no better together")
    assert alex["policy_id"] == policy["id"]
    code, out, _ = admin.run("users", "list")
    assert code == 0
    header, row = out.splitlines()[0].split(), out.splitlines()[1]
    assert header == ["ID", "NAME", "POLICY"] and "No Better Together" in row

    issued = admin.json("credentials", "issue", "Alex Doe")
    code, out, _ = admin.run("credentials", "list", "--user", "alex doe")
    assert code == 0 and issued["credential_id"] in out and "Alex Doe" in out
    password_file = tmp_path / "password"
    password_file.write_text("a long secret for alex\n")
    login = admin.json("users", "password", "Alex Doe", "--password-file", str(password_file))
    assert (login["subject_id"], login["login"]) == (alex["id"], "alex doe")

    renamed = admin.json("devices", "rename", "Room Aurora", "Aurora", "--location", "B1 F2")
    assert (renamed["name"], renamed["location"]) == ("Aurora", "B1 F2")
    assert admin.json("users", "rename", "alex doe", "Alex Doe-Smith")["name"] == "Alex Doe-Smith"
    assert admin.json("policies", "rename", "No Better Together", "Quiet")["name"] == "Quiet"
    assert admin.json("tenants", "rename", "Contoso", "Contoso Ltd")["name"] == "Contoso Ltd"
    assigned = admin.json("policies", "assign", "device", "00:1B:44:11:3A:B7", "--policy", "Quiet")
    assert assigned["subject_id"] == added[0]["id"]

    deleted = admin.json("policies", "delete", "Quiet")
    assert deleted["removed"] == policy["id"]
    users = admin.json("users", "list")["users"]
    assert [u["policy_id"] for u in users] == [None]  # back on the tenant's default
    assert admin.json("users", "delete", "Alex Doe-Smith")["removed"] == alex["id"]
    assert admin.json("users", "list")["users"] == []
    assert admin.json("devices", "remove", "Aurora")["removed"] == added[0]["id"]


def test_refusals_are_one_clear_line(admin: Admin, tmp_path: Path) -> None:
    admin.json("users", "create", "Alex Doe")
    err = admin.fails("users", "create", "alex  doe")
    assert "an account called 'Alex Doe' exists already" in err
    admin.json("users", "create", "Sam")
    err = admin.fails("users", "rename", "Sam", "ALEX DOE")
    assert "exists already" in err

    plain = tmp_path / "plain.csv"
    plain.write_text("MAC address,Location\n00:1B:44:11:3A:B7,Floor 3\n")
    err = admin.fails("devices", "import", str(plain))
    assert "nothing imported" in err and "no kind" in err and "--kind" in err
    assert admin.json("devices", "list")["devices"] == []
    admin.json("devices", "import", str(plain), "--kind", "conference_phone")
    admin.json("devices", "add", "00:1B:44:11:3A:B9", "--kind", "desk_phone", "--name", "Floor 3")
    err = admin.fails("codes", "create", "Floor 3", code=2)
    assert "2 devices in Contoso are called 'Floor 3'" in err and "use the id or the MAC" in err
    err = admin.fails("codes", "create", "Floor 4", code=2)
    assert "no device 'Floor 4' in Contoso" in err
    err = admin.fails("devices", "sign-in", "Floor 9", "Alex Doe", "--code", "X", code=2)
    assert "no device 'Floor 9'" in err
    err = admin.fails(
        "devices", "sign-in", "00:1B:44:11:3A:B9", "u_0000000000000000", "--code", "ABCD-EFGH"
    )
    assert "refused (not_found)" in err and "validation" not in err
    err = admin.fails("devices", "import", str(tmp_path / "missing.csv"), code=2)
    assert "cannot read" in err and "missing.csv" in err

    err = admin.fails("tenants", "delete", "Contoso")
    assert "still has 2 account(s) and 2 device(s)" in err
    second = admin.json("tenants", "create", "Fabrikam")
    err = admin.fails("users", "list", code=2)
    assert "owner of 2 tenants (Contoso, Fabrikam): say which with --tenant" in err
    assert admin.json("users", "list", "--tenant", "Fabrikam")["users"] == []
    users = admin.json("users", "list", "--tenant", "contoso")["users"]
    assert sorted(u["name"] for u in users) == ["Alex Doe", "Sam"]
    assert admin.json("tenants", "delete", "Fabrikam")["removed"] == second["id"]
    assert [t["name"] for t in admin.json("tenants", "list")["tenants"]] == ["Contoso"]


def test_unreachable_relay_and_bad_credentials_are_one_line(
    admin: Admin, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["admin", "devices", "list", "--relay", "ws://127.0.0.1:1/", "--token", "x"])
    err = capsys.readouterr().err
    assert code == 1 and "connection refused" in err and err.count("\n") == 1
    code = main(["admin", "whoami", "--relay", admin.url, "--token", "btg_wrong"])
    err = capsys.readouterr().err
    assert code == 1 and "HTTP 401: unknown or revoked administrator credential" in err
    assert "``" not in err
    code = main(["admin", "whoami", "--relay", admin.url, "--token-file", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert code == 2 and "no administrator credential" in err
