"""GET /wechat/authorize: validation, the stored state, the WeChat URL, the Bearer shortcut."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from flows import (
    APP_ORIGIN,
    APPID,
    CALLBACK,
    REDIRECT_URI,
    assert_error_shape,
    authorize_at_wechat,
    read_state,
    start_sign_in,
)
from service import keys
from service.signin.state_token import HmacSha256


async def test_answers_401_with_the_wechat_url_in_the_documented_order(client, settings):
    resp = await client.get(
        "/wechat/authorize",
        params={"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": "snsapi_userinfo"},
    )
    assert resp.status == 401
    body = await resp.json()
    assert_error_shape(body, 401, "UNAUTHORIZED", "authorization url")
    assert body["message"] == "UNAUTHORIZED"
    url = body["details"]["fieldValue"]
    base, fragment = url.split("#")
    assert fragment == "wechat_redirect"
    parts = urlsplit(base)
    assert f"{parts.scheme}://{parts.netloc}" == settings.wechat_open_base
    assert parts.path == "/connect/oauth2/authorize"
    pairs = parse_qsl(parts.query)
    assert [k for k, _ in pairs] == [
        "appid",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "forcePopup",
    ]
    values = dict(pairs)
    assert values["appid"] == APPID
    assert values["redirect_uri"] == CALLBACK
    assert f"redirect_uri={quote(CALLBACK, safe='')}&" in parts.query
    assert values["response_type"] == "code"
    assert values["scope"] == "snsapi_userinfo"
    assert values["forcePopup"] == "false"
    assert re.fullmatch(r"[A-Za-z0-9]{1,128}", values["state"])


async def test_the_state_refers_to_the_app_urls_and_lives_ten_minutes(client, clock):
    url = await start_sign_in(client)
    state = dict(parse_qsl(urlsplit(url).query))["state"]
    token, context = await read_state(client.app, state)
    assert context["redirectUri"] == REDIRECT_URI
    assert context["callback"] == CALLBACK
    assert context["scope"] == "snsapi_base"
    life = token.issued_at + 600 - clock.now()
    assert 599 <= life <= 600


async def test_starting_sign_ins_writes_no_state(client):
    """The state carries its proof: authorize stores the app's redirect context once, and
    nothing per request (no unauthenticated write, no memory growing with traffic)."""
    store = client.app[keys.STORE]
    for _ in range(5):
        await start_sign_in(client)
    assert await store.states.count_documents({}) == 0
    assert await store.state_contexts.count_documents({}) == 1
    await start_sign_in(client, scope="snsapi_userinfo")  # another context
    assert await store.state_contexts.count_documents({}) == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # the MAC
        lambda s: s[:20] + ("0" if s[20] != "0" else "1") + s[21:],  # the nonce
        lambda s: s[:2] + "00000000" + s[10:],  # issued at: the start of time
        lambda s: s[:-2],  # cut
    ],
    ids=["mac", "nonce", "issued-at", "cut"],
)
async def test_a_changed_state_is_unknown(client, browser, change):
    url = await start_sign_in(client)
    query = await authorize_at_wechat(browser, url, "oSbx01FollowerWithUnionid0A1")
    resp = await client.get("/wechat/jwt", params={**query, "state": change(query["state"])})
    assert_error_shape(await resp.json(), 400, "INVALID_STATE", "state")
    assert (await client.get("/wechat/jwt", params=query)).status == 200  # the real one works


@pytest.mark.parametrize(
    ("key", "data", "expected"),
    [  # RFC 4231's test cases 1 (a short key) and 6 (a key longer than SHA-256's block)
        (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b"),
        (
            b"\xaa" * 131,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f",
        ),
    ],
)
def test_the_states_mac_is_hmac_sha256(key, data, expected):
    """States are MACed with precomputed HMAC pads (state_token.HmacSha256): still HMAC-SHA256,
    so states issued by an instance before an upgrade verify on one after it."""
    assert HmacSha256(key).mac(data).hex() == expected


async def test_a_query_checked_before_still_gets_its_own_fresh_state(client, browser):
    """The same app page's query is checked once and remembered (signin/routes.py: _prepared);
    every sign-in started from it still gets a state of its own, each completing once, for the
    page it names; a query refused is refused again, never remembered."""
    landing = f"{REDIRECT_URI}?next=%2Forders&x=1"
    urls = [await start_sign_in(client, redirectUri=landing) for _ in range(3)]
    assert len({dict(parse_qsl(urlsplit(u).query))["state"] for u in urls}) == 3
    for url in urls:
        query = await authorize_at_wechat(browser, url, "oSbx01FollowerWithUnionid0A1")
        resp = await client.get("/wechat/jwt", params=query)
        assert resp.status == 200 and (await resp.json())["redirectUri"] == landing
        assert (await client.get("/wechat/jwt", params=query)).status == 400  # used
    for _ in range(2):
        refused = await client.get(
            "/wechat/authorize",
            params={"redirectUri": "https://evil.example/x", "callback": CALLBACK},
        )
        assert_error_shape(await refused.json(), 400, "ORIGIN_NOT_ALLOWED", "redirectUri")


async def test_pkce_queries_are_not_remembered(client):
    """Each PKCE sign-in brings a new challenge, so its query never repeats: remembering it
    would only push out the app pages' queries that do."""
    remembered = client.app[keys.ACCOUNTS].default.sign_in.prepared
    for _ in range(2):
        await start_sign_in(client)
    assert len(remembered) == 1
    for n in range(5):
        verifier = f"verifier-{n:02d}-" + "v" * 40
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        await start_sign_in(
            client, codeChallenge=challenge.rstrip(b"=").decode(), codeChallengeMethod="S256"
        )
    assert len(remembered) == 1


def test_remembered_queries_are_bounded():
    """A client sending ever new queries cannot grow the memory of checked ones."""
    from service.signin.flow import PreparedRequests

    remembered = PreparedRequests(limit=3)
    for n in range(5):
        remembered.put((n,), object())
    assert [remembered.get((n,)) is not None for n in range(5)] == [False, False, True, True, True]


async def test_every_call_gets_a_fresh_state(client):
    urls = {await start_sign_in(client) for _ in range(5)}
    states = {dict(parse_qsl(urlsplit(u).query))["state"] for u in urls}
    assert len(states) == 5


async def test_scope_defaults_to_snsapi_base(client):
    resp = await client.get(
        "/wechat/authorize", params={"redirectUri": REDIRECT_URI, "callback": CALLBACK}
    )
    url = (await resp.json())["details"]["fieldValue"]
    assert dict(parse_qsl(urlsplit(url).query))["scope"] == "snsapi_base"


@pytest.mark.parametrize(
    ("params", "name", "field", "value"),
    [
        ({"callback": CALLBACK}, "MISSING_PARAMETER", "redirectUri", None),
        ({"redirectUri": REDIRECT_URI}, "MISSING_PARAMETER", "callback", None),
        ({"redirectUri": "", "callback": CALLBACK}, "MISSING_PARAMETER", "redirectUri", ""),
        (
            {"redirectUri": REDIRECT_URI, "callback": REDIRECT_URI},
            "INVALID_PARAMETER",
            "callback",
            REDIRECT_URI,
        ),
        (
            {"redirectUri": "javascript:alert(1)", "callback": CALLBACK},
            "INVALID_PARAMETER",
            "redirectUri",
            "javascript:alert(1)",
        ),
        (
            {"redirectUri": REDIRECT_URI, "callback": "/relative/callback"},
            "INVALID_PARAMETER",
            "callback",
            "/relative/callback",
        ),
        (
            {"redirectUri": "ftp://app.example.com/x", "callback": CALLBACK},
            "INVALID_PARAMETER",
            "redirectUri",
            "ftp://app.example.com/x",
        ),
        (
            {"redirectUri": "https://evil.example.net/steal", "callback": CALLBACK},
            "ORIGIN_NOT_ALLOWED",
            "redirectUri",
            "https://evil.example.net/steal",
        ),
        (
            {"redirectUri": REDIRECT_URI, "callback": "https://evil.example.net/cb"},
            "ORIGIN_NOT_ALLOWED",
            "callback",
            "https://evil.example.net/cb",
        ),
        (
            # The userinfo trick: the host is evil.example.net, not app.example.com.
            {"redirectUri": f"{APP_ORIGIN}@evil.example.net/x", "callback": CALLBACK},
            "INVALID_PARAMETER",
            "redirectUri",
            f"{APP_ORIGIN}@evil.example.net/x",
        ),
        (
            {"redirectUri": "http://app.example.com/signed-in", "callback": CALLBACK},
            "ORIGIN_NOT_ALLOWED",
            "redirectUri",
            "http://app.example.com/signed-in",
        ),
        (
            {"redirectUri": f"{REDIRECT_URI}#x", "callback": CALLBACK},
            "INVALID_PARAMETER",
            "redirectUri",
            f"{REDIRECT_URI}#x",
        ),
        (
            {"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": "snsapi_login"},
            "INVALID_PARAMETER",
            "scope",
            "snsapi_login",
        ),
    ],
)
async def test_bad_input_is_refused_naming_the_parameter(client, params, name, field, value):
    resp = await client.get("/wechat/authorize", params=params)
    assert resp.status == 400
    body = await resp.json()
    assert_error_shape(body, 400, name, field)
    assert body["details"]["fieldValue"] == value


async def test_bad_input_stores_no_state(client):
    await client.get("/wechat/authorize", params={"redirectUri": REDIRECT_URI})
    store = client.app[keys.STORE]
    assert await store.states.count_documents({}) == 0


async def test_a_repeated_parameter_is_refused(client):
    resp = await client.get(
        "/wechat/authorize",
        params=[
            ("redirectUri", REDIRECT_URI),
            ("redirectUri", f"{APP_ORIGIN}/other"),
            ("callback", CALLBACK),
        ],
    )
    assert resp.status == 400
    assert (await resp.json())["details"]["field"] == "redirectUri"


async def test_an_allowed_url_is_judged_by_each_instances_own_allowlist(make_client):
    """URLs that passed are remembered per allowlist: another configuration in the same
    process (a test, a reload) must judge them afresh."""
    params = {"redirectUri": REDIRECT_URI, "callback": CALLBACK}
    allowing = await make_client()
    assert (await allowing.get("/wechat/authorize", params=params)).status == 401
    refusing = await make_client(allowed_redirect_origins=("https://other.example.org",))
    resp = await refusing.get("/wechat/authorize", params=params)
    assert resp.status == 400
    assert (await resp.json())["name"] == "ORIGIN_NOT_ALLOWED"
    assert (await allowing.get("/wechat/authorize", params=params)).status == 401


async def test_origin_comparison_ignores_case_and_default_port(client):
    resp = await client.get(
        "/wechat/authorize",
        params={"redirectUri": "HTTPS://App.Example.com:443/x", "callback": CALLBACK},
    )
    assert resp.status == 401


async def test_valid_bearer_token_for_the_scope_answers_200_with_its_claims(client):
    issued = client.app[keys.JWT].issue(openid="o-test-user", scope="snsapi_userinfo")
    for scope in ("snsapi_base", "snsapi_userinfo"):
        resp = await client.get(
            "/wechat/authorize",
            params={"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": scope},
            headers={"Authorization": f"Bearer {issued.token}"},
        )
        assert resp.status == 200
        claims = await resp.json()
        assert claims["sub"] == "o-test-user"
        assert claims["scope"] == "snsapi_userinfo"


async def test_base_token_does_not_cover_userinfo(client):
    issued = client.app[keys.JWT].issue(openid="o-test-user", scope="snsapi_base")
    resp = await client.get(
        "/wechat/authorize",
        params={"redirectUri": REDIRECT_URI, "callback": CALLBACK, "scope": "snsapi_userinfo"},
        headers={"Authorization": f"Bearer {issued.token}"},
    )
    assert resp.status == 401


async def test_expired_or_forged_bearer_token_means_authorize_again(client, clock):
    issued = client.app[keys.JWT].issue(openid="o-test-user", scope="snsapi_base")
    clock.advance(3601)
    for token in (issued.token, issued.token[:-2] + "xx", "not-a-jwt"):
        resp = await client.get(
            "/wechat/authorize",
            params={"redirectUri": REDIRECT_URI, "callback": CALLBACK},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 401
        assert (await resp.json())["details"]["field"] == "authorization url"


@pytest.mark.parametrize(
    "url",
    [
        # urlsplit NFKC-normalizes the netloc and refuses what turns into # or @ there.
        f"{APP_ORIGIN}＃/x",
        "https://attacker＠app.example.com/x",
        # A broken IPv6 literal, a bracket alone, a port that is not a port.
        "https://[app.example.com/x",
        "https://app.example.com]/x",
        "https://[::1/x",
        "https://app.example.com:99999/x",
        "https://app.example.com:x/y",
    ],
)
@pytest.mark.parametrize("parameter", ["redirectUri", "callback"])
async def test_a_malformed_url_is_a_400_naming_the_parameter(client, url, parameter):
    params = {"redirectUri": REDIRECT_URI, "callback": CALLBACK, parameter: url}
    resp = await client.get("/wechat/authorize", params=params)
    assert resp.status == 400
    body = await resp.json()
    assert_error_shape(body, 400, "INVALID_PARAMETER", parameter)
    assert body["details"]["fieldValue"] == url
