"""Login CSRF: a state completes only for whoever started it (issue 11 §3).

Two bindings: PKCE (RFC 7636) for apps with their own callback page, and /wechat/login's
HttpOnly cookie for the built-in one. Each attack below signed the victim in as the attacker
before the binding existed. Also: a forged code no longer burns a state (§7).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlsplit

import pytest

from flows import (
    APP_ORIGIN,
    CALLBACK,
    REDIRECT_URI,
    assert_error_shape,
    authorize_at_wechat,
    read_state,
    start_sign_in,
)
from service import keys
from service.sandbox import SANDBOX_USERS
from service.signin.state_token import COOKIE as COOKIE_BOUND
from service.signin.state_token import PKCE, binding_of_challenge

VICTIM, ATTACKER = SANDBOX_USERS[0], SANDBOX_USERS[1]
# The emulator's authorized domain is app.example.com: the service's own pages live there too.
SERVICE_URL = "http://app.example.com"
BUILTIN_CALLBACK = f"{SERVICE_URL}/wechat/callback"
COOKIE = "wechat_oa_auth_binding"


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), as an app's page makes them (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def state_of(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["state"]


async def start_pkce(client, challenge: str, scope: str = "snsapi_base") -> str:
    return await start_sign_in(client, scope, codeChallenge=challenge, codeChallengeMethod="S256")


# -- PKCE ---------------------------------------------------------------------------------------


async def test_a_stolen_code_and_state_without_the_verifier_do_not_sign_in(client, browser):
    verifier, challenge = pkce_pair()
    query = await authorize_at_wechat(browser, await start_pkce(client, challenge), VICTIM.openid)

    missing = await client.get("/wechat/jwt", params=query)
    wrong = await client.get("/wechat/jwt", params={**query, "codeVerifier": pkce_pair()[0]})
    bodies = [await missing.json(), await wrong.json()]
    for resp, body in zip((missing, wrong), bodies, strict=True):
        assert resp.status == 400
        assert_error_shape(body, 400, "INVALID_CODE_VERIFIER", "codeVerifier")
    # Missing or wrong: one answer, which never echoes the verifier.
    assert [(b["message"], b["details"]) for b in bodies] == [
        (bodies[0]["message"], {"field": "codeVerifier", "fieldValue": None})
    ] * 2

    # The state was not spent: the app's page, holding the verifier, still finishes.
    done = await client.get("/wechat/jwt", params={**query, "codeVerifier": verifier})
    assert done.status == 200, await done.text()
    assert (await done.json())["openid"] == VICTIM.openid


async def test_a_verifier_is_never_echoed_whatever_is_wrong_with_it(client, browser):
    """Malformed, over-long or repeated: the answer names codeVerifier and never holds it, and
    the state stays usable for the page that has the right one."""
    verifier, challenge = pkce_pair()
    query = await authorize_at_wechat(browser, await start_pkce(client, challenge), VICTIM.openid)
    attempts = [
        [("codeVerifier", "not a verifier!")],
        [("codeVerifier", verifier + "x" * 5000)],
        [("codeVerifier", verifier), ("codeVerifier", verifier)],
    ]
    for attempt in attempts:
        resp = await client.get("/wechat/jwt", params=[*query.items(), *attempt])
        body = await resp.json()
        assert resp.status == 400, body
        assert body["details"] == {"field": "codeVerifier", "fieldValue": None}
        assert verifier not in await resp.text()
    done = await client.get("/wechat/jwt", params={**query, "codeVerifier": verifier})
    assert done.status == 200, await done.text()


async def test_a_code_from_another_flow_does_not_complete_a_pkce_state(client, browser):
    victim_verifier, victim_challenge = pkce_pair()
    victim_url = await start_pkce(client, victim_challenge)
    attacker_verifier, attacker_challenge = pkce_pair()
    attackers = await authorize_at_wechat(
        browser, await start_pkce(client, attacker_challenge), ATTACKER.openid
    )
    # The attacker's own code (and own verifier) against the victim's state.
    for verifier in (None, attacker_verifier):
        params = {"state": state_of(victim_url), "code": attackers["code"]}
        if verifier:
            params["codeVerifier"] = verifier
        resp = await client.get("/wechat/jwt", params=params)
        assert_error_shape(await resp.json(), 400, "INVALID_CODE_VERIFIER", "codeVerifier")

    victims = await authorize_at_wechat(browser, victim_url, VICTIM.openid)
    done = await client.get("/wechat/jwt", params={**victims, "codeVerifier": victim_verifier})
    assert (await done.json())["openid"] == VICTIM.openid


async def test_a_verifier_for_a_state_started_without_a_challenge_is_refused(client, browser):
    query = await authorize_at_wechat(browser, await start_sign_in(client), VICTIM.openid)
    resp = await client.get("/wechat/jwt", params={**query, "codeVerifier": pkce_pair()[0]})
    assert_error_shape(await resp.json(), 400, "INVALID_CODE_VERIFIER", "codeVerifier")
    assert (await client.get("/wechat/jwt", params=query)).status == 200  # not spent


async def test_the_challenge_is_carried_by_the_state(client):
    _, challenge = pkce_pair()
    token, _ = await read_state(client.app, state_of(await start_pkce(client, challenge)))
    assert token.binding_kind == PKCE and token.binding == binding_of_challenge(challenge)


_, GOOD_CHALLENGE = pkce_pair()


@pytest.mark.parametrize(
    ("extra", "name", "field"),
    [
        # RFC 7636's default method is plain, which puts the verifier in the URL: refused,
        # whether named or implied.
        (
            {"codeChallenge": GOOD_CHALLENGE, "codeChallengeMethod": "plain"},
            "INVALID_PARAMETER",
            "codeChallengeMethod",
        ),
        ({"codeChallenge": GOOD_CHALLENGE}, "MISSING_PARAMETER", "codeChallengeMethod"),
        ({"codeChallengeMethod": "S256"}, "MISSING_PARAMETER", "codeChallenge"),
        (
            {"codeChallenge": GOOD_CHALLENGE[:-1], "codeChallengeMethod": "S256"},
            "INVALID_PARAMETER",
            "codeChallenge",
        ),
        (
            {"codeChallenge": GOOD_CHALLENGE[:-1] + "=", "codeChallengeMethod": "S256"},
            "INVALID_PARAMETER",
            "codeChallenge",
        ),
        (
            {"codeChallenge": GOOD_CHALLENGE, "codeChallengeMethod": "s256"},
            "INVALID_PARAMETER",
            "codeChallengeMethod",
        ),
    ],
)
async def test_bad_challenge_parameters_are_refused_and_store_no_state(client, extra, name, field):
    params = {"redirectUri": REDIRECT_URI, "callback": CALLBACK, **extra}
    resp = await client.get("/wechat/authorize", params=params)
    assert_error_shape(await resp.json(), 400, name, field)
    assert await client.app[keys.STORE].states.count_documents({}) == 0


async def test_state_binding_required_refuses_authorize_without_a_challenge(make_client, browser):
    client = await make_client(state_binding="required", public_url=SERVICE_URL)
    resp = await client.get(
        "/wechat/authorize", params={"redirectUri": REDIRECT_URI, "callback": CALLBACK}
    )
    assert_error_shape(await resp.json(), 400, "CODE_CHALLENGE_REQUIRED", "codeChallenge")
    verifier, challenge = pkce_pair()
    query = await authorize_at_wechat(browser, await start_pkce(client, challenge), VICTIM.openid)
    done = await client.get("/wechat/jwt", params={**query, "codeVerifier": verifier})
    assert done.status == 200
    login = await client.get(
        "/wechat/login", params={"redirectUri": REDIRECT_URI}, allow_redirects=False
    )
    assert login.status == 302  # always bound, so always allowed


async def test_a_challenge_for_the_built_in_callback_page_is_refused(make_client):
    """That page has no verifier to send, so such a sign-in could never finish."""
    client = await make_client(public_url=APP_ORIGIN)
    resp = await client.get(
        "/wechat/authorize",
        params={
            "redirectUri": REDIRECT_URI,
            "callback": f"{APP_ORIGIN}/wechat/callback",
            "codeChallenge": GOOD_CHALLENGE,
            "codeChallengeMethod": "S256",
        },
    )
    body = await resp.json()
    assert_error_shape(body, 400, "INVALID_PARAMETER", "codeChallenge")
    assert "/wechat/login" in body["message"]


async def test_a_retried_pkce_state_keeps_its_challenge(client, browser):
    verifier, challenge = pkce_pair()
    denied = await authorize_at_wechat(
        browser, await start_pkce(client, challenge, "snsapi_userinfo"), VICTIM.openid, "deny"
    )
    retry = {"state": denied["state"], "codeVerifier": verifier}
    resp = await client.get("/wechat/authorize/retry", params=retry)
    again = await authorize_at_wechat(
        browser, (await resp.json())["details"]["fieldValue"], VICTIM.openid
    )
    unbound = await client.get("/wechat/jwt", params=again)
    assert (await unbound.json())["name"] == "INVALID_CODE_VERIFIER"
    done = await client.get("/wechat/jwt", params={**again, "codeVerifier": verifier})
    assert done.status == 200


async def test_a_pkce_state_is_renewed_only_for_the_holder_of_its_verifier(client, browser):
    """A state string travels in URLs. Renewed for anyone, it would hand an attacker a fresh
    state bound to the victim's challenge: the attacker authorizes as themself, and the
    victim's page, which still holds the verifier, completes the attacker's sign-in."""
    verifier, challenge = pkce_pair()
    used = await authorize_at_wechat(browser, await start_pkce(client, challenge), VICTIM.openid)
    assert (await client.get("/wechat/jwt", params={**used, "codeVerifier": verifier})).ok
    before = await client.app[keys.STORE].states.count_documents({})
    for attempt in ({}, {"codeVerifier": pkce_pair()[0]}, {"codeVerifier": "short"}):
        resp = await client.get(
            "/wechat/authorize/retry", params={"state": used["state"], **attempt}
        )
        assert_error_shape(await resp.json(), 400, "INVALID_CODE_VERIFIER", "codeVerifier")
    assert await client.app[keys.STORE].states.count_documents({}) == before
    # Nor may a verifier renew a state that had no challenge: the app would think it bound.
    unbound = state_of(await start_sign_in(client))
    resp = await client.get(
        "/wechat/authorize/retry", params={"state": unbound, "codeVerifier": verifier}
    )
    assert_error_shape(await resp.json(), 400, "INVALID_CODE_VERIFIER", "codeVerifier")


async def test_required_binding_refuses_to_retry_an_unbound_state(
    make_client, shared_mongo, browser
):
    optional = await make_client(mongo_client=shared_mongo)
    state = state_of(await start_sign_in(optional))
    required = await make_client(mongo_client=shared_mongo, state_binding="required")
    resp = await required.get("/wechat/authorize/retry", params={"state": state})
    assert_error_shape(await resp.json(), 400, "CODE_CHALLENGE_REQUIRED", "codeChallenge")


# -- /wechat/login and the built-in callback page ----------------------------------------------


def set_cookie(resp, name: str = COOKIE) -> dict:
    """The Set-Cookie morsel for `name`, as a dict of its attributes (plus its value)."""
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    morsel = jar[name]
    return {"value": morsel.value, **{k.lower(): v for k, v in morsel.items() if v != ""}}


async def login(client, scope: str = "snsapi_base") -> tuple[str, str]:
    """GET /wechat/login as a browser: WeChat's URL and the binding cookie's value. The test
    client's own cookie jar is emptied, so each request below says which cookie it carries."""
    resp = await client.get(
        "/wechat/login",
        params={"redirectUri": REDIRECT_URI, "scope": scope},
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    client.session.cookie_jar.clear()
    return resp.headers["Location"], set_cookie(resp)["value"]


def holding(value: str, name: str = COOKIE) -> dict[str, str]:
    return {"Cookie": f"{name}={value}"}


@pytest.fixture
async def service(make_client):
    return await make_client(public_url=SERVICE_URL)


async def test_login_binds_the_state_to_the_browser_and_redirects_to_wechat(service, settings):
    resp = await service.get(
        "/wechat/login",
        params={"redirectUri": REDIRECT_URI, "scope": "snsapi_userinfo"},
        allow_redirects=False,
    )
    assert resp.status == 302
    url = resp.headers["Location"]
    assert url.startswith(f"{settings.wechat_open_base}/connect/oauth2/authorize?")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["redirect_uri"] == BUILTIN_CALLBACK
    assert query["scope"] == "snsapi_userinfo"
    cookie = set_cookie(resp)
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == "600"
    assert "secure" not in cookie  # PUBLIC_URL is http
    token, context = await read_state(service.app, query["state"])
    # Only a hash of the secret travels in the state (and is stored nowhere): neither a URL in
    # a log nor the database can complete anyone's sign-in.
    assert cookie["value"] not in query["state"]
    assert token.binding_kind == COOKIE_BOUND
    assert token.binding == hashlib.sha256(cookie["value"].encode()).digest()[:16]
    assert context["callback"] == BUILTIN_CALLBACK


async def test_on_https_the_cookie_is_secure_and_host_prefixed(make_client):
    client = await make_client(public_url="https://app.example.com")
    resp = await client.get(
        "/wechat/login", params={"redirectUri": REDIRECT_URI}, allow_redirects=False
    )
    cookie = set_cookie(resp, f"__Host-{COOKIE}")
    assert cookie["secure"] is True and cookie["path"] == "/" and "domain" not in cookie


async def test_a_victim_opening_the_attackers_callback_link_is_not_signed_in(service, browser):
    """The attacker starts a sign-in, authorizes as themselves and sends the victim the
    callback link. The victim's browser lacks the attacker's cookie."""
    url, attackers_cookie = await login(service)
    link = await authorize_at_wechat(browser, url, ATTACKER.openid, callback=BUILTIN_CALLBACK)
    _, victims_cookie = await login(service)  # the victim may have a sign-in of their own

    for headers in ({}, holding(victims_cookie), holding("x" * 43), holding("é")):
        resp = await service.get("/wechat/jwt", params=link, headers=headers)
        assert resp.status == 400
        body = await resp.json()
        assert_error_shape(body, 400, "STATE_NOT_BOUND", COOKIE)
        assert body["details"]["fieldValue"] is None
        assert "Set-Cookie" not in resp.headers

    # Not spent: the attacker, who started it, is still the only one who can finish it.
    done = await service.get("/wechat/jwt", params=link, headers=holding(attackers_cookie))
    assert done.status == 200, await done.text()
    assert (await done.json())["openid"] == ATTACKER.openid
    cleared = set_cookie(done)
    assert cleared["max-age"] == "0" and cleared["value"] == ""


async def test_the_built_in_callback_is_refused_a_verifier(service, browser):
    url, cookie = await login(service)
    link = await authorize_at_wechat(browser, url, VICTIM.openid, callback=BUILTIN_CALLBACK)
    resp = await service.get(
        "/wechat/jwt", params={**link, "codeVerifier": pkce_pair()[0]}, headers=holding(cookie)
    )
    assert (await resp.json())["name"] == "INVALID_CODE_VERIFIER"
    assert (await service.get("/wechat/jwt", params=link, headers=holding(cookie))).status == 200


async def test_a_second_sign_in_in_the_same_browser_keeps_its_cookie(service, browser):
    """Two tabs: the second /wechat/login reuses the browser's secret, so the first tab's
    sign-in still completes."""
    first_url, secret = await login(service)
    second = await service.get(
        "/wechat/login",
        params={"redirectUri": REDIRECT_URI},
        headers=holding(secret),
        allow_redirects=False,
    )
    service.session.cookie_jar.clear()
    assert set_cookie(second)["value"] == secret
    link = await authorize_at_wechat(browser, first_url, VICTIM.openid, callback=BUILTIN_CALLBACK)
    assert (await service.get("/wechat/jwt", params=link, headers=holding(secret))).status == 200


@pytest.mark.parametrize(
    ("params", "name", "field"),
    [
        ({}, "MISSING_PARAMETER", "redirectUri"),
        ({"redirectUri": "https://evil.example.net/x"}, "ORIGIN_NOT_ALLOWED", "redirectUri"),
        ({"redirectUri": REDIRECT_URI, "scope": "snsapi_login"}, "INVALID_PARAMETER", "scope"),
        ({"redirectUri": f"{APP_ORIGIN}＃@evil.example.net/"}, "INVALID_PARAMETER", "redirectUri"),
    ],
)
async def test_login_refusals_are_json_errors_and_set_no_cookie(service, params, name, field):
    resp = await service.get("/wechat/login", params=params, allow_redirects=False)
    assert_error_shape(await resp.json(), 400, name, field)
    assert "Set-Cookie" not in resp.headers
    assert await service.app[keys.STORE].states.count_documents({}) == 0


async def test_login_refuses_the_callback_page_itself_as_redirect_uri(make_client):
    client = await make_client(public_url=APP_ORIGIN)
    resp = await client.get(
        "/wechat/login",
        params={"redirectUri": f"{APP_ORIGIN}/wechat/callback"},
        allow_redirects=False,
    )
    assert_error_shape(await resp.json(), 400, "INVALID_PARAMETER", "redirectUri")


async def test_retrying_a_cookie_bound_state_binds_the_new_one_to_the_asking_browser(
    service, browser
):
    url, _ = await login(service, "snsapi_userinfo")
    denied = await authorize_at_wechat(
        browser, url, VICTIM.openid, "deny", callback=BUILTIN_CALLBACK
    )
    # The callback page asks for the retry from the browser that lands on it.
    resp = await service.get("/wechat/authorize/retry", params={"state": denied["state"]})
    assert resp.status == 401
    new_cookie = set_cookie(resp)
    assert new_cookie["httponly"] is True and new_cookie["samesite"] == "Lax"
    service.session.cookie_jar.clear()
    retried = (await resp.json())["details"]["fieldValue"]
    again = await authorize_at_wechat(browser, retried, VICTIM.openid, callback=BUILTIN_CALLBACK)
    refused = await service.get("/wechat/jwt", params=again)
    assert (await refused.json())["name"] == "STATE_NOT_BOUND"
    done = await service.get("/wechat/jwt", params=again, headers=holding(new_cookie["value"]))
    assert (await done.json())["redirectUri"] == REDIRECT_URI


async def test_login_is_rate_limited_with_authorize(make_client):
    client = await make_client(public_url=SERVICE_URL, rate_limit_authorize=1, rate_limit_burst=1)
    params = {"redirectUri": REDIRECT_URI}
    assert (await client.get("/wechat/login", params=params, allow_redirects=False)).status == 302
    resp = await client.get("/wechat/authorize", params={**params, "callback": CALLBACK})
    assert (await resp.json())["name"] == "RATE_LIMITED"


# -- a forged code does not burn the state (§7) ------------------------------------------------


async def test_a_forged_well_formed_code_does_not_burn_the_state(client, browser, emulator):
    query = await authorize_at_wechat(browser, await start_sign_in(client), VICTIM.openid)
    forged = await client.get("/wechat/jwt", params={**query, "code": "0" * 32})
    body = await forged.json()
    assert_error_shape(body, 400, "INVALID_CODE", "code")
    assert "40029" in body["message"]
    done = await client.get("/wechat/jwt", params=query)
    assert done.status == 200, await done.text()
    assert (await done.json())["openid"] == VICTIM.openid


async def test_a_used_code_still_spends_the_state(client, browser):
    used = await authorize_at_wechat(browser, await start_sign_in(client), VICTIM.openid)
    assert (await client.get("/wechat/jwt", params=used)).status == 200
    fresh = await authorize_at_wechat(browser, await start_sign_in(client), VICTIM.openid)
    reused = await client.get("/wechat/jwt", params={**fresh, "code": used["code"]})
    assert "40163" in (await reused.json())["message"]
    spent = await client.get("/wechat/jwt", params=fresh)
    assert (await spent.json())["name"] == "INVALID_STATE"


@pytest.mark.parametrize(
    ("name", "value", "max_age", "secure"),
    [
        ("__Host-wechat_oa_auth_binding", "A-_z" * 10 + "abc", 600, True),
        ("wechat_oa_auth_binding", "0" * 43, 600, False),
        ("wechat_oa_auth_binding", "", 0, False),  # cleared once the sign-in completed
    ],
)
def test_the_binding_cookie_is_written_as_aiohttp_would_write_it(name, value, max_age, secure):
    """The Set-Cookie text is built directly (BindingCookie.header), not through set_cookie:
    the same attributes, byte for byte."""
    from aiohttp import web

    from service.signin.flow import BindingCookie

    response = web.Response()
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="Lax"
    )
    expected = response.cookies[name].OutputString()
    assert BindingCookie(name, value, max_age, secure).header() == expected
