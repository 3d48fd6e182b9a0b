"""Several accounts (issue 14): configuration, and an Official Account beside an Open Platform
website app, each signing people in with its own openid, their records linked by unionid.

Over HTTP against the emulator, which knows the tests' account (APPID) and its website app
(connect/qrconnect, service/sandbox/website.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from flows import (
    ADMIN_KEY,
    APP_ORIGIN,
    APPID,
    CALLBACK,
    JWT_SECRET,
    REDIRECT_URI,
    TOKEN,
    assert_error_shape,
    authorize_at_wechat,
    sign_in,
    signed,
)
from service import keys
from service.accounts import Account
from service.config import ConfigError, load_settings
from service.oidc_config import OidcClient
from service.sandbox import SANDBOX_USERS, SandboxAccount
from service.sandbox.state import DEFAULT_WEBSITE_APPID, DEFAULT_WEBSITE_SECRET
from service.sandbox.users import account_openid, website_openid

FOLLOWER, NO_UNIONID = SANDBOX_USERS[0], SANDBOX_USERS[2]
WEB = Account("web", "website", DEFAULT_WEBSITE_APPID, secret=DEFAULT_WEBSITE_SECRET)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def claims_of(token: str) -> dict:
    return jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="wechat-oa-auth")


# -- configuration ------------------------------------------------------------------------------

ENV = {
    "WECHAT_APPID": "wx00000000000000aa",
    "WECHAT_SECRET": "real-secret",
    "WECHAT_TOKEN": "real-token",
    "JWT_SECRET": "j" * 40,
    "MONGODB_URI": "mongodb://db:27017",
}
SECOND_TABLE = {"name": "second", "kind": "oa", "appid": "wx00000000000000bb"}
WEB_TABLE = {"name": "web", "kind": "website", "appid": "wx00000000000000cc"}


def load(accounts: list[dict], **env: str):
    return load_settings({**ENV, "ACCOUNTS": json.dumps(accounts), **env})


def test_accounts_come_from_config_with_their_secrets_from_the_environment(tmp_path: Path):
    config = tmp_path / "deploy.toml"
    config.write_text(
        '[[accounts]]\nname = "second"\nkind = "oa"\nappid = "wx00000000000000bb"\n'
        'message_mode = "safe"\n\n'
        '[[accounts]]\nname = "web"\nkind = "website"\nappid = "wx00000000000000cc"\n'
    )
    secret_file = tmp_path / "web-secret"
    secret_file.write_text("web-secret-from-a-file\n")
    settings = load_settings(
        {
            **ENV,
            "CONFIG_FILE": str(config),
            "WECHAT_SECOND_SECRET": "second-secret",
            "WECHAT_SECOND_TOKEN": "second-token",
            "WECHAT_SECOND_AES_KEY": "k" * 43,
            "WECHAT_WEB_SECRET_FILE": str(secret_file),
        }
    )
    default, second, web = settings.all_accounts
    assert (default.name, default.appid, default.secret) == (
        "default",
        ENV["WECHAT_APPID"],
        "real-secret",
    )
    assert (second.kind, second.secret, second.token, second.message_mode) == (
        "oa",
        "second-secret",
        "second-token",
        "safe",
    )
    assert (web.kind, web.secret) == ("website", "web-secret-from-a-file")
    assert "second-secret" not in repr(settings)
    # Each account's services see their own credentials in the wechat_* fields.
    view = settings.for_account(second)
    assert (view.wechat_appid, view.wechat_secret, view.wechat_message_mode) == (
        second.appid,
        "second-secret",
        "safe",
    )


@pytest.mark.parametrize(
    ("accounts", "env", "complaint"),
    [
        ([SECOND_TABLE], {"WECHAT_SECOND_TOKEN": "t"}, "WECHAT_SECOND_SECRET is not set"),
        ([SECOND_TABLE], {"WECHAT_SECOND_SECRET": "s"}, "WECHAT_SECOND_TOKEN is not set"),
        (
            [{**WEB_TABLE}],
            {"WECHAT_WEB_SECRET": "s", "WECHAT_WEB_TOKEN": "t"},
            "website app: it has no server token",
        ),
        ([{**SECOND_TABLE, "name": "default"}], {}, "belongs to the account of WECHAT_APPID"),
        ([{**SECOND_TABLE, "name": "Second"}], {}, "name must be 1 to 32 of a-z"),
        (
            [{**SECOND_TABLE, "appid": ENV["WECHAT_APPID"]}],
            {"WECHAT_SECOND_SECRET": "s", "WECHAT_SECOND_TOKEN": "t"},
            "its own appid",
        ),
        ([{**SECOND_TABLE, "appid": "not-an-appid"}], {}, "appid must be WeChat's wx"),
        ([{**SECOND_TABLE, "kind": "mini"}], {}, "kind must be oa or website"),
        ([{**SECOND_TABLE, "secret": "x"}], {}, "secrets never live in config files"),
        ([SECOND_TABLE, SECOND_TABLE], {}, "each name must be unique"),
        (
            [{**SECOND_TABLE, "message_mode": "safe"}],
            {"WECHAT_SECOND_SECRET": "s", "WECHAT_SECOND_TOKEN": "t"},
            "needs WECHAT_SECOND_AES_KEY",
        ),
        (
            [SECOND_TABLE],
            {
                "WECHAT_SECOND_SECRET": "5a4db0c0ffee0002sandboxsecond000",
                "WECHAT_SECOND_TOKEN": "t",
            },
            "public sandbox value",
        ),
    ],
)
def test_a_wrong_account_stops_the_start_naming_what_to_fix(accounts, env, complaint):
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        load(accounts, **env)


def test_an_oidc_client_names_a_configured_account():
    clients = json.dumps(
        [
            {
                "client_id": "c",
                "redirect_uris": ["https://a.example/cb"],
                "public": True,
                "account": "nobody",
            }
        ]
    )
    with pytest.raises(ConfigError, match="account 'nobody' is not configured"):
        load([], OIDC_CLIENTS=clients, OIDC_PRIVATE_KEY_FILE="", JWT_ALGORITHM="HS256", SANDBOX="1")


def test_website_apps_alone_need_no_wechat_appid():
    env = {k: v for k, v in ENV.items() if not k.startswith("WECHAT_")}
    settings = load_settings({**env, "ACCOUNTS": json.dumps([WEB_TABLE]), "WECHAT_WEB_SECRET": "s"})
    assert [a.name for a in settings.all_accounts] == ["web"]


def test_sandbox_mode_runs_two_official_accounts_and_a_website_app():
    settings = load_settings({"SANDBOX": "1"})
    assert [(a.name, a.kind) for a in settings.all_accounts] == [
        ("default", "oa"),
        ("second", "oa"),
        ("web", "website"),
    ]
    assert len({a.appid for a in settings.all_accounts}) == 3


# -- a website app beside the Official Account ---------------------------------------------------


@pytest.fixture
async def service(make_client):
    return await make_client(accounts=(WEB,))


async def website_sign_in(service, browser, user=FOLLOWER) -> dict:
    """/wechat/authorize?account=web, the desktop QR page confirmed on the phone, /wechat/jwt."""
    resp = await service.get(
        "/wechat/authorize",
        params={"redirectUri": REDIRECT_URI, "callback": CALLBACK, "account": "web"},
    )
    assert resp.status == 401, await resp.text()
    url = (await resp.json())["details"]["fieldValue"]
    page, _, fragment = url.partition("#")
    assert fragment == "wechat_redirect"
    assert "/connect/qrconnect?" in page
    sent = query_of(page)
    assert sent["appid"] == DEFAULT_WEBSITE_APPID and sent["scope"] == "snsapi_login"
    assert list(sent)[:5] == ["appid", "redirect_uri", "response_type", "scope", "state"]
    # The desktop page shows a QR code; the phone confirms it (the emulator's control API).
    async with browser.get(page) as desktop:
        assert desktop.status == 200
        uuid = re.search(r"/connect/confirm\?uuid=([A-Za-z0-9_-]+)", await desktop.text())
    assert uuid
    wechat = page.split("/connect/qrconnect", 1)[0]
    async with browser.post(
        f"{wechat}/_sandbox/api/qrconnect/confirm",
        json={"uuid": uuid.group(1), "openid": user.openid},
    ) as confirm:
        location = (await confirm.json())["location"]
    assert location.startswith(CALLBACK + "?")
    resp = await service.get("/wechat/jwt", params=query_of(location))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_website_app_signs_in_through_qrconnect_with_its_own_openid(service, browser):
    answer = await website_sign_in(service, browser)
    claims = claims_of(answer["token"])
    assert claims["appid"] == DEFAULT_WEBSITE_APPID
    assert claims["sub"] == website_openid(FOLLOWER) != FOLLOWER.openid
    assert claims["unionid"] == FOLLOWER.unionid
    assert claims["scope"] == answer["scope"] == "snsapi_login"
    # snsapi_login reads the profile as snsapi_userinfo does.
    assert answer["user"]["nickname"] == FOLLOWER.nickname
    assert answer["redirectUri"] == REDIRECT_URI


async def test_one_person_two_accounts_two_records_linked_by_unionid(service, browser):
    in_account = await sign_in(service, browser, FOLLOWER.openid, "snsapi_userinfo")
    on_website = await website_sign_in(service, browser)
    assert in_account["openid"] != on_website["openid"]
    store = service.app[keys.STORE]
    linked = await store.linked_users(FOLLOWER.unionid)
    assert sorted((u["appid"], u["openid"]) for u in linked) == sorted(
        [(APPID, FOLLOWER.openid), (DEFAULT_WEBSITE_APPID, website_openid(FOLLOWER))]
    )
    # Each account's view finds its own record only.
    assert await store.get_user(website_openid(FOLLOWER)) is None
    web_store = store.for_account(DEFAULT_WEBSITE_APPID)
    assert (await web_store.get_user(website_openid(FOLLOWER)))["loginCount"] == 1
    assert await web_store.get_web_token(website_openid(FOLLOWER), "snsapi_login") is not None


async def test_a_token_of_one_account_does_not_stand_for_another(service, browser):
    own = await sign_in(service, browser, FOLLOWER.openid, "snsapi_userinfo")
    params = {"redirectUri": REDIRECT_URI, "callback": CALLBACK}
    headers = {"Authorization": f"Bearer {own['token']}"}
    # The account's own token answers its claims: already signed in.
    assert (await service.get("/wechat/authorize", params=params, headers=headers)).status == 200
    # The website app must sign the person in itself: its openid is another.
    resp = await service.get(
        "/wechat/authorize", params={**params, "account": "web"}, headers=headers
    )
    assert resp.status == 401


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/wechat/authorize", {"account": "nobody"}, "account"),
        ("/wechat/authorize", {"account": "web", "scope": "snsapi_userinfo"}, "scope"),
        ("/wechat/authorize", {"scope": "snsapi_login"}, "scope"),
        ("/wechat/qrcode", {"scene": "1", "account": "web"}, "account"),
        ("/wechat/jssdk/config", {"url": "https://app.example.com/", "account": "web"}, "account"),
    ],
)
async def test_what_an_account_cannot_do_is_refused_naming_it(service, path, params, field):
    query = {"redirectUri": REDIRECT_URI, "callback": CALLBACK} if "authorize" in path else {}
    resp = await service.get(path, params={**query, **params})
    assert resp.status == 400
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", field)


async def test_an_account_is_named_by_its_appid_too(service):
    resp = await service.get(
        "/wechat/authorize",
        params={
            "redirectUri": REDIRECT_URI,
            "callback": CALLBACK,
            "account": DEFAULT_WEBSITE_APPID,
        },
    )
    assert "/connect/qrconnect?" in (await resp.json())["details"]["fieldValue"]


async def test_an_oidc_client_signs_in_through_its_account(make_client, browser, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "oidc.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    issuer, redirect = "http://app.example.com", "https://spa.example.com/cb"
    provider = await make_client(
        public_url=issuer,
        accounts=(WEB,),
        oidc_clients=(OidcClient("site", (redirect,), public=True, account="web"),),
        oidc_private_key_file=str(key),
    )
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    resp = await provider.get(
        "/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": "site",
            "redirect_uri": redirect,
            "scope": "openid",
            "state": "st",
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    assert resp.status == 302
    page = resp.headers["Location"].partition("#")[0]
    assert "/connect/qrconnect?" in page and query_of(page)["appid"] == DEFAULT_WEBSITE_APPID
    async with browser.get(page) as desktop:
        uuid = re.search(r"/connect/confirm\?uuid=([A-Za-z0-9_-]+)", await desktop.text())
    wechat = page.split("/connect/qrconnect", 1)[0]
    async with browser.post(
        f"{wechat}/_sandbox/api/qrconnect/confirm",
        json={"uuid": uuid.group(1), "openid": FOLLOWER.openid},
    ) as confirm:
        at_callback = query_of((await confirm.json())["location"])
    back = await provider.get("/oidc/callback", params=at_callback, allow_redirects=False)
    code = query_of(back.headers["Location"])["code"]
    tokens = await (
        await provider.post(
            "/oidc/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "client_id": "site",
                "code_verifier": verifier,
            },
        )
    ).json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["appid"] == DEFAULT_WEBSITE_APPID
    assert claims["sub"] == website_openid(FOLLOWER)
    assert claims["unionid"] == FOLLOWER.unionid


# -- two Official Accounts side by side ---------------------------------------------------------

SECOND_APPID = "wx0000000000000b02"
SECOND_SECRET = "second-secret-0123456789abcdef01"
SECOND_TOKEN = "secondtoken"
SECOND = Account("second", "oa", SECOND_APPID, secret=SECOND_SECRET, token=SECOND_TOKEN)
API_KEY = "backend-key-0123456789"


@pytest.fixture
async def accounts(make_client, emulator, emulator_server, aiohttp_client):
    """The service with a second Official Account and the website app, wired to the emulator
    both ways: each account's pushes reach its own /wechat/message path, signed with its own
    server token. Returns (service, phone)."""
    service = await make_client(accounts=(SECOND, WEB), api_keys=(f"backend:{API_KEY}",))
    emulator.config = dataclasses.replace(
        emulator.config,
        message_url=str(service.make_url("/wechat/message")),
        token=TOKEN,
        more_accounts=(
            SandboxAccount(
                appid=SECOND_APPID,
                secret=SECOND_SECRET,
                token=SECOND_TOKEN,
                message_url=str(service.make_url("/wechat/message/second")),
            ),
        ),
    )
    return service, await aiohttp_client(emulator_server)


async def sign_in_to(service, browser, account: str, user=FOLLOWER) -> dict:
    params = {"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": "snsapi_userinfo"}
    resp = await service.get("/wechat/authorize", params={**params, "account": account})
    url = (await resp.json())["details"]["fieldValue"]
    resp = await service.get(
        "/wechat/jwt", params=await authorize_at_wechat(browser, url, user.openid)
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_each_official_account_sees_its_own_openid_and_one_unionid(
    accounts, browser, emulator
):
    service, _ = accounts
    second = await sign_in_to(service, browser, "second")
    default = await sign_in_to(service, browser, "default")
    claims = claims_of(second["token"])
    assert claims["appid"] == SECOND_APPID
    assert claims["sub"] == account_openid(FOLLOWER, SECOND_APPID, emulator.config)
    assert claims["sub"] not in (FOLLOWER.openid, website_openid(FOLLOWER))
    assert claims_of(default["token"])["sub"] == FOLLOWER.openid
    assert claims["unionid"] == claims_of(default["token"])["unionid"] == FOLLOWER.unionid
    web = await website_sign_in(service, browser)
    linked = await service.app[keys.STORE].linked_users(FOLLOWER.unionid)
    assert sorted(u["appid"] for u in linked) == sorted(
        [APPID, SECOND_APPID, DEFAULT_WEBSITE_APPID]
    )
    assert {u["openid"] for u in linked} == {second["openid"], default["openid"], web["openid"]}


async def test_each_account_keeps_and_hands_out_its_own_base_token(accounts, emulator):
    service, _ = accounts
    headers = {"X-API-Key": API_KEY}
    tokens = {}
    for account in ("default", "second", "second", SECOND_APPID):
        resp = await service.get(
            "/wechat/access_token", params={"account": account}, headers=headers
        )
        assert resp.status == 200, await resp.text()
        tokens.setdefault(account if account != SECOND_APPID else "second", set()).add(
            (await resp.json())["accessToken"]
        )
    assert len(tokens["second"]) == 1 and tokens["second"] != tokens["default"]
    # WeChat was asked once per account, each with its own credentials.
    for appid in (APPID, SECOND_APPID):
        assert emulator.account_stats[appid]["cgi-bin/stable_token"] == 1
    resp = await service.get("/wechat/access_token", params={"account": "web"}, headers=headers)
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "account")

    status = await (
        await service.get("/wechat/tokens/status", headers={"X-Admin-Key": ADMIN_KEY})
    ).json()
    assert set(status["accounts"]) == {"default", "second", "web"}
    assert status["accounts"]["second"]["baseToken"]["appid"] == SECOND_APPID
    assert status["accounts"]["second"]["baseToken"]["valid"] is True
    assert status["accounts"]["web"] == {
        "kind": "website",
        "appid": DEFAULT_WEBSITE_APPID,
        "webTokens": {},
    }
    assert status["baseToken"]["appid"] == APPID  # the top: the first account's, as before
    metrics = await (await service.get("/metrics")).text()
    assert 'wechat_base_token_remaining_seconds{account="second"} 7200.0' in metrics
    assert 'shared_access_token_handouts_total{account="second",key="backend"} 3.0' in metrics


async def test_scan_to_sign_in_through_the_second_account(accounts, emulator):
    service, phone = accounts
    resp = await service.post("/wechat/qrcode/login", params={"account": "second"})
    assert resp.status == 201, await resp.text()
    started = await resp.json()
    assert started["poll"].endswith(f"/wechat/qrcode/login/{started['scene']}?account=second")
    # The code is the second account's: its scan is pushed to /wechat/message/second.
    scanned = await phone.post(
        "/_sandbox/api/scan", json={"openid": FOLLOWER.openid, "ticket": started["ticket"]}
    )
    assert scanned.status == 200, await scanned.text()
    assert (await scanned.json())["appid"] == SECOND_APPID
    await service.app[keys.BACKGROUND].drain(5)
    # The default account knows no such session; the second one has it confirmed.
    other = await service.get(f"/wechat/qrcode/login/{started['scene']}")
    assert other.status == 404
    answer = await (await service.get(started["poll"])).json()
    assert answer["status"] == "confirmed", answer
    claims = claims_of(answer["token"])
    assert claims["appid"] == SECOND_APPID
    assert claims["sub"] == account_openid(FOLLOWER, SECOND_APPID, emulator.config)


async def test_a_push_signed_for_one_account_is_refused_at_the_other(accounts, clock):
    service, _ = accounts
    query = signed(clock)  # with the default account's server token
    check = {**query, "echostr": "42"}
    assert (await service.get("/wechat/message", params=check)).status == 200
    refused = await service.get("/wechat/message/second", params={**signed(clock), "echostr": "42"})
    assert refused.status == 403
    assert (await service.get("/wechat/message/nobody", params=check)).status == 404
    assert (await service.get("/wechat/message/web", params=check)).status == 404


async def test_a_jssdk_signature_of_the_second_account_verifies_at_wechat(accounts):
    service, phone = accounts
    page = f"{APP_ORIGIN}/share?item=7"
    resp = await service.get("/wechat/jssdk/config", params={"url": page, "account": "second"})
    assert resp.status == 200, await resp.text()
    config = await resp.json()
    assert config["appId"] == SECOND_APPID
    checked = await phone.post("/_sandbox/jssdk/verify", json={**config, "url": page})
    assert await checked.json() == {"ok": True, "errMsg": "config:ok"}
    default = await (await service.get("/wechat/jssdk/config", params={"url": page})).json()
    # The default account's ticket does not sign for the second account.
    forged = await phone.post(
        "/_sandbox/jssdk/verify", json={**default, "appId": SECOND_APPID, "url": page}
    )
    assert (await forged.json())["ok"] is False


async def test_the_follow_check_asks_the_account_of_the_token(accounts, browser):
    service, phone = accounts
    second = await sign_in_to(service, browser, "second")
    default = await sign_in_to(service, browser, "default")
    unfollowed = await phone.post(
        "/_sandbox/api/unfollow", json={"openid": FOLLOWER.openid, "appid": SECOND_APPID}
    )
    assert unfollowed.status == 200, await unfollowed.text()

    async def subscribed(token: str, **params: str) -> bool:
        headers = {"Authorization": f"Bearer {token}"}
        resp = await service.get("/wechat/subscribed", params=params, headers=headers)
        assert resp.status == 200, await resp.text()
        return (await resp.json())["subscribed"]

    assert await subscribed(second["token"]) is False
    assert await subscribed(default["token"]) is True
    # A website app's sign-in asks an Official Account through the unionid linking the person's
    # records: the first one by default, or the one named.
    web = await website_sign_in(service, browser)
    assert await subscribed(web["token"]) is True
    assert await subscribed(web["token"], account="second") is False
    assert await subscribed(default["token"], account="second") is False
    # Someone the second account has never seen cannot be looked up there.
    other = await website_sign_in(service, browser, SANDBOX_USERS[1])
    resp = await service.get(
        "/wechat/subscribed",
        params={"account": "second"},
        headers={"Authorization": f"Bearer {other['token']}"},
    )
    assert_error_shape(await resp.json(), 404, "USER_NOT_LINKED", "unionid")


async def test_each_account_refreshes_its_own_users_web_tokens(accounts, browser, clock, emulator):
    service, _ = accounts
    second = await sign_in_to(service, browser, "second")
    clock.advance(7200 - 600)  # within the refresh margin
    services = service.app[keys.ACCOUNTS]
    assert (await services.get("default").web_tokens.sweep()).refreshed == 0
    report = await services.get("second").web_tokens.sweep()
    assert report.refreshed == 1
    stored = (
        await service.app[keys.STORE]
        .for_account(SECOND_APPID)
        .get_web_token(second["openid"], "snsapi_userinfo")
    )
    assert stored["refreshedAt"] is not None


async def test_sandbox_mode_runs_the_three_accounts_end_to_end(sandbox_service, browser):
    """SANDBOX=1 alone: the mounted emulator knows `second` and `web`, and pushes a scan of the
    second account's code to /wechat/message/second over loopback, as WeChat would."""
    base = sandbox_service
    async with browser.post(f"{base}/wechat/qrcode/login", params={"account": "second"}) as resp:
        assert resp.status == 201, await resp.text()
        started = await resp.json()
    person = SANDBOX_USERS[0]
    async with browser.post(
        f"{base}/sandbox/_sandbox/api/scan",
        json={"openid": person.openid, "ticket": started["ticket"]},
    ) as resp:
        assert resp.status == 200, await resp.text()
    async with browser.get(f"{base}{started['poll']}", params={"wait": "5"}) as resp:
        answer = await resp.json()
    assert answer["status"] == "confirmed", answer
    second = claims_of_unverified(answer["token"])
    assert second["appid"] == "wx5a4db0c0ffee0002"
    # The website app signs the same person in with its own openid, the same unionid.
    async with browser.get(
        f"{base}/wechat/login",
        params={"redirectUri": f"{base}/demo/landing", "account": "web"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith(f"{base}/sandbox/connect/qrconnect?")
    async with browser.get(
        f"{base}/wechat/tokens/status", headers={"X-Admin-Key": "sandbox-admin-key"}
    ) as resp:
        status = await resp.json()
    assert {name: a["kind"] for name, a in status["accounts"].items()} == {
        "default": "oa",
        "second": "oa",
        "web": "website",
    }


def claims_of_unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})
