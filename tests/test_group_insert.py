"""Group commit of states: concurrent writers share insert_many calls, and each still learns
the fate of its own document (on the embedded store, or MongoDB when MONGODB_URI is set)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

import pytest
from pymongo.errors import DuplicateKeyError, ServerSelectionTimeoutError

from flows import CALLBACK, REDIRECT_URI, authorize_at_wechat
from service.sandbox import SANDBOX_USERS
from service.store.group_insert import GroupInsert


@pytest.fixture
def collection(shared_mongo, mongodb_name):
    return shared_mongo[mongodb_name]["group_insert"]


async def test_concurrent_inserts_share_batches_and_all_land(collection):
    writer = GroupInsert(collection)
    await asyncio.gather(*(writer.insert({"_id": f"doc{i}", "n": i}) for i in range(300)))
    assert await collection.count_documents({}) == 300
    assert writer.batches < 10  # one per loop turn, not one per document


async def test_an_idle_writer_writes_each_document_at_once(collection):
    writer = GroupInsert(collection)
    await writer.insert({"_id": "alone"})
    assert await collection.find_one({"_id": "alone"}) == {"_id": "alone"}
    await writer.insert({"_id": "later"})
    assert writer.batches == 2


async def test_a_refused_document_fails_only_its_own_caller(collection):
    writer = GroupInsert(collection, max_batch=50)
    await collection.insert_one({"_id": "taken"})
    ids = [f"doc{i}" for i in range(20)] + ["taken"] + [f"doc{i}" for i in range(20, 40)]
    results = await asyncio.gather(
        *(writer.insert({"_id": i}) for i in ids), return_exceptions=True
    )
    failures = [ids[n] for n, result in enumerate(results) if result is not None]
    assert failures == ["taken"]
    assert isinstance(results[20], DuplicateKeyError)
    assert await collection.count_documents({}) == 41


async def test_a_caller_that_stops_waiting_does_not_disturb_the_others(collection):
    writer = GroupInsert(collection)
    tasks = [asyncio.create_task(writer.insert({"_id": f"doc{i}"})) for i in range(10)]
    await asyncio.sleep(0)  # all ten queued
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(result is None for n, result in enumerate(done) if n != 3)
    for n in range(10):
        if n != 3:
            assert await collection.find_one({"_id": f"doc{n}"}) is not None


async def test_when_mongodb_is_unreachable_every_caller_hears_it(closed_port):
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(f"mongodb://127.0.0.1:{closed_port}", serverSelectionTimeoutMS=200)
    try:
        writer = GroupInsert(client["nowhere"]["states"])
        results = await asyncio.gather(
            *(writer.insert({"_id": i}) for i in range(5)), return_exceptions=True
        )
    finally:
        await client.close()
    assert all(isinstance(result, ServerSelectionTimeoutError) for result in results)
    assert writer.batches == 1


async def test_concurrent_authorizations_each_get_a_working_state(make_client, browser):
    client = await make_client(rate_limit_authorize=0)  # one client address sends all 40
    query = {"redirectUri": REDIRECT_URI, "callback": CALLBACK}
    answers = await asyncio.gather(
        *(client.get("/wechat/authorize", params=query) for _ in range(40))
    )
    assert [answer.status for answer in answers] == [401] * 40
    urls = [(await answer.json())["details"]["fieldValue"] for answer in answers]
    states = {dict(parse_qsl(urlsplit(url).query))["state"] for url in urls}
    assert len(states) == 40
    for url in (urls[0], urls[-1]):
        wechat_answer = await authorize_at_wechat(browser, url, SANDBOX_USERS[0].openid)
        signed_in = await client.get("/wechat/jwt", params=wechat_answer)
        assert signed_in.status == 200
