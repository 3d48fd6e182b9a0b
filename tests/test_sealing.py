"""Users' WeChat tokens sealed at rest with AES-256-GCM, and data-key rotation."""

from __future__ import annotations

import base64
import os

import pytest

from flows import sign_in
from service import keys
from service.config import ConfigError, load_settings
from service.sandbox import SANDBOX_USERS
from service.store.sealing import Sealer, SealingError, parse_data_keys

USER = SANDBOX_USERS[0]


def data_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


async def raw_token(client, openid=USER.openid, scope="snsapi_base") -> dict:
    return await client.app[keys.STORE].web_tokens.find_one({"openid": openid, "scope": scope})


async def test_stored_tokens_are_sealed_and_still_work(make_client, browser, clock, emulator):
    client = await make_client(data_keys=(data_key("k1"),))
    await sign_in(client, browser, USER.openid)
    raw = await raw_token(client)
    opened = await client.app[keys.STORE].get_web_token(USER.openid, "snsapi_base")
    for field in ("accessToken", "refreshToken"):
        assert raw[field].startswith("sealed:v1:k1:")
        assert opened[field] not in raw[field]
        assert len(opened[field]) == 86  # WeChat's shape, opened
    # The sweep opens the refresh token, and WeChat accepts it.
    clock.advance(7000)
    assert (await client.app[keys.ACCOUNTS].default.web_tokens.sweep()).refreshed == 1
    assert (await raw_token(client))["refreshToken"].startswith("sealed:v1:k1:")


async def test_a_sealed_value_moved_to_another_document_does_not_open(make_client, browser):
    client = await make_client(data_keys=(data_key("k1"),))
    await sign_in(client, browser, SANDBOX_USERS[0].openid)
    await sign_in(client, browser, SANDBOX_USERS[1].openid)
    store = client.app[keys.STORE]
    stolen = (await raw_token(client, SANDBOX_USERS[0].openid))["refreshToken"]
    await store.web_tokens.update_one(
        {"openid": SANDBOX_USERS[1].openid}, {"$set": {"refreshToken": stolen}}
    )
    with pytest.raises(SealingError):
        await store.get_web_token(SANDBOX_USERS[1].openid, "snsapi_base")


async def test_rotation_and_resealing(make_client, shared_mongo, browser):
    old, new = data_key("k1"), data_key("k2")
    first = await make_client(mongo_client=shared_mongo, data_keys=(old,))
    await sign_in(first, browser, USER.openid)
    before = await first.app[keys.STORE].get_web_token(USER.openid, "snsapi_base")

    rotated = await make_client(mongo_client=shared_mongo, data_keys=(new, old))
    store = rotated.app[keys.STORE]
    assert (await store.get_web_token(USER.openid, "snsapi_base"))["refreshToken"] == before[
        "refreshToken"
    ]
    assert await store.reseal_web_tokens() == 1
    assert (await raw_token(rotated))["refreshToken"].startswith("sealed:v1:k2:")
    assert await store.reseal_web_tokens() == 0  # nothing left to do

    only_new = await make_client(mongo_client=shared_mongo, data_keys=(new,))
    after = await only_new.app[keys.STORE].get_web_token(USER.openid, "snsapi_base")
    assert after["refreshToken"] == before["refreshToken"]
    without = await make_client(mongo_client=shared_mongo, data_keys=(old,))
    with pytest.raises(SealingError, match="k2"):
        await without.app[keys.STORE].get_web_token(USER.openid, "snsapi_base")


async def test_tokens_stored_before_sealing_are_read_then_sealed(
    make_client, shared_mongo, browser
):
    plain = await make_client(mongo_client=shared_mongo)
    await sign_in(plain, browser, USER.openid)
    assert not (await raw_token(plain))["refreshToken"].startswith("sealed:")
    sealed = await make_client(mongo_client=shared_mongo, data_keys=(data_key("k1"),))
    store = sealed.app[keys.STORE]
    value = (await store.get_web_token(USER.openid, "snsapi_base"))["refreshToken"]
    assert await store.reseal_web_tokens() == 1
    assert (await store.get_web_token(USER.openid, "snsapi_base"))["refreshToken"] == value


def test_each_seal_uses_a_fresh_nonce():
    sealer = Sealer(parse_data_keys((data_key("k1"),)))
    assert sealer.seal("token", "ctx") != sealer.seal("token", "ctx")
    assert sealer.open(sealer.seal("token", "ctx"), "ctx") == "token"


@pytest.mark.parametrize(
    "value",
    [
        "k1",
        "k1:not-base64!",
        f"k1:{base64.b64encode(b'short').decode()}",
        f"k-1:{base64.b64encode(os.urandom(32)).decode()}",
    ],
)
def test_malformed_data_keys_stop_start_up(value):
    env = {
        "WECHAT_APPID": "wxabcdef0123456789",
        "WECHAT_SECRET": "s",
        "WECHAT_TOKEN": "t",
        "JWT_SECRET": "x" * 32,
        "DATA_KEYS": value,
    }
    with pytest.raises(ConfigError, match="DATA_KEYS"):
        load_settings(env)
