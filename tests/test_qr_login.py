"""Desktop "scan to follow and sign in", end to end over HTTP: the service creates the session
and its QR code, the emulator plays the user's phone and pushes what WeChat would, the browser
long-polls for the JWT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import jwt as pyjwt
import pytest

from flows import APP_ORIGIN, JWT_SECRET, TOKEN, assert_error_shape, signed
from service import keys
from service.qr.login import POLL_SPREAD, WATCH_INTERVAL
from service.sandbox import SANDBOX_USERS
from service.wechat.xml import build_message

FOLLOWER, VISITOR = SANDBOX_USERS[0], SANDBOX_USERS[1]


async def start(client, **params) -> dict:
    resp = await client.post("/wechat/qrcode/login", params=params)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def scan(phone, openid: str, ticket: str) -> dict:
    resp = await phone.post("/_sandbox/api/scan", json={"openid": openid, "ticket": ticket})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def poll(client, scene: str, wait: int = 0):
    return await client.get(f"/wechat/qrcode/login/{scene}", params={"wait": str(wait)})


async def drained(client) -> None:
    """Let the work that runs after WeChat's reply finish (the follower lookup)."""
    await client.app[keys.BACKGROUND].drain(5)


@pytest.mark.parametrize(
    ("user", "event"), [(VISITOR, "subscribe"), (FOLLOWER, "SCAN")], ids=["new", "follower"]
)
async def test_scanning_signs_the_desktop_in(wired_service, emulator, user, event):
    client, phone = await wired_service()
    session = await start(client, redirectUri=f"{APP_ORIGIN}/desk")
    assert session["status"] == "pending"
    assert (await (await poll(client, session["scene"])).json())["status"] == "pending"

    scanned = await scan(phone, user.openid, session["ticket"])
    assert scanned["event"] == event
    assert scanned["delivered"] is True
    await drained(client)

    done = await poll(client, session["scene"])
    assert done.status == 200
    body = await done.json()
    assert body["status"] == "confirmed"
    assert body["openid"] == user.openid
    assert body["redirectUri"] == f"{APP_ORIGIN}/desk"
    assert body["tokenType"] == "Bearer"
    claims = pyjwt.decode(
        body["token"], JWT_SECRET, algorithms=["HS256"], audience="wechat-oa-auth"
    )
    assert claims["sub"] == user.openid
    assert claims.get("unionid") == user.unionid  # read from cgi-bin/user/info

    stored = await client.app[keys.STORE].get_user(user.openid)
    assert stored["subscribed"] is True
    assert stored["loginCount"] == 1

    # The JWT is handed out once.
    again = await poll(client, session["scene"])
    assert_error_shape(await again.json(), 404, "QR_LOGIN_NOT_FOUND", "scene")


async def test_a_scanned_session_says_so_before_it_is_confirmed(wired_service, emulator):
    client, phone = await wired_service()
    session = await start(client)
    emulator.faults.set("slow", paths=["cgi-bin/user/info"], delay=0.3)
    await scan(phone, VISITOR.openid, session["ticket"])
    state = await (await poll(client, session["scene"])).json()
    assert state["status"] == "scanned"
    assert state["subscribed"] is True and state["newFollower"] is True
    await drained(client)
    assert (await (await poll(client, session["scene"])).json())["status"] == "confirmed"


async def test_a_long_poll_returns_as_soon_as_the_scan_lands(wired_service):
    client, phone = await wired_service()
    session = await start(client)
    waiting = asyncio.create_task(poll(client, session["scene"], wait=20))
    await asyncio.sleep(0)
    await scan(phone, FOLLOWER.openid, session["ticket"])
    resp = await asyncio.wait_for(waiting, 10)
    assert (await resp.json())["status"] in ("scanned", "confirmed")


async def test_safe_mode_scans_work_the_same(wired_service):
    client, phone = await wired_service("safe")
    session = await start(client)
    assert (await scan(phone, FOLLOWER.openid, session["ticket"]))["delivered"] is True
    await drained(client)
    assert (await (await poll(client, session["scene"])).json())["status"] == "confirmed"


async def test_a_session_expires(wired_service, clock):
    client, _ = await wired_service()
    session = await start(client)
    clock.advance(300)
    state = await (await poll(client, session["scene"])).json()
    assert state["status"] == "expired"


async def test_a_second_scan_does_not_steal_the_session(wired_service):
    client, phone = await wired_service()
    session = await start(client)
    await scan(phone, FOLLOWER.openid, session["ticket"])
    await scan(phone, VISITOR.openid, session["ticket"])
    await drained(client)
    body = await (await poll(client, session["scene"])).json()
    assert body["openid"] == FOLLOWER.openid


async def test_image_formats_and_bad_input(wired_service):
    client, _ = await wired_service()
    png = await client.post("/wechat/qrcode/login", params={"format": "png"})
    assert png.status == 201 and png.content_type == "image/png"
    assert png.headers["X-QR-Scene"].startswith("login_")
    assert png.headers["Location"] == f"/wechat/qrcode/login/{png.headers['X-QR-Scene']}"
    bad = await client.post("/wechat/qrcode/login", params={"redirectUri": "https://evil.example"})
    assert_error_shape(await bad.json(), 400, "ORIGIN_NOT_ALLOWED", "redirectUri")
    unknown = await poll(client, "login_doesnotexist")
    assert_error_shape(await unknown.json(), 404, "QR_LOGIN_NOT_FOUND", "scene")
    for wait in (31, "²", "١", "-1"):  # str.isdigit() takes superscripts and other scripts' digits
        bad_wait = await poll(client, "login_x", wait=wait)
        assert_error_shape(await bad_wait.json(), 400, "INVALID_PARAMETER", "wait")


# -- a scan confirms only what WeChat's user/info confirms (issue 11 §1) ----------------------

STRANGER = "oAttackerForgedOpenid0000000"  # an openid this account's WeChat never issued


async def forged_scan(client, clock, scene: str, openid: str, event: str = "SCAN"):
    """A SCAN push the test signs itself with the server-URL token, as anyone holding one
    signed (signature, timestamp, nonce) triple can in plain mode: the body is not signed."""
    body = build_message(
        {
            "ToUserName": "gh_5a4db0c0ffee",
            "FromUserName": openid,
            "CreateTime": int(clock.now()),
            "MsgType": "event",
            "Event": event,
            # A follower's SCAN carries the scene; a new follower's subscribe, qrscene_<scene>.
            "EventKey": scene if event == "SCAN" else f"qrscene_{scene}",
            "Ticket": "forged",
        }
    )
    resp = await client.post("/wechat/message", params=signed(clock, openid=openid), data=body)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("event", ["SCAN", "subscribe"])
async def test_a_forged_scan_naming_an_unknown_openid_signs_nobody_in(client, clock, event):
    """The attack: start a sign-in, push a scan event for one's own scene naming an openid of
    one's choosing. WeChat answers 40003 for it, so the session is never confirmed."""
    session = await start(client)
    await forged_scan(client, clock, session["scene"], STRANGER, event)
    await drained(client)
    body = await (await poll(client, session["scene"], wait=1)).json()
    assert body["status"] == "scanned"
    assert "token" not in body
    assert body["problem"]["code"] == "UNKNOWN_OPENID"
    assert "40003" in body["problem"]["message"]
    if event == "SCAN":  # (a subscribe push records the follow before the check: messages.py)
        assert await client.app[keys.STORE].get_user(STRANGER) is None
    # It stays so until it expires: never a JWT.
    clock.advance(300)
    assert (await (await poll(client, session["scene"])).json())["status"] == "expired"


async def test_a_scan_by_someone_who_does_not_follow_is_not_confirmed(client, clock):
    session = await start(client)
    await forged_scan(client, clock, session["scene"], VISITOR.openid)
    await drained(client)
    body = await (await poll(client, session["scene"])).json()
    assert (body["status"], body["subscribed"]) == ("scanned", False)
    assert body["problem"]["code"] == "NOT_FOLLOWING"
    assert (await client.app[keys.STORE].get_user(VISITOR.openid)).get("loginCount") is None


def user_info_down(emulator) -> None:
    emulator.faults.set("http_error", paths=["cgi-bin/user/info"], status=503)


def user_info_over_quota(emulator) -> None:
    emulator.faults.set("errcode", paths=["cgi-bin/user/info"], errcode=45009)


def no_base_token(emulator) -> None:
    # The token is refused as stale (40001), and a new one cannot be had (IP not whitelisted).
    emulator.faults.set("errcode", paths=["cgi-bin/user/info"], errcode=40001, count=1)
    token_paths = ["cgi-bin/stable_token", "cgi-bin/token"]
    emulator.faults.set("errcode", paths=token_paths, errcode=40164)


@pytest.mark.parametrize("failure", [user_info_down, user_info_over_quota, no_base_token])
async def test_wechat_failing_the_follow_check_leaves_the_session_scanned(
    wired_service, emulator, failure
):
    client, phone = await wired_service()
    session = await start(client)
    failure(emulator)
    await scan(phone, FOLLOWER.openid, session["ticket"])
    await drained(client)
    body = await (await poll(client, session["scene"])).json()
    assert (body["status"], body["subscribed"]) == ("scanned", True)
    assert body["problem"]["code"] == "FOLLOW_CHECK_FAILED"


# -- long polls ------------------------------------------------------------------------------


async def test_many_long_polls_on_a_scanned_session_wait_without_spinning(wired_service, emulator):
    """Ten browsers poll one session. The scan wakes them all with the news; their next polls,
    on a session that is scanned but not yet confirmed (WeChat's user/info is slow), must sleep
    until their time is up, not spin the event loop."""
    client, phone = await wired_service(rate_limit_qrcode=0)  # twenty polls from one address
    session = await start(client)
    emulator.faults.set("slow", paths=["cgi-bin/user/info"], delay=4)
    wall, cpu = time.monotonic(), time.process_time()
    polls = [asyncio.create_task(poll(client, session["scene"], wait=2)) for _ in range(10)]
    await asyncio.sleep(0.2)  # the polls are waiting on the pending session
    await scan(phone, FOLLOWER.openid, session["ticket"])
    woken = await asyncio.wait_for(asyncio.gather(*polls), 1)  # at once, not after 2 s
    assert [(await resp.json())["status"] for resp in woken] == ["scanned"] * 10
    waited = time.monotonic()
    polls = [asyncio.create_task(poll(client, session["scene"], wait=2)) for _ in range(10)]
    answers = await asyncio.gather(*polls)
    assert [(await resp.json())["status"] for resp in answers] == ["scanned"] * 10
    assert time.monotonic() - waited > 2 * (1 - POLL_SPREAD) - 0.1  # they waited out their time
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert cpu < 0.2 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"
    emulator.faults.clear()
    await drained(client)


async def two_instances(make_client, shared_mongo, emulator, emulator_server, aiohttp_client):
    """Instances A (polled) and B (WeChat pushes to it) sharing MongoDB, and WeChat's phone."""
    here = await make_client(mongo_client=shared_mongo, rate_limit_qrcode=0)
    there = await make_client(mongo_client=shared_mongo)
    emulator.config = dataclasses.replace(
        emulator.config, message_url=str(there.make_url("/wechat/message")), token=TOKEN
    )
    return here, there, await aiohttp_client(emulator_server)


async def test_a_push_landing_on_another_instance_wakes_the_poll_here(
    make_client, shared_mongo, emulator, emulator_server, aiohttp_client
):
    """Two instances share MongoDB; the browser long-polls instance A, WeChat's push lands on
    instance B. A learns of the scan from the sessions' change feed (LoginWaiters.watch, read
    every WATCH_INTERVAL), long before the poll's own deadline."""
    here, there, phone = await two_instances(
        make_client, shared_mongo, emulator, emulator_server, aiohttp_client
    )
    session = await start(here)
    waited = time.monotonic()
    polling = asyncio.create_task(poll(here, session["scene"], wait=20))
    await asyncio.sleep(0.2)  # the poll waits on the pending session
    await scan(phone, FOLLOWER.openid, session["ticket"])
    answer = await (await asyncio.wait_for(polling, 10)).json()
    assert time.monotonic() - waited < 5, "woken by the change feed, not by its deadline"
    if answer["status"] == "scanned":  # B's follow check had not finished: poll on
        await drained(there)
        answer = await (await poll(here, session["scene"], wait=5)).json()
    assert answer["status"] == "confirmed" and answer["openid"] == FOLLOWER.openid


async def test_a_poll_that_saw_nothing_leaves_no_stale_answer_once_another_instance_changed_it(
    make_client, shared_mongo, emulator, emulator_server, aiohttp_client
):
    """A poll that waited out its time with nothing new leaves the session as it read it for
    the client's next poll (which then reads nothing). A change that lands on instance B in
    between, and that A's change feed has already told it of, must not be answered with that
    left-over: the next poll sees the scan at once, not at its deadline."""
    here, there, phone = await two_instances(
        make_client, shared_mongo, emulator, emulator_server, aiohttp_client
    )
    session = await start(here)
    quiet = await (await poll(here, session["scene"], wait=1)).json()
    assert quiet["status"] == "pending"
    # A poll of another session keeps A's change feed read while the scan lands on B.
    other = await start(here)
    waiting = asyncio.create_task(poll(here, other["scene"], wait=3))
    await scan(phone, FOLLOWER.openid, session["ticket"])
    await drained(there)
    await waiting  # by now A's change feed has reported the scan
    asked = time.monotonic()
    answer = await (await poll(here, session["scene"], wait=10)).json()
    assert answer["status"] in ("scanned", "confirmed")
    assert time.monotonic() - asked < 2, "answered from what A knew, not after its deadline"


def test_a_change_notified_while_a_poll_reads_wakes_it_and_drops_the_left_over(clock):
    """The poll listens before it reads: a change the change feed reports during the read is
    not missed. A left-over session is dropped by any change, kept QUIET_KEEP at most, and
    only for the account it was read from."""
    from service.qr.login import QUIET_KEEP, LoginWaiters

    async def scenario() -> None:
        waiters = LoginWaiters(clock)
        with waiters.listening("login_a") as change:
            waiters.notify("login_a")  # while the read would be under way
            assert change.done()
        doc = {"_id": "login_a", "status": "pending"}
        waiters.keep_quiet("login_a", "wx1", doc)
        assert waiters.take_quiet("login_a", "wx2") is None  # another account's
        waiters.keep_quiet("login_a", "wx1", doc)
        assert waiters.take_quiet("login_a", "wx1") is doc
        assert waiters.take_quiet("login_a", "wx1") is None  # taken once
        waiters.keep_quiet("login_a", "wx1", doc)
        waiters.notify("login_a")
        assert waiters.take_quiet("login_a", "wx1") is None  # a change drops it
        waiters.keep_quiet("login_a", "wx1", doc)
        clock.advance(QUIET_KEEP + 1)
        assert waiters.take_quiet("login_a", "wx1") is None  # too old

    asyncio.run(scenario())


async def test_the_change_feed_reads_on_from_where_it_last_read(make_client, clock):
    """An instance busy (or its store away) for longer than WATCH_OVERLAP reads late; the next
    read starts where the last one did, so the changes recorded meanwhile still wake polls."""
    client = await make_client()
    waiters, store = client.app[keys.QR_WAITERS], client.app[keys.STORE]
    with waiters.listening("login_keeps_the_feed_read"), waiters.listening("login_b") as change:
        await asyncio.sleep(3 * WATCH_INTERVAL)  # the feed has been read
        await store.record_qr_change("login_b")
        clock.advance(10)  # the next read comes 10 s later, by the service's clock
        await asyncio.wait_for(change, 4 * WATCH_INTERVAL)


async def test_a_change_never_heard_of_is_answered_one_poll_late_at_most(make_client):
    """A change with no notice (written where the change feed does not tell, as when its read
    failed) reaches the client by the next poll's deadline: a poll's left-over read is used by
    one poll only, which reads the session before it answers."""
    client = await make_client(rate_limit_qrcode=0)
    session = await start(client)
    assert (await (await poll(client, session["scene"], wait=1)).json())["status"] == "pending"
    store = client.app[keys.STORE]
    assert await store.qr_login_scanned(session["scene"], FOLLOWER.openid, new_follower=False)
    later = await (await poll(client, session["scene"], wait=1)).json()
    assert later["status"] == "scanned"


async def test_polls_started_together_come_back_spread_over_their_last_30_percent(make_client):
    """10,000 polls renewed at the same moment every 30 s kept an instance saturated for
    seconds; a poll with nothing new ends somewhere in the last 30% of its wait instead."""
    client = await make_client(rate_limit_qrcode=0)
    session = await start(client)
    started = time.monotonic()

    async def ended() -> float:
        assert (await (await poll(client, session["scene"], wait=2)).json())["status"] == "pending"
        return time.monotonic() - started

    times = await asyncio.gather(*(ended() for _ in range(20)))
    assert min(times) >= 2 * (1 - POLL_SPREAD) - 0.05
    assert max(times) - min(times) > 0.02, times
