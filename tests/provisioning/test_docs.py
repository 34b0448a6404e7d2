"""The admin protocol reference is generated from the models and must not drift from them."""

from __future__ import annotations

from btogether import admin_docgen
from relay.protocol import admin_wire as aw


def test_admin_protocol_document_is_current() -> None:
    assert admin_docgen.main(["--check"]) == 0, "run `python -m btogether.admin_docgen`"


def test_every_admin_request_is_documented_with_its_role() -> None:
    text = admin_docgen.render()
    for kind in aw.ADMIN_RESULT_TYPES:
        assert f"#### `{kind}`" in text, kind
    assert "| [`tenant.create`](#tenantcreate) | owner |" in text
