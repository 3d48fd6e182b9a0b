"""Several WeChat accounts in one store: users, web tokens, QR codes and push de-duplication are
kept per appid (an openid or a scene names something within one account only), and the
records of the version before accounts are given to the default account at start-up.

On the embedded store, or MongoDB when MONGODB_URI is set."""

from __future__ import annotations

import os
from typing import Any

import pytest

from service.store.queries import Store
from service.store.sealing import Sealer

OPENID = "o-the-same-string-in-both-accounts"
UNIONID = "u-one-person"


@pytest.fixture
def db(shared_mongo, mongodb_name):
    return shared_mongo[mongodb_name]


@pytest.fixture
async def store(db, clock) -> Store:
    store = Store(db, clock=clock, sealer=Sealer({"k1": os.urandom(32)}))
    await store.ensure_indexes()
    return store


async def save_token(store: Store, access_token: str, *, openid: str = OPENID) -> None:
    await store.save_web_token(
        openid=openid,
        scope="snsapi_userinfo",
        access_token=access_token,
        refresh_token=f"refresh-{access_token}",
        expires_in=7200,
        unionid=UNIONID,
    )


async def test_one_openid_in_two_accounts_is_two_users_and_two_tokens(store):
    first, second = store.for_account("wxA"), store.for_account("wxB")
    await first.record_login(OPENID, UNIONID, {"nickname": "in A"})
    await second.record_follow_state(
        OPENID, subscribed=True, subscribe_time=None, subscribe_scene=None, unionid=UNIONID
    )
    await save_token(first, "token-of-A")
    await save_token(second, "token-of-B")

    user_a, user_b = await first.get_user(OPENID), await second.get_user(OPENID)
    assert (user_a["appid"], user_a["nickname"], user_a["loginCount"]) == ("wxA", "in A", 1)
    assert (user_b["appid"], user_b["subscribed"]) == ("wxB", True)
    assert "loginCount" not in user_b and "nickname" not in user_b
    assert await store.get_user(OPENID) is None  # the unnamed account has no such user
    assert await store.users.count_documents({}) == 2

    token_a = await first.get_web_token(OPENID, "snsapi_userinfo")
    token_b = await second.get_web_token(OPENID, "snsapi_userinfo")
    assert (token_a["appid"], token_a["accessToken"]) == ("wxA", "token-of-A")
    assert (token_b["appid"], token_b["accessToken"]) == ("wxB", "token-of-B")
    assert await store.web_tokens.count_documents({}) == 2


async def test_each_account_sweeps_and_counts_its_own_web_tokens(store, clock):
    first, second = store.for_account("wxA"), store.for_account("wxB")
    await save_token(first, "token-of-A")
    await save_token(second, "token-of-B")
    await save_token(second, "another-of-B", openid="o-only-in-B")

    due = first.web_tokens_due(due_before=clock.now() + 7200, used_since=None, batch_size=10)
    assert [doc["_id"] async for doc in due] == [
        (await first.web_tokens.find_one({"appid": "wxA"}))["_id"]
    ]
    assert await first.count_web_tokens_by_status() == {"active": 1}
    assert await second.count_web_tokens_by_status() == {"active": 2}

    clock.advance(31 * 86400)  # every refresh_token has run out
    assert await first.mark_refresh_expired() == 1
    assert await second.count_web_tokens_by_status() == {"active": 2}
    assert await first.count_web_tokens_by_status() == {"reauth_required": 1}


async def test_linked_users_are_one_persons_records_in_every_account(store):
    for appid, openid in (("wxB", "o-in-B"), ("wxA", "o-in-A")):
        await store.for_account(appid).record_login(openid, UNIONID, None)
    await store.for_account("wxA").record_login("o-someone-else", "u-another-person", None)
    await store.for_account("wxC").record_login("o-without-unionid", None, None)

    linked = await store.for_account("wxC").linked_users(UNIONID)
    assert [(user["appid"], user["openid"]) for user in linked] == [
        ("wxA", "o-in-A"),
        ("wxB", "o-in-B"),
    ]
    assert await store.linked_users("u-nobody") == []


async def test_one_kind_and_scene_in_two_accounts_are_two_qr_codes(store):
    first, second = store.for_account("wxA"), store.for_account("wxB")
    for account, ticket in ((first, "ticket-A"), (second, "ticket-B")):
        await account.save_qr_ticket(
            "permanent", 7, ticket=ticket, url=f"https://w.example/{ticket}", expires_in=None
        )
    ticket_a, ticket_b = (
        await first.get_qr_ticket("permanent", 7),
        await second.get_qr_ticket("permanent", 7),
    )
    assert (ticket_a["appid"], ticket_a["ticket"]) == ("wxA", "ticket-A")
    assert (ticket_b["appid"], ticket_b["ticket"]) == ("wxB", "ticket-B")
    assert await store.get_qr_ticket("permanent", 7) is None
    assert {doc["_id"] async for doc in store.qr_tickets.find({})} == {
        "wxA:permanent:7",
        "wxB:permanent:7",
    }

    # Creating it is claimed per account too: A's creation does not hold B's back.
    assert await first.claim_qr_create("permanent:7", "instance-1", 30)
    assert await second.claim_qr_create("permanent:7", "instance-2", 30)
    assert not await first.claim_qr_create("permanent:7", "instance-2", 30)
    assert await second.extend_qr_claim("permanent:7", "instance-2", 30)
    await second.release_qr_claim("permanent:7", "instance-2")
    assert await first.extend_qr_claim("permanent:7", "instance-1", 30)


async def test_a_sign_in_session_moves_only_through_its_own_account(store):
    first, second = store.for_account("wxA"), store.for_account("wxB")
    await first.create_qr_login(
        "scene-1", ticket="t", url="https://w.example/t", ttl=300, redirect_uri=None
    )

    assert await second.get_qr_login("scene-1") is None
    assert await second.qr_login_scanned("scene-1", OPENID, new_follower=False) is None
    await second.qr_login_confirmed("scene-1", OPENID)
    assert (await first.get_qr_login("scene-1"))["status"] == "pending"

    scanned = await first.qr_login_scanned("scene-1", OPENID, new_follower=True)
    assert (scanned["appid"], scanned["status"]) == ("wxA", "scanned")
    await second.qr_login_problem("scene-1", OPENID, {"code": "X", "message": "from B"})
    await second.qr_login_confirmed("scene-1", OPENID)
    session = await first.get_qr_login("scene-1")
    assert session["status"] == "scanned" and "problem" not in session

    await first.qr_login_confirmed("scene-1", OPENID)
    assert await second.hand_out_qr_login("scene-1") is None
    assert (await first.hand_out_qr_login("scene-1"))["handedOut"] is True


async def test_one_push_key_in_two_accounts_is_two_first_deliveries(store):
    first, second = store.for_account("wxA"), store.for_account("wxB")
    assert await first.first_delivery("msg:77", 3600) is None
    assert await second.first_delivery("msg:77", 3600) is None
    await second.delivery_done("msg:77")
    assert (await first.first_delivery("msg:77", 3600))["done"] is False  # A's, still running
    assert (await second.first_delivery("msg:77", 3600))["done"] is True
    await first.forget_delivery("msg:77")
    assert await first.first_delivery("msg:77", 3600) is None  # forgotten in A only

    assert await first.claim_push_nonce("1700000000", "n1", "hash-A", 1700000600) is None
    assert await second.claim_push_nonce("1700000000", "n1", "hash-B", 1700000600) is None
    assert await first.claim_push_nonce("1700000000", "n1", "x", 1700000600) == "hash-A"


async def test_a_state_is_used_once_and_released_for_the_real_codes_holder(store, clock):
    first, used_at = await store.use_state("nonce-1", clock.now() + 60)
    assert first is True
    again, when = await store.use_state("nonce-1", clock.now() + 60)
    assert (again, when) == (False, used_at)
    assert await store.state_used_at("nonce-1") == used_at
    await store.release_state("nonce-1", used_at)
    assert await store.state_used_at("nonce-1") is None
    assert (await store.use_state("nonce-1", clock.now() + 60))[0] is True


async def test_a_redirect_context_is_stored_once_and_its_purge_only_moves_later(store, clock):
    fields = {"account": "second", "redirectUri": "https://r", "callback": "https://c"}
    await store.save_state_context("ctx", fields, clock.now() + 600)
    await store.save_state_context("ctx", {**fields, "callback": "https://x"}, clock.now() + 60)
    doc = await store.for_account("wxB").get_state_context("ctx")  # global, as states are
    assert doc["callback"] == "https://c" and doc["account"] == "second"
    assert doc["purgeAt"].timestamp() == pytest.approx(clock.now() + 600, abs=1)
    clock.advance(601)
    assert await store.get_state_context("ctx") is None


async def test_a_view_shares_the_collections_and_the_group_writers(store):
    view = store.for_account("wxA")
    assert (view.appid, store.appid) == ("wxA", "")
    assert view.users is store.users and view.qr_tickets is store.qr_tickets
    assert view.delivery_writer is store.delivery_writer
    assert view.nonce_writer is store.nonce_writer


# -- the records of the version before accounts ------------------------------------------------


async def previous_versions_database(db, clock) -> Store:
    """Records and indexes as the version before accounts left them; its token sealed."""
    store = Store(db, clock=clock, sealer=Sealer({"k1": os.urandom(32)}))
    await db["users"].create_index("openid", unique=True, name="openid_unique")
    await db["users"].create_index(
        "unionid", name="unionid", partialFilterExpression={"unionid": {"$type": "string"}}
    )
    await db["web_tokens"].create_index(
        [("openid", 1), ("scope", 1)], unique=True, name="openid_scope_unique"
    )
    await db["web_tokens"].create_index(
        [("status", 1), ("accessTokenExpiresAt", 1), ("_id", 1)], name="refresh_due"
    )
    await db["users"].insert_one({"openid": OPENID, "unionid": UNIONID, "loginCount": 3})
    await save_token(store, "old-token")  # sealed, as the previous version sealed it
    await db["web_tokens"].update_many({}, {"$unset": {"appid": ""}})
    await db["qr_tickets"].insert_one(
        {
            "_id": "permanent:7",
            "type": "permanent",
            "scene": 7,
            "ticket": "the-permanent-ticket",
            "url": "https://w.example/7",
            "expiresAt": None,
            "purgeAt": None,
        }
    )
    await db["qr_logins"].insert_one(
        {
            "_id": "scene-before",
            "status": "pending",
            "expiresAt": None,
            "handedOut": False,
        }
    )
    return store


async def snapshot(db) -> dict[str, Any]:
    state = {}
    for name in ("users", "web_tokens", "qr_tickets", "qr_logins"):
        docs = [doc async for doc in db[name].find({})]
        state[name] = (
            sorted(docs, key=lambda doc: str(doc["_id"])),
            sorted((await db[name].index_information()).keys()),
        )
    return state


async def test_the_previous_versions_records_become_the_default_accounts(db, clock):
    store = await previous_versions_database(db, clock)
    await store.ensure_indexes(default_appid="wxA")

    default = store.for_account("wxA")
    assert (await default.get_user(OPENID))["loginCount"] == 3
    token = await default.get_web_token(OPENID, "snsapi_userinfo")
    assert token["accessToken"] == "old-token"  # still opens: the sealing context is unchanged
    ticket = await default.get_qr_ticket("permanent", 7)
    assert (ticket["_id"], ticket["ticket"]) == ("wxA:permanent:7", "the-permanent-ticket")
    assert await db["qr_tickets"].count_documents({}) == 1
    assert (await default.get_qr_login("scene-before"))["appid"] == "wxA"
    assert await store.for_account("wxB").get_user(OPENID) is None

    user_indexes = await db["users"].index_information()
    token_indexes = await db["web_tokens"].index_information()
    assert "openid_unique" not in user_indexes and "appid_openid_unique" in user_indexes
    assert "unionid" in user_indexes
    assert not {"openid_scope_unique", "refresh_due"} & token_indexes.keys()
    assert {"appid_openid_scope_unique", "refresh_due_by_app"} <= token_indexes.keys()
    # The same openid is welcome in another account now.
    await store.for_account("wxB").record_login(OPENID, UNIONID, None)
    await save_token(store.for_account("wxB"), "token-of-B")

    before = await snapshot(db)
    await store.ensure_indexes(default_appid="wxA")  # every later start
    assert await snapshot(db) == before


async def test_without_a_default_account_the_records_keep_their_keys(db, clock):
    """The unnamed account (as before accounts) keeps the ticket's _id: nothing is moved."""
    store = await previous_versions_database(db, clock)
    await store.ensure_indexes()
    ticket = await store.get_qr_ticket("permanent", 7)
    assert (ticket["_id"], ticket["appid"]) == ("permanent:7", "")
    assert (await store.get_user(OPENID))["loginCount"] == 3
    assert (await store.get_web_token(OPENID, "snsapi_userinfo"))["accessToken"] == "old-token"


async def test_instances_starting_at_once_do_not_trip_over_each_other(db, clock, monkeypatch):
    """Another instance copied the ticket first, and dropped an old index between this one's
    look and its drop: neither stops this start."""
    store = await previous_versions_database(db, clock)
    await db["qr_tickets"].insert_one(
        {
            "_id": "wxA:permanent:7",
            "appid": "wxA",
            "type": "permanent",
            "scene": 7,
            "ticket": "the-permanent-ticket",
        }
    )
    stale = await store.users.index_information()
    await store.users.drop_index("openid_unique")

    async def as_seen_a_moment_ago() -> dict[str, Any]:
        return stale

    monkeypatch.setattr(store.users, "index_information", as_seen_a_moment_ago)
    await store.ensure_indexes(default_appid="wxA")

    assert [doc["_id"] async for doc in db["qr_tickets"].find({})] == ["wxA:permanent:7"]
    assert (await store.for_account("wxA").get_user(OPENID))["loginCount"] == 3


async def test_a_previous_versions_record_written_during_the_upgrade_does_not_stop_a_start(
    db, clock
):
    """A rolling upgrade: an old instance wrote a user (no appid) a new one had already written
    for the account. The scoped record is kept, and every other record is still adopted."""
    store = await previous_versions_database(db, clock)
    await store.ensure_indexes(default_appid="wxA")
    default = store.for_account("wxA")
    await default.record_login("o-both", None, {"nickname": "scoped"})
    await db["users"].insert_many(
        [{"openid": "o-both", "nickname": "unscoped"}, {"openid": "o-late", "loginCount": 1}]
    )

    await store.ensure_indexes(default_appid="wxA")
    assert (await default.get_user("o-both"))["nickname"] == "scoped"
    assert (await default.get_user("o-late"))["loginCount"] == 1
