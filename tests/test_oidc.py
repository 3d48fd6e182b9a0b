"""The OpenID Connect provider, through HTTP against the emulator: discovery, the code flow
with PKCE, the token endpoint's client authentication and errors (RFC 6749 §5.2), the ID token
(verified with the published JWKS), userinfo (RFC 6750), and errors before and after a
redirect_uri can be trusted (RFC 6749 §4.1.2.1)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flows import APPID, assert_error_shape, authorize_at_wechat
from service import keys
from service.oidc_config import OidcClient, secret_hash
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER

ISSUER = "http://app.example.com"  # the emulator authorizes app.example.com (conftest)
CALLBACK = f"{ISSUER}/oidc/callback"
SPA_REDIRECT = "https://spa.example.com/cb"
BACKEND_REDIRECT = "https://backend.example.com/cb"
BACKEND_SECRET = "backend-secret-" + "x" * 32
CLIENTS = (
    OidcClient("spa", (SPA_REDIRECT,), public=True),
    OidcClient("backend", (BACKEND_REDIRECT,), secret_hash=secret_hash(BACKEND_SECRET)),
    OidcClient("base-only", (SPA_REDIRECT,), public=True, scopes=("openid",)),
)
FOLLOWER = SANDBOX_USERS[0]


@pytest.fixture
def key_file(tmp_path) -> str:
    path = tmp_path / "oidc.pem"
    private = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


@pytest.fixture
async def provider(make_client, key_file):
    return await make_client(
        public_url=ISSUER, oidc_clients=CLIENTS, oidc_private_key_file=key_file
    )


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def authorize(client, **params: str):
    return await client.get("/oidc/authorize", params=params, allow_redirects=False)


async def code_for(
    client,
    browser,
    *,
    client_id: str = "spa",
    redirect_uri: str = SPA_REDIRECT,
    scope: str = "openid profile",
    challenge: str | None = None,
    openid: str = FOLLOWER.openid,
    nonce: str = "n-0S6_WzA2Mj",
) -> dict[str, str]:
    """The whole front channel: /oidc/authorize, WeChat, /oidc/callback; the client's query."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "af0ifjsldkj",
        "nonce": nonce,
    }
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    resp = await authorize(client, **params)
    assert resp.status == 302, await resp.text()
    wechat = resp.headers["Location"]
    assert query_of(wechat)["redirect_uri"] == CALLBACK
    at_callback = await authorize_at_wechat(browser, wechat, openid, callback=CALLBACK)
    back = await client.get("/oidc/callback", params=at_callback, allow_redirects=False)
    assert back.status == 302, await back.text()
    location = back.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return query_of(location)


async def jwks_keys(client) -> dict[str, object]:
    keys_ = (await (await client.get("/.well-known/jwks.json")).json())["keys"]
    return {key["kid"]: jwt.PyJWK(key) for key in keys_}


async def test_discovery_names_the_endpoints_and_what_they_support(provider):
    resp = await provider.get("/.well-known/openid-configuration")
    assert resp.status == 200
    meta = await resp.json()
    assert meta["issuer"] == ISSUER
    assert meta["authorization_endpoint"] == f"{ISSUER}/oidc/authorize"
    assert meta["token_endpoint"] == f"{ISSUER}/oidc/token"
    assert meta["userinfo_endpoint"] == f"{ISSUER}/oidc/userinfo"
    assert meta["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert meta["response_types_supported"] == ["code"]
    assert meta["subject_types_supported"] == ["public"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }


async def test_a_public_client_signs_in_with_pkce_and_gets_a_verifiable_id_token(provider, browser):
    verifier, challenge = pkce()
    answer = await code_for(provider, browser, challenge=challenge)
    assert answer["state"] == "af0ifjsldkj" and answer["iss"] == ISSUER
    resp = await provider.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": SPA_REDIRECT,
            "client_id": "spa",
            "code_verifier": verifier,
        },
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    tokens = await resp.json()
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "openid profile"
    header = jwt.get_unverified_header(tokens["id_token"])
    key = (await jwks_keys(provider))[header["kid"]]
    claims = jwt.decode(
        tokens["id_token"], key, algorithms=["ES256"], audience="spa", issuer=ISSUER
    )
    assert claims["sub"] == FOLLOWER.openid and claims["appid"] == APPID
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["name"] == FOLLOWER.nickname and claims["picture"] == FOLLOWER.headimgurl
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]

    info = await provider.get(
        "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status == 200
    assert (await info.json()) == {
        k: v for k, v in claims.items() if k in ("sub", "appid", "unionid", "name", "picture")
    }


async def test_without_profile_the_person_is_not_asked_and_no_profile_is_given(provider, browser):
    verifier, challenge = pkce()
    answer = await code_for(provider, browser, scope="openid email", challenge=challenge)
    tokens = await (
        await provider.post(
            "/oidc/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": SPA_REDIRECT,
                "client_id": "spa",
                "code_verifier": verifier,
            },
        )
    ).json()
    assert tokens["scope"] == "openid"
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert "name" not in claims and "picture" not in claims


async def test_a_confidential_client_authenticates_by_basic_or_post(provider, browser):
    for how in ("basic", "post"):
        answer = await code_for(
            provider, browser, client_id="backend", redirect_uri=BACKEND_REDIRECT
        )
        form = {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": BACKEND_REDIRECT,
        }
        headers = {}
        if how == "basic":
            raw = f"backend:{BACKEND_SECRET}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            form |= {"client_id": "backend", "client_secret": BACKEND_SECRET}
        resp = await provider.post("/oidc/token", data=form, headers=headers)
        assert resp.status == 200, (how, await resp.text())


async def test_a_wrong_secret_is_invalid_client_with_401(provider, browser):
    answer = await code_for(provider, browser, client_id="backend", redirect_uri=BACKEND_REDIRECT)
    raw = base64.b64encode(b"backend:wrong").decode()
    resp = await provider.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": BACKEND_REDIRECT,
        },
        headers={"Authorization": f"Basic {raw}"},
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    body = await resp.json()
    assert body["error"] == "invalid_client"
    assert body["name"] == "INVALID_CLIENT" and body["status"] == 401


async def test_a_code_used_twice_is_refused_and_revokes_what_it_gave(provider, browser):
    verifier, challenge = pkce()
    answer = await code_for(provider, browser, challenge=challenge)
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": SPA_REDIRECT,
        "client_id": "spa",
        "code_verifier": verifier,
    }
    first = await (await provider.post("/oidc/token", data=form)).json()
    again = await provider.post("/oidc/token", data=form)
    assert again.status == 400
    assert (await again.json())["error"] == "invalid_grant"
    info = await provider.get(
        "/oidc/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert info.status == 401
    assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]


async def test_the_code_is_bound_to_its_verifier_its_client_and_its_redirect(provider, browser):
    verifier, challenge = pkce()
    for wrong in (
        {"code_verifier": pkce()[0]},
        {"code_verifier": None},
        {"redirect_uri": "https://spa.example.com/other"},
    ):
        answer = await code_for(provider, browser, challenge=challenge)
        form = {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": SPA_REDIRECT,
            "client_id": "spa",
            "code_verifier": verifier,
        }
        form = {k: v for k, v in (form | wrong).items() if v is not None}
        resp = await provider.post("/oidc/token", data=form)
        assert resp.status == 400, wrong
        assert (await resp.json())["error"] == "invalid_grant", wrong


async def test_codes_live_sixty_seconds(provider, browser, clock):
    verifier, challenge = pkce()
    answer = await code_for(provider, browser, challenge=challenge)
    clock.advance(61)
    resp = await provider.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": SPA_REDIRECT,
            "client_id": "spa",
            "code_verifier": verifier,
        },
    )
    assert (await resp.json())["error"] == "invalid_grant"


async def test_errors_before_a_trusted_redirect_uri_are_a_page_never_a_redirect(provider):
    for params in (
        {"client_id": "nobody", "redirect_uri": SPA_REDIRECT},
        {"client_id": "spa", "redirect_uri": "https://evil.example.com/cb"},
        {"client_id": "spa"},
    ):
        query = {"response_type": "code", "scope": "openid", **params}
        as_browser = await provider.get(
            "/oidc/authorize", params=query, headers={"Accept": "text/html"}, allow_redirects=False
        )
        assert as_browser.status == 400 and "Location" not in as_browser.headers
        assert as_browser.content_type == "text/html"
        as_api = await authorize(provider, **query)
        body = await as_api.json()
        assert_error_shape(body, 400, "AUTHORIZATION_REFUSED", body["details"]["field"])
        assert body["id"] not in await as_browser.text()  # each answer has its own id


async def test_errors_after_a_trusted_redirect_uri_go_back_to_the_client(provider):
    base = {"client_id": "spa", "redirect_uri": SPA_REDIRECT, "state": "xyz"}
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    cases = [
        ({"response_type": "token", "scope": "openid", **pkce_params}, "unsupported_response_type"),
        ({"response_type": "code", "scope": "profile", **pkce_params}, "invalid_scope"),
        ({"response_type": "code", "scope": "openid"}, "invalid_request"),  # public: PKCE
        (
            {
                "response_type": "code",
                "scope": "openid",
                "code_challenge": challenge,
                "code_challenge_method": "plain",
            },
            "invalid_request",
        ),
    ]
    for params, error in cases:
        resp = await authorize(provider, **base, **params)
        assert resp.status == 302, params
        answer = query_of(resp.headers["Location"])
        assert resp.headers["Location"].startswith(SPA_REDIRECT + "?")
        assert answer["error"] == error, params
        assert answer["state"] == "xyz" and answer["iss"] == ISSUER


async def test_a_denial_at_wechat_is_access_denied(provider, browser):
    _, challenge = pkce()
    resp = await authorize(
        provider,
        response_type="code",
        client_id="spa",
        redirect_uri=SPA_REDIRECT,
        scope="openid profile",
        state="s1",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    at_callback = await authorize_at_wechat(
        browser, resp.headers["Location"], FOLLOWER.openid, action="deny", callback=CALLBACK
    )
    back = await provider.get("/oidc/callback", params=at_callback, allow_redirects=False)
    answer = query_of(back.headers["Location"])
    assert answer["error"] == "access_denied" and answer["state"] == "s1"
    # The request is spent: the same callback again is an unknown link.
    again = await provider.get("/oidc/callback", params=at_callback, allow_redirects=False)
    assert again.status == 400


async def test_a_snapshot_page_user_is_access_denied_and_nobody_is_stored(provider, browser):
    _, challenge = pkce()
    resp = await authorize(
        provider,
        response_type="code",
        client_id="spa",
        redirect_uri=SPA_REDIRECT,
        scope="openid profile",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    at_callback = await authorize_at_wechat(
        browser, resp.headers["Location"], SNAPSHOT_USER.openid, callback=CALLBACK
    )
    back = await provider.get("/oidc/callback", params=at_callback, allow_redirects=False)
    assert query_of(back.headers["Location"])["error"] == "access_denied"
    assert await provider.app[keys.STORE].get_user(SNAPSHOT_USER.openid) is None


async def test_userinfo_without_a_token_says_so_as_rfc_6750_does(provider):
    resp = await provider.get("/oidc/userinfo")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="oidc"'
    resp = await provider.post("/oidc/userinfo", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_the_id_token_key_is_published_beside_the_app_jwt_keys(provider):
    keys_ = await jwks_keys(provider)
    assert any(key.algorithm_name == "ES256" for key in keys_.values())


async def test_sandbox_mode_signs_id_tokens_with_an_ephemeral_key(sandbox_server):
    from aiohttp import ClientSession

    async with ClientSession() as http:
        base = str(sandbox_server.make_url("")).rstrip("/")
        meta = await (await http.get(f"{base}/.well-known/openid-configuration")).json()
        assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
        published = (await (await http.get(f"{base}/.well-known/jwks.json")).json())["keys"]
        assert [key["alg"] for key in published] == ["ES256"]


# -- clients in config/ ------------------------------------------------------------------------

PRODUCTION = {
    "PUBLIC_URL": "https://auth.example.com",
    "MONGODB_URI": "mongodb://db.example.com",
    "WECHAT_APPID": "wx0123456789abcdef",
    "WECHAT_SECRET": "s" * 32,
    "WECHAT_TOKEN": "token",
    "JWT_SECRET": "j" * 40,
    "ADMIN_KEY": "a" * 32,
}
CLIENTS_TOML = """
[[oidc_clients]]
client_id = "shop-web"
redirect_uris = ["https://shop.example.com/cb"]
public = true

[[oidc_clients]]
client_id = "shop-backend"
redirect_uris = ["https://shop.example.com/server-cb"]
secret_hash = "{hash}"
scopes = ["openid"]
"""


def test_clients_come_from_the_deployments_config_file(tmp_path, key_file):
    from service.config import load_settings

    config = tmp_path / "clients.toml"
    config.write_text(CLIENTS_TOML.format(hash=secret_hash(BACKEND_SECRET)))
    settings = load_settings(
        {**PRODUCTION, "CONFIG_FILE": str(config), "OIDC_PRIVATE_KEY_FILE": key_file}
    )
    public, backend = settings.oidc_clients
    assert public.public and public.redirect_uris == ("https://shop.example.com/cb",)
    assert backend.secret_matches(BACKEND_SECRET) and not backend.secret_matches("guess")
    assert backend.scopes == ("openid",)


def test_oidc_clients_as_json_in_the_environment(key_file):
    from service.config import load_settings

    clients = (
        '[{"client_id": "app", "redirect_uris": ["https://a.example.com/cb"], "public": true}]'
    )
    settings = load_settings(
        {**PRODUCTION, "OIDC_CLIENTS": clients, "OIDC_PRIVATE_KEY_FILE": key_file}
    )
    assert [c.client_id for c in settings.oidc_clients] == ["app"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            'client_id = "a b"\nredirect_uris = ["https://a.example.com"]\npublic = true',
            "client_id",
        ),
        (
            'client_id = "a"\nredirect_uris = ["https://a.example.com/#x"]\npublic = true',
            "fragment",
        ),
        ('client_id = "a"\nredirect_uris = ["https://a.example.com"]', "either public"),
        ('client_id = "a"\nredirect_uris = ["https://a.example.com"]\nsecret_hash = "x"', "sha256"),
        ('client_id = "a"\nredirect_uris = []\npublic = true', "redirect_uris"),
        (
            'client_id = "a"\nredirect_uris = ["https://a.example.com"]\npublic = true\n'
            'scopes = ["profile"]',
            "openid",
        ),
    ],
)
def test_a_client_that_cannot_serve_stops_start_up(tmp_path, key_file, entry, says):
    from service.config import ConfigError, load_settings

    config = tmp_path / "clients.toml"
    config.write_text(f"[[oidc_clients]]\n{entry}\n")
    with pytest.raises(ConfigError, match=says):
        load_settings({**PRODUCTION, "CONFIG_FILE": str(config), "OIDC_PRIVATE_KEY_FILE": key_file})


def test_clients_without_an_asymmetric_key_stop_start_up_outside_sandbox_mode(tmp_path):
    from service.config import ConfigError, load_settings

    config = tmp_path / "clients.toml"
    config.write_text(CLIENTS_TOML.format(hash=secret_hash(BACKEND_SECRET)))
    with pytest.raises(ConfigError, match="OIDC_PRIVATE_KEY_FILE"):
        load_settings({**PRODUCTION, "CONFIG_FILE": str(config)})


def test_a_secret_in_the_config_file_is_refused(tmp_path):
    from service.config import ConfigError, load_settings

    config = tmp_path / "local.toml"
    config.write_text('jwt_secret = "' + "x" * 40 + '"\n')
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings({**PRODUCTION, "CONFIG_FILE": str(config)})
