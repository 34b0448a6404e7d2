"""The browser sign-in contract (relay.web.accounts.Accounts), the same on every backend.

Logins are unique and normalised, set-up links and device grants are used once even
when two relay nodes race for them, sessions and the sign-in throttle read back as
written, and a delivered grant's credential is a real connection credential.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from relay.domain.model import AdminRecord, Credential, Tenant, User
from relay.domain.store import RelayStore, StoreConflict
from relay.web.accounts import (
    Accounts,
    EmailTaken,
    FailureRecord,
    GrantRecord,
    LoginRecord,
    LoginTaken,
    SessionRecord,
    SetupLinkRecord,
    SsoLinkRecord,
    SsoRequestRecord,
)
from relay.web.sso_core import ClaimNames, ProviderRecord
from tests.contract.conftest import OpenStore

NOW = 1_800_000_000.0
AccountsOf = Callable[[RelayStore], Accounts]


async def people(store: RelayStore) -> None:
    await store.add_tenant(Tenant("t1", "Contoso"))
    await store.add_users([User("alice", "t1", "Alice"), User("bob", "t1", "Bob")])
    await store.add_admin(AdminRecord("a-owner", "Olivia", "owner", None, NOW), b"tok", "ac1")


async def test_logins_are_normalised_unique_and_replaceable(
    store: RelayStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    accounts = accounts_of(store)
    assert await accounts.admin("a-owner") == AdminRecord("a-owner", "Olivia", "owner", None, NOW)
    assert await accounts.admin("nobody") is None
    await accounts.set_login("admin", "a-owner", "  Olivia   Owner ", "hash-1", NOW)
    expected = LoginRecord("olivia owner", "admin", "a-owner", "hash-1", NOW)
    assert await accounts.login("OLIVIA owner") == expected
    assert await accounts.login_of("admin", "a-owner") == expected
    assert await accounts.login("nobody") is None
    assert await accounts.login("nul\x00") is None
    with pytest.raises(LoginTaken):
        await accounts.set_login("user", "alice", "olivia owner", None, NOW)
    # A person's login and password are replaced, not added.
    await accounts.set_login("admin", "a-owner", "olivia", None, NOW + 1)
    assert await accounts.login("olivia owner") is None
    assert await accounts.login_of("admin", "a-owner") == LoginRecord(
        "olivia", "admin", "a-owner", None, NOW + 1)


async def test_a_setup_link_sets_a_password_once_before_it_expires(
    store: RelayStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    accounts = accounts_of(store)
    link = SetupLinkRecord(b"link-1", "user", "alice", "Alice", NOW, NOW + 60)
    await accounts.add_setup_link(link)
    assert await accounts.setup_link(b"link-1") == SetupLinkRecord(
        b"link-1", "user", "alice", "alice", NOW, NOW + 60)
    assert await accounts.setup_link(b"unknown") is None
    assert await accounts.redeem_setup_link(b"link-1", "pw-hash", NOW + 1) is True
    assert await accounts.login("alice") == LoginRecord("alice", "user", "alice", "pw-hash", NOW + 1)
    assert (await accounts.setup_link(b"link-1")).used_at == NOW + 1  # type: ignore[union-attr]
    assert await accounts.redeem_setup_link(b"link-1", "other", NOW + 2) is False
    assert (await accounts.login("alice")).password_hash == "pw-hash"  # type: ignore[union-attr]

    await accounts.add_setup_link(SetupLinkRecord(b"link-2", "user", "bob", "bob", NOW, NOW + 60))
    assert await accounts.redeem_setup_link(b"link-2", "late", NOW + 60) is False
    assert await accounts.login("bob") is None
    assert await accounts.redeem_setup_link(b"unknown", "x", NOW) is False


async def test_a_setup_link_raced_by_two_nodes_is_used_once(
    store: RelayStore, store_factory: OpenStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    first, second = accounts_of(store), accounts_of(await store_factory())
    await first.add_setup_link(SetupLinkRecord(b"link", "user", "alice", "alice", NOW, NOW + 60))
    outcomes = await asyncio.gather(
        first.redeem_setup_link(b"link", "pw-a", NOW + 1),
        second.redeem_setup_link(b"link", "pw-b", NOW + 1),
    )
    assert sorted(outcomes) == [False, True]
    winner = "pw-a" if outcomes[0] else "pw-b"
    assert (await second.login("alice")).password_hash == winner  # type: ignore[union-attr]


async def test_sessions_are_kept_touched_and_ended(store: RelayStore, accounts_of: AccountsOf) -> None:
    await people(store)
    accounts = accounts_of(store)
    one = SessionRecord(b"s1", "user", "alice", "csrf-1", "password", NOW, NOW, NOW + 3600)
    await accounts.add_session(one)
    await accounts.add_session(SessionRecord(b"s2", "user", "alice", "c2", "password", NOW, NOW, NOW + 9))
    await accounts.add_session(SessionRecord(b"s3", "admin", "a-owner", "c3", "password", NOW, NOW, NOW + 9))
    assert await accounts.session(b"s1") == one
    await accounts.touch_session(b"s1", NOW + 5, NOW + 7200)
    touched = await accounts.session(b"s1")
    assert touched is not None and (touched.seen_at, touched.expires_at) == (NOW + 5, NOW + 7200)
    await accounts.end_session(b"s1")
    assert await accounts.session(b"s1") is None
    assert await accounts.end_sessions("user", "alice") == 1
    assert await accounts.end_sessions("user", "alice") == 0
    assert await accounts.session(b"s3") is not None


async def test_the_signin_throttle_is_kept_and_cleared(store: RelayStore, accounts_of: AccountsOf) -> None:
    accounts = accounts_of(store)
    assert await accounts.failures("ip:1") is None
    await accounts.put_failures(FailureRecord("ip:1", 1, NOW))
    await accounts.put_failures(FailureRecord("ip:1", 5, NOW, NOW + 300))
    assert await accounts.failures("ip:1") == FailureRecord("ip:1", 5, NOW, NOW + 300)
    await accounts.clear_failures("ip:1")
    assert await accounts.failures("ip:1") is None


async def test_a_device_grant_is_decided_and_delivered_once_as_a_real_credential(
    store: RelayStore, store_factory: OpenStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    accounts = accounts_of(store)
    grant = GrantRecord(b"device-code", "user-code", "Alice's laptop", NOW, NOW + 600)
    await accounts.add_grant(grant)
    assert await accounts.grant_by_user_code("user-code") == grant
    assert await accounts.grant_by_device_code(b"device-code") == grant
    await accounts.mark_polled(b"device-code", NOW + 5)
    assert (await accounts.grant_by_device_code(b"device-code")).polled_at == NOW + 5  # type: ignore[union-attr]

    credential = Credential("c-laptop", b"laptop-token", "user", "alice", "t1", NOW + 10)
    assert await accounts.deliver_grant(b"device-code", credential) is False  # not approved yet
    other = accounts_of(await store_factory())
    decided = await asyncio.gather(
        accounts.decide_grant("user-code", "approved", "alice", "t1", NOW + 6),
        other.decide_grant("user-code", "denied", "alice", "t1", NOW + 6),
    )
    assert sorted(decided) == [False, True]
    status = (await accounts.grant_by_user_code("user-code")).status  # type: ignore[union-attr]
    if status == "denied":
        assert await accounts.deliver_grant(b"device-code", credential) is False
        assert await store.credential("c-laptop") is None
        return
    delivered = await asyncio.gather(
        accounts.deliver_grant(b"device-code", credential),
        other.deliver_grant(b"device-code", Credential("c-other", b"other", "user", "alice", "t1", NOW)),
        return_exceptions=True,
    )
    assert delivered.count(True) == 1
    stored = [c for c in await store.credentials_of("t1", "alice")]
    assert len(stored) == 1 and stored[0].revoked_at is None
    laptops = await accounts.laptop_credentials("t1", "alice")
    assert [(lc.credential.id, lc.client_name) for lc in laptops] == [(stored[0].id, "Alice's laptop")]
    assert (await accounts.grant_by_device_code(b"device-code")).status == "delivered"  # type: ignore[union-attr]


async def test_an_expired_grant_cannot_be_decided(store: RelayStore, accounts_of: AccountsOf) -> None:
    await people(store)
    accounts = accounts_of(store)
    await accounts.add_grant(GrantRecord(b"dc", "uc", "laptop", NOW, NOW + 60))
    assert await accounts.decide_grant("uc", "approved", "alice", "t1", NOW + 60) is False
    assert await accounts.decide_grant("unknown", "approved", "alice", "t1", NOW) is False
    await store.add_credentials([Credential("c-plain", b"plain", "user", "bob", "t1", NOW)])
    assert [(lc.credential.id, lc.client_name) for lc in await accounts.laptop_credentials("t1", None)] == [
        ("c-plain", None)]


# --- sign-in with a tenant's identity provider ---------------------------------------------------


async def test_a_sign_in_state_is_taken_once_and_only_by_its_browser(
    store: RelayStore, store_factory: OpenStore, accounts_of: AccountsOf
) -> None:
    accounts = accounts_of(store)
    request = SsoRequestRecord(b"s" * 32, "p1", "n", "v", "http://x/cb", "/admin/", b"b" * 32,
                               NOW, NOW + 600)
    await accounts.add_sso_request(request)
    assert await accounts.take_sso_request(b"s" * 32, b"x" * 32, NOW) is None  # another browser
    other = accounts_of(await store_factory())
    taken = await asyncio.gather(
        accounts.take_sso_request(b"s" * 32, b"b" * 32, NOW),
        other.take_sso_request(b"s" * 32, b"b" * 32, NOW),
    )
    assert sorted(taken, key=lambda t: t is None) == [request, None]
    late = SsoRequestRecord(b"t" * 32, "p1", "n", "v", "http://x/cb", "", b"b" * 32, NOW, NOW + 1)
    await accounts.add_sso_request(late)
    assert await accounts.take_sso_request(b"t" * 32, b"b" * 32, NOW + 2) is None


async def test_an_account_and_its_provider_link_are_written_together_or_not_at_all(
    store: RelayStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    accounts = accounts_of(store)
    link = SsoLinkRecord("p1", "s-1", "user", "carol", "t1", "carol@contoso.example", NOW, NOW,
                         "refresh-1")
    await accounts.add_sso_user(User("carol", "t1", "Carol"), link)
    assert await accounts.sso_link("p1", "s-1", "user") == link
    assert await accounts.sso_link_of("user", "carol") == link
    # Another identity for the same person: no link, so no new account either.
    with pytest.raises(StoreConflict):
        await accounts.add_sso_user(
            User("dave", "t1", "Dave"),
            SsoLinkRecord("p1", "s-2", "user", "carol", "t1", None, NOW),
        )
    assert sorted(u.id for u in await store.users("t1")) == ["alice", "bob", "carol"]
    admin = AdminRecord("a-sso", "Ivan", "device_admin", "t1", NOW)
    await accounts.add_sso_admin(admin, SsoLinkRecord("p1", "s-1", "admin", "a-sso", "t1", None,
                                                      NOW))
    await accounts.set_admin_role("a-sso", "owner", None)
    assert await accounts.admin("a-sso") == AdminRecord("a-sso", "Ivan", "owner", None, NOW)
    await accounts.sso_checked(link, NOW + 5, refresh_token="refresh-2", disabled=False)
    await accounts.sso_checked(link, NOW + 9, refresh_token=None, disabled=True)
    checked = await accounts.sso_link("p1", "s-1", "user")
    assert checked is not None
    assert (checked.refresh_token, checked.checked_at, checked.disabled_at) == (
        "refresh-2", NOW + 9, NOW + 9)
    assert [k.subject_kind for k in await accounts.sso_links(tenant_id="t1")] == ["user", "admin"]
    assert await accounts.remove_sso_link("user", "carol")
    assert await accounts.sso_link_of("user", "carol") is None


async def test_an_imported_email_belongs_to_one_account_of_a_tenant(
    store: RelayStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    accounts = accounts_of(store)
    await accounts.set_user_emails("t1", {"alice": "alice@contoso.example"})
    with pytest.raises(EmailTaken):
        await accounts.set_user_emails("t1", {"bob": "alice@contoso.example"})
    assert await accounts.user_emails("t1") == {"alice": "alice@contoso.example"}
    assert await accounts.user_by_email("t1", "alice@contoso.example") == "alice"
    assert await accounts.user_by_email("t2", "alice@contoso.example") is None
    # Moving an address from one account to another in one go is fine.
    await accounts.set_user_emails("t1", {"alice": None, "bob": "alice@contoso.example"})
    assert await accounts.user_emails("t1") == {"bob": "alice@contoso.example"}


async def test_a_provider_is_kept_whole_and_checked_by_one_node_per_interval(
    store: RelayStore, store_factory: OpenStore, accounts_of: AccountsOf
) -> None:
    await people(store)
    accounts = accounts_of(store)
    provider = ProviderRecord(
        "p1", "t1", "Contoso ID", "https://id.contoso.example", "relay", "secret", NOW, NOW,
        claims=ClaimNames(subject="oid"), owner_groups=("owners",), create_users=True,
        auth_params=(("prompt", "login"),),
    )
    await accounts.put_sso_provider(provider)
    assert await accounts.sso_provider("p1") == provider
    assert await accounts.sso_providers("t1") == [provider]
    with pytest.raises(StoreConflict):  # one issuer's client serves one tenant
        await accounts.put_sso_provider(ProviderRecord(
            "p2", "t2", "Other", "https://id.contoso.example", "relay", None, NOW, NOW))
    other = accounts_of(await store_factory())
    claimed = await asyncio.gather(
        accounts.claim_sso_check("p1", NOW + 10, 900.0),
        other.claim_sso_check("p1", NOW + 10, 900.0),
    )
    assert sorted(claimed) == [False, True]
    assert not await accounts.claim_sso_check("p1", NOW + 500, 900.0)
    assert await accounts.claim_sso_check("p1", NOW + 910, 900.0)
    await accounts.put_sso_link(SsoLinkRecord("p1", "s-1", "user", "alice", "t1", None, NOW))
    assert await accounts.remove_sso_provider("p1")
    assert await accounts.sso_providers() == []
    assert await accounts.sso_links(provider_id="p1") == []
