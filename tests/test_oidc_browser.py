"""Sandbox mode's OpenID Connect demo in a real headless Chromium: the browser app (demo-spa,
PKCE in the page's script) and the backend (demo-backend, its code redeemed on the server)."""

from __future__ import annotations

import re

import pytest
from test_browser import CHROMIUM, dump_dom, picking_user_then

from service.sandbox import SANDBOX_USERS

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
PERSON = SANDBOX_USERS[0]


async def test_the_browser_app_signs_in_with_pkce_and_shows_its_claims(sandbox_service, tmp_path):
    start = "/demo/oidc?start=public&scope=openid"
    dom = await dump_dom(picking_user_then(sandbox_service, PERSON.openid, start), tmp_path)
    assert 'id="claims"' in dom and 'class="claims hidden" id="claims"' not in dom, dom
    assert PERSON.openid in dom  # sub, from the ID token and from userinfo
    assert "demo-spa" in dom  # aud
    assert "?code=" not in dom


async def test_the_backend_signs_in_with_its_secret_and_shows_its_claims(sandbox_service, tmp_path):
    start = "/demo/oidc/backend/start?scope=openid"
    dom = await dump_dom(picking_user_then(sandbox_service, PERSON.openid, start), tmp_path)
    assert 'id="userinfo"' in dom, dom
    assert PERSON.openid in dom
    assert "demo-backend" in dom
    assert 'id="oidc-failure"' not in dom


@pytest.mark.parametrize("client", ["public", "backend"])
async def test_the_demo_works_at_127_0_0_1_too(sandbox_server, tmp_path, client):
    """Sandbox mode without PUBLIC_URL follows the origin the demo is opened at: the issuer,
    the demo clients' redirect URIs and the callback are 127.0.0.1's here, not localhost's."""
    base = str(sandbox_server.make_url("")).rstrip("/")
    assert base.startswith("http://127.0.0.1:")
    start = {
        "public": "/demo/oidc?start=public&scope=openid",
        "backend": "/demo/oidc/backend/start?scope=openid",
    }[client]
    dom = await dump_dom(picking_user_then(base, PERSON.openid, start), tmp_path)
    assert PERSON.openid in dom, dom
    assert base in dom  # the iss claim: this origin
    failure = re.search(r'id="oidc-failure">([^<]*)<', dom)
    assert failure is None or not failure.group(1).strip(), failure and failure.group(1)
