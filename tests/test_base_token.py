"""The account's base access_token: renewed ahead of expiry under a MongoDB lease, shared by
every instance, recovered after WeChat rejects it, and never fetched in a retry storm.

The scheduler's job (renew_if_due) is called directly while the manual clock moves, the way
APScheduler would call it, so a simulated day takes a second.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from flows import APPID, SECRET, until
from service import keys
from service.sandbox import SANDBOX_USERS
from service.sandbox.state import SandboxWeChat
from service.tokens.base import BaseTokenKeeper

FOLLOWER = SANDBOX_USERS[0].openid

TOKEN_LIFETIME = 7200


def fetches(emulator: SandboxWeChat) -> int:
    return emulator.stats["cgi-bin/stable_token"] + emulator.stats["cgi-bin/token"]


async def instances(make_client, shared_mongo, n: int, **overrides):
    clients = [await make_client(mongo_client=shared_mongo, **overrides) for _ in range(n)]
    return clients, [c.app[keys.ACCOUNTS].default.base_tokens for c in clients]


async def stored(client) -> dict:
    return await client.app[keys.STORE].get_base_token(APPID)


async def test_the_first_reader_fetches_under_the_lease_and_later_ones_share_it(
    make_client, shared_mongo, emulator
):
    _, keepers = await instances(make_client, shared_mongo, 3)
    tokens = {await keeper.get() for keeper in keepers for _ in range(3)}
    assert len(tokens) == 1
    assert fetches(emulator) == 1
    assert emulator.base_token_valid(tokens.pop())


@pytest.mark.parametrize("source", ["stable", "token"])
async def test_multi_instance_day_fetches_once_per_token_lifetime(
    make_client, shared_mongo, emulator, clock, source
):
    """Three instances, each checking every 60 s with jitter, requests every 10 s, one day."""
    clients, keepers = await instances(make_client, shared_mongo, 3, base_token_source=source)
    rng = random.Random(7)
    start = clock.now()
    next_check = [start + rng.uniform(0, 60) for _ in keepers]
    next_request = start
    seen: set[str] = set()
    while clock.now() < start + 86400:
        now = min([*next_check, next_request])
        clock.advance(now - clock.now())
        for i, keeper in enumerate(keepers):
            if next_check[i] <= now:
                await keeper.renew_if_due()
                next_check[i] = now + 60 + rng.uniform(0, 15)
        if next_request <= now:
            keeper = rng.choice(keepers)
            token = await keeper.get()
            # No request ever holds a token WeChat no longer accepts.
            assert emulator.base_token_valid(token), f"stale token at {now - start:.0f} s"
            seen.add(token)
            next_request = now + 10
    # One fetch per token, each token living its full 7200 s less the renewal margin.
    assert fetches(emulator) == len(seen)
    assert 12 <= fetches(emulator) <= 13
    assert emulator.stats["cgi-bin/" + ("stable_token" if source == "stable" else "token")] == (
        fetches(emulator)
    )
    doc = await stored(clients[0])
    assert doc["expiresAt"].timestamp() - clock.now() > 0


async def test_renewal_happens_ahead_of_expiry_with_no_request(make_client, emulator, clock):
    client = await make_client()
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    assert await keeper.renew_if_due() is True  # none stored yet
    first = (await stored(client))["accessToken"]
    clock.advance(TOKEN_LIFETIME - 300)
    assert await keeper.renew_if_due() is False  # not due: WeChat would answer the same token
    clock.advance(80)  # 220 s left, inside the 240 s margin
    assert await keeper.renew_if_due() is True
    second = (await stored(client))["accessToken"]
    assert second != first
    assert emulator.base_token_valid(first)  # WeChat keeps the old one until its own expiry
    assert fetches(emulator) == 2


async def test_a_stopped_lease_holder_is_taken_over_within_the_lease_time(
    make_client, shared_mongo, emulator, clock, settings
):
    clients, (crashed, survivor) = await instances(make_client, shared_mongo, 2)
    await survivor.renew_if_due()
    clock.advance(TOKEN_LIFETIME - 230)
    # The holder takes the lease and stops before fetching (a crash: the lease is never released).
    store = clients[0].app[keys.STORE]
    assert await store.acquire_lease(crashed.lease_name, crashed.instance_id, settings.lease_ttl)
    assert await survivor.renew_if_due() is False
    assert fetches(emulator) == 1
    clock.advance(settings.lease_ttl)
    assert await survivor.renew_if_due() is True
    assert fetches(emulator) == 2
    assert (await stored(clients[1]))["fetchedBy"] == survivor.instance_id
    # Readers never noticed: the old token was valid throughout, the new one now.
    assert emulator.base_token_valid(await survivor.get())


async def test_the_lease_is_released_at_shutdown(make_client, shared_mongo):
    client = await make_client(mongo_client=shared_mongo)
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    store = client.app[keys.STORE]
    await store.acquire_lease(keeper.lease_name, keeper.instance_id, 30)
    other = await make_client(mongo_client=shared_mongo)
    await client.close()
    assert await other.app[keys.STORE].get_lease(keeper.lease_name) is None


async def test_wechat_rejecting_the_token_triggers_one_renewal_and_one_retry(
    make_client, emulator, browser
):
    """Someone else force-refreshed the stable token (the classic cause of 40001)."""
    client = await make_client()
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    old = await keeper.get()
    async with browser.post(
        emulator_url(client, emulator, "cgi-bin/stable_token"),
        json={
            "grant_type": "client_credential",
            "appid": APPID,
            "secret": SECRET,
            "force_refresh": True,
        },
    ) as resp:
        assert (await resp.json())["access_token"] != old
    assert not emulator.base_token_valid(old)

    openid = "oSbx01FollowerWithUnionid0A1"
    info = await keeper.call(
        lambda token: client.app[keys.ACCOUNTS].default.wechat.follower_info(token, openid)
    )
    assert info["subscribe"] == 1
    assert emulator.stats["cgi-bin/user/info"] == 2  # the failed call and its one retry
    assert emulator.base_token_valid((await stored(client))["accessToken"])


def emulator_url(client, emulator, path: str) -> str:
    return f"{client.app[keys.SETTINGS].api_base}/{path}"


async def test_a_late_rejection_never_discards_a_newer_token(make_client, shared_mongo, emulator):
    """Compare-and-set: instance A reports its old token bad after B stored a new one."""
    _, (a, b) = await instances(make_client, shared_mongo, 2, base_token_source="token")
    old = await a.get()
    await b.invalidate(old)
    new = await b.get()
    assert new != old
    await a.invalidate(old)  # A's late 40001 for the old token
    assert await b.get() == new
    assert await a.get() == new
    assert fetches(emulator) == 2


async def test_a_token_that_keeps_failing_is_retried_only_once(make_client, emulator):
    client = await make_client()
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    await keeper.get()
    emulator.faults.set("errcode", errcode=40001, paths=["cgi-bin/user/info"])
    wechat = client.app[keys.ACCOUNTS].default.wechat
    with pytest.raises(Exception, match="40001"):
        await keeper.call(lambda token: wechat.follower_info(token, "oSbx01FollowerWithUnionid0A1"))
    assert emulator.stats["cgi-bin/user/info"] == 2
    assert fetches(emulator) == 2


async def test_busy_wechat_is_retried_with_backoff(make_client, emulator):
    client = await make_client()
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    emulator.faults.set("busy", paths=["cgi-bin/stable_token"], count=2)
    assert await keeper.renew_if_due() is True
    assert emulator.stats["cgi-bin/stable_token"] == 3


async def test_busy_wechat_beyond_the_retries_is_recorded_and_retried_next_check(
    make_client, emulator
):
    client = await make_client()
    keeper = client.app[keys.ACCOUNTS].default.base_tokens
    emulator.faults.set("busy", paths=["cgi-bin/stable_token"], count=3)
    assert await keeper.renew_if_due() is False
    doc = await stored(client)
    assert doc["lastError"]["errcode"] == -1
    assert doc["backoffUntil"] is None  # transient: no back-off
    assert await keeper.renew_if_due() is True
    assert (await stored(client))["lastError"] is None


@pytest.mark.parametrize("errcode", [45009, 40164, 40125])
async def test_refusals_back_off_without_a_retry_storm(
    make_client, shared_mongo, emulator, clock, errcode
):
    clients, keepers = await instances(make_client, shared_mongo, 3)
    emulator.faults.set("errcode", errcode=errcode, paths=["cgi-bin/stable_token"])
    for keeper in keepers:
        assert await keeper.renew_if_due() is False
    assert fetches(emulator) == 1  # one instance asked; the others saw the back-off
    for _ in range(4):  # four minutes: inside even the shortest back-off (300 s)
        clock.advance(60)
        for keeper in keepers:
            await keeper.renew_if_due()
    assert fetches(emulator) == 1
    # Readiness and the follow check say why, in the one error shape.
    ready = await clients[1].get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["details"]["field"] == "base_token"
    assert str(errcode) in body["message"]

    emulator.faults.clear()
    clock.advance(900)
    assert await keepers[2].renew_if_due() is True
    assert (await clients[0].get("/readyz")).status == 200


async def test_the_lease_is_extended_while_a_slow_fetch_is_retried(
    make_client, shared_mongo, emulator, clock, settings
):
    """WeChat answers busy, then slowly; the holder's retries take longer than one LEASE_TTL.
    The lease is renewed before each retry, so a second instance needing a token meanwhile
    waits for the holder's instead of fetching one of its own (with cgi-bin/token, a second
    fetch would cut the first token's life to five minutes)."""
    (holder_client, other), (holder, _) = await instances(
        make_client, shared_mongo, 2, base_token_source="token", wechat_retry_delay=0.2
    )
    emulator.faults.set("busy", paths=["cgi-bin/token"], count=1)
    emulator.faults.set("slow", paths=["cgi-bin/token"], delay=1.0, count=1)
    renewal = asyncio.create_task(holder.renew_if_due())
    assert await until(lambda: emulator.stats["cgi-bin/token"] == 1)
    clock.advance(settings.lease_ttl + 1)  # the first lease has run out by now

    async def lease_live() -> bool:
        lease = await holder_client.app[keys.STORE].get_lease(holder.lease_name)
        return lease is not None and lease["expiresAt"].timestamp() > clock.now()

    await until(lease_live, attempts=50)  # the holder renews it before retrying
    signed_in = other.app[keys.JWT].issue(openid=FOLLOWER, scope="snsapi_base")
    resp = await other.get(
        "/wechat/subscribed", headers={"Authorization": f"Bearer {signed_in.token}"}
    )
    assert resp.status == 200, await resp.text()
    assert await renewal is True
    assert fetches(emulator) == 2  # the busy answer and the one real fetch
    token = (await stored(other))["accessToken"]
    assert (await stored(holder_client))["fetchedBy"] == holder.instance_id
    assert emulator.base_token_valid(token)


async def test_the_lease_covers_a_pause_between_retries_longer_than_lease_ttl(
    make_client, shared_mongo, emulator, clock, settings
):
    """WECHAT_RETRY_DELAY is a setting: a pause longer than one LEASE_TTL must not leave the
    lease free for a second instance to take and fetch a token of its own."""
    (holder_client, _), _ = await instances(
        make_client, shared_mongo, 2, wechat_retry_delay=settings.lease_ttl + 10
    )
    store = holder_client.app[keys.STORE]
    taken_during_pause: list[bool] = []

    async def pause(seconds: float) -> None:
        clock.advance(seconds)  # the pause passes on the manual clock
        taken_during_pause.append(await store.acquire_lease(keeper.lease_name, "other", 30))

    keeper = BaseTokenKeeper(
        store=store,
        wechat=holder_client.app[keys.ACCOUNTS].default.wechat,
        settings=holder_client.app[keys.SETTINGS],
        clock=clock,
        instance_id="holder",
        sleep=pause,
    )
    emulator.faults.set("busy", paths=["cgi-bin/stable_token"], count=1)
    assert await keeper.renew_if_due() is True
    assert taken_during_pause == [False]
    assert fetches(emulator) == 2  # the busy answer and the holder's one real fetch


async def test_a_holder_that_lost_its_lease_leaves_the_fetch_to_the_new_holder(
    make_client, shared_mongo, emulator, clock, settings
):
    (holder_client, _), (holder, taker) = await instances(
        make_client, shared_mongo, 2, wechat_retry_delay=0.2
    )
    emulator.faults.set("busy", paths=["cgi-bin/stable_token"], count=1)
    renewal = asyncio.create_task(holder.renew_if_due())
    assert await until(lambda: emulator.stats["cgi-bin/stable_token"] == 1)
    clock.advance(settings.lease_ttl + 1)
    store = holder_client.app[keys.STORE]
    assert await store.acquire_lease(taker.lease_name, taker.instance_id, settings.lease_ttl)
    assert await renewal is False
    assert emulator.stats["cgi-bin/stable_token"] == 1  # no retry without the lease
    assert (await store.get_lease(holder.lease_name))["owner"] == taker.instance_id
