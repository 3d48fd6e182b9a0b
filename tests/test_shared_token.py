"""The shared access_token (issue 14): the service as the account's one central token server
(中控服务器), handing the base access_token it keeps to the team's other backends.

Through HTTP, against the emulator: what is handed out is the token the service itself uses, no
read makes a WeChat call, invalidation is compare-and-set and cannot be looped, several
instances sharing one store hand out one token, and the key never reaches a log.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import requests
from test_config import PRODUCTION_ENV
from wechatpy.client import WeChatClient

from flows import ADMIN_KEY, APPID
from service import keys
from service.config import ConfigError, load_settings
from service.sandbox import SANDBOX_USERS
from service.shared_token.handout import INVALIDATE_MIN_AGE

FOLLOWER = SANDBOX_USERS[0]
BILLING_KEY = "billing-key-0123456789abcdef"
CRM_KEY = "crm-key-abcdef0123456789"
API_KEYS = (f"billing:{BILLING_KEY}", f"crm:{CRM_KEY}")
BILLING = {"X-API-Key": BILLING_KEY}
CRM = {"X-API-Key": CRM_KEY}


def fetches(emulator) -> int:
    return emulator.stats["cgi-bin/stable_token"] + emulator.stats["cgi-bin/token"]


async def read(client, headers=BILLING, **params) -> dict:
    resp = await client.get("/wechat/access_token", headers=headers, params=params)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.json()


async def report(client, token: str, headers=BILLING):
    return await client.post(
        "/wechat/access_token/invalidate", headers=headers, json={"accessToken": token}
    )


async def test_the_token_handed_out_is_the_services_own_and_reads_never_call_wechat(
    make_client, emulator, clock
):
    client = await make_client(api_keys=API_KEYS)
    own = await client.app[
        keys.ACCOUNTS
    ].default.base_tokens.get()  # the service's own first use fetches it
    assert fetches(emulator) == 1
    calls = sum(emulator.stats.values())
    body = await read(client)
    assert body == {"accessToken": own, "expiresIn": 7200, "appid": APPID}
    for _ in range(20):
        assert (await read(client, CRM))["accessToken"] == own
    clock.advance(1000)
    assert (await read(client, account="default"))["expiresIn"] == 6200
    assert (await read(client, account=APPID))["accessToken"] == own
    assert sum(emulator.stats.values()) == calls  # not one WeChat call for 23 reads
    assert emulator.base_token_valid(own)
    assert client.app[keys.ACCOUNTS].default.shared_token.status() == {"billing": 3, "crm": 20}
    metrics = await (await client.get("/metrics")).text()
    assert 'shared_access_token_handouts_total{account="default",key="crm"} 20.0' in metrics


async def test_with_no_token_kept_the_first_read_waits_for_one_fetch(make_client, emulator):
    client = await make_client(api_keys=API_KEYS)
    tokens = await asyncio.gather(*(read(client) for _ in range(5)))
    assert len({body["accessToken"] for body in tokens}) == 1
    assert fetches(emulator) == 1


async def test_no_key_a_wrong_key_and_api_keys_unset_are_refused(make_client, emulator):
    client = await make_client(api_keys=API_KEYS)
    for method, path in (
        ("GET", "/wechat/access_token"),
        ("POST", "/wechat/access_token/invalidate"),
    ):
        resp = await client.request(method, path, json={"accessToken": "x"})
        body = await resp.json()
        assert (resp.status, body["name"], body["details"]["field"]) == (
            401,
            "UNAUTHORIZED",
            "X-API-Key",
        )
        for wrong in (BILLING_KEY + "x", BILLING_KEY[:-1], "admin", "\u00e9" * 20):
            resp = await client.request(method, path, headers={"X-API-Key": wrong}, json={})
            assert resp.status == 403
            assert (await resp.json())["message"] == "wrong API key"
    disabled = await make_client()
    resp = await disabled.get("/wechat/access_token", headers=BILLING)
    assert resp.status == 403
    assert "set API_KEYS" in (await resp.json())["message"]
    resp = await client.get("/wechat/access_token", headers=BILLING, params={"account": "other"})
    assert (resp.status, (await resp.json())["details"]["field"]) == (400, "account")
    assert fetches(emulator) == 0


async def test_reporting_the_current_token_gets_a_new_one_after_one_fetch(
    make_client, emulator, clock
):
    # cgi-bin/token issues a new token on every call (stable_token would answer the same one).
    client = await make_client(api_keys=API_KEYS, base_token_source="token")
    first = (await read(client))["accessToken"]
    assert fetches(emulator) == 1
    # Too new: a report right after a fetch is refused, so reports cannot loop fetches.
    resp = await report(client, first)
    assert resp.status == 429 and (await resp.json())["name"] == "TOKEN_TOO_NEW"
    assert 1 <= int(resp.headers["Retry-After"]) <= INVALIDATE_MIN_AGE
    assert (await read(client))["accessToken"] == first
    clock.advance(INVALIDATE_MIN_AGE)
    resp = await report(client, first, CRM)
    assert resp.status == 200 and await resp.json() == {"result": "invalidated"}
    second = (await read(client))["accessToken"]
    assert second != first and fetches(emulator) == 2
    assert emulator.base_token_valid(second)
    assert (
        await client.app[keys.ACCOUNTS].default.base_tokens.get() == second
    )  # the service's own, too
    # A late report of the old token changes nothing.
    resp = await report(client, first)
    assert await resp.json() == {"result": "alreadyReplaced"}
    assert (await read(client))["accessToken"] == second
    # Nor does a report of the new one before it is INVALIDATE_MIN_AGE old.
    assert (await report(client, second)).status == 429
    assert (await read(client))["accessToken"] == second
    assert fetches(emulator) == 2


async def test_a_report_needs_the_token_in_a_json_body(make_client):
    client = await make_client(api_keys=API_KEYS)
    path = "/wechat/access_token/invalidate"
    for kwargs, name in (
        ({"data": b"not json"}, "INVALID_PARAMETER"),
        ({"json": ["x"]}, "INVALID_PARAMETER"),
        ({"json": {}}, "MISSING_PARAMETER"),
        ({"json": {"accessToken": 7}}, "INVALID_PARAMETER"),
        ({"json": {"accessToken": "t" * 513}}, "INVALID_PARAMETER"),
    ):
        resp = await client.post(path, headers=BILLING, **kwargs)
        body = await resp.json()
        assert (resp.status, body["name"], body["details"]) == (
            400,
            name,
            {"field": "accessToken", "fieldValue": None},
        )


async def test_two_instances_sharing_a_store_hand_out_one_token(
    make_client, shared_mongo, emulator, clock
):
    a, b = [
        await make_client(api_keys=API_KEYS, mongo_client=shared_mongo, base_token_source="token")
        for _ in range(2)
    ]
    token = (await read(a))["accessToken"]
    assert (await read(b))["accessToken"] == token
    assert (
        await b.app[keys.ACCOUNTS].default.base_tokens.get() == token
    )  # b's own cache holds it now
    clock.advance(INVALIDATE_MIN_AGE)
    assert await (await report(a, token)).json() == {"result": "invalidated"}
    # b reads the store, not its process cache: the dropped token is never handed out again.
    renewed = (await read(b))["accessToken"]
    assert renewed != token
    assert (await read(a))["accessToken"] == renewed
    assert fetches(emulator) == 2


async def test_when_no_token_can_be_had_the_answer_is_503(make_client, emulator):
    client = await make_client(api_keys=API_KEYS)
    emulator.faults.set("errcode", errcode=45009, paths=["cgi-bin/stable_token"], count=1)
    resp = await client.get("/wechat/access_token", headers=BILLING)
    body = await resp.json()
    assert (resp.status, body["name"], body["details"]["field"]) == (
        503,
        "TOKEN_UNAVAILABLE",
        "base_token",
    )
    # The keeper's back-off holds: further reads do not ask WeChat again.
    assert (await client.get("/wechat/access_token", headers=BILLING)).status == 503
    assert fetches(emulator) == 1


async def test_calls_are_logged_by_key_name_never_the_key_or_token(make_client, caplog, clock):
    caplog.set_level(logging.DEBUG)
    client = await make_client(api_keys=API_KEYS, base_token_source="token")
    token = (await read(client))["accessToken"]
    await client.get("/wechat/access_token", headers={"X-API-Key": "wrong-key-0123456789"})
    clock.advance(INVALIDATE_MIN_AGE)
    await report(client, token, CRM)
    await client.get("/wechat/access_token")
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (BILLING_KEY, CRM_KEY, token, "wrong-key-0123456789"):
        assert secret not in text
    info = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.INFO and record.name.startswith("service.shared_token")
    ]
    assert f"base access_token of {APPID} handed out to billing" in info
    assert f"crm reported the base access_token of {APPID} rejected: invalidated" in info


@pytest.mark.parametrize(
    "value, words",
    [
        ("billing", "entry 1 is not name:key"),
        ("bad name:" + "k" * 16, "entry 1 is not name:key"),
        (":" + "k" * 16, "entry 1"),
        ("a:short", "the key of a must be at least 16"),
        (f"a:{'k' * 16},a:{'j' * 16}", "names a twice"),
        (f"a:{'k' * 16},b:{'k' * 16}", "a and b have the same key"),
    ],
)
def test_api_keys_are_checked_at_start_without_naming_a_key(value, words):
    with pytest.raises(ConfigError, match="API_KEYS") as refused:
        load_settings({**PRODUCTION_ENV, "API_KEYS": value})
    assert words in str(refused.value)
    assert "k" * 16 not in str(refused.value) and "short" not in str(refused.value)


def test_api_keys_are_environment_only_and_parsed(tmp_path):
    settings = load_settings({**PRODUCTION_ENV, "API_KEYS": ", ".join(API_KEYS)})
    assert settings.api_keys == API_KEYS
    assert BILLING_KEY not in repr(settings)
    config = tmp_path / "config.toml"
    config.write_text(f'api_keys = ["billing:{BILLING_KEY}"]\n')
    with pytest.raises(ConfigError, match="API_KEYS"):
        load_settings({**PRODUCTION_ENV, "CONFIG_FILE": str(config)})


class SharedTokenClient(WeChatClient):
    """wechatpy's own client, taking its token from the service instead of fetching one: its
    API calls go to the emulator (as they would to WeChat) with the shared token."""

    def __init__(self, service: str, api_base: str, key: str) -> None:
        super().__init__(APPID, None, timeout=5)
        self.API_BASE_URL = f"{api_base}/cgi-bin/"
        self._service, self._key = service, key

    def fetch_access_token(self):
        res = requests.get(
            f"{self._service}/wechat/access_token", headers={"X-API-Key": self._key}, timeout=5
        )
        res.raise_for_status()
        shared = res.json()
        self.session.set(self.access_token_key, shared["accessToken"], shared["expiresIn"])
        self.expires_at = int(self.now()) + shared["expiresIn"]
        return shared

    @staticmethod
    def now() -> float:
        import time

        return time.time()


async def test_wechatpy_calls_wechat_with_the_shared_token(make_client, emulator, emulator_server):
    client = await make_client(api_keys=API_KEYS)
    wechatpy = SharedTokenClient(
        str(client.make_url("")).rstrip("/"),
        str(emulator_server.make_url("")).rstrip("/"),
        BILLING_KEY,
    )
    follower = await asyncio.to_thread(wechatpy.user.get, FOLLOWER.openid)
    assert follower["subscribe"] == 1 and follower["openid"] == FOLLOWER.openid
    assert wechatpy.access_token == await client.app[keys.ACCOUNTS].default.base_tokens.get()
    assert fetches(emulator) == 1  # the service's one fetch; wechatpy fetched none itself


async def test_the_status_page_counts_hand_outs_by_key_name_never_the_key(make_client):
    client = await make_client(api_keys=API_KEYS)
    for headers in (BILLING, BILLING, CRM):
        await read(client, headers)
    resp = await client.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    assert resp.status == 200
    assert (await resp.json())["sharedToken"] == {"billing": 2, "crm": 1}
    text = await resp.text()
    assert BILLING_KEY not in text and CRM_KEY not in text
