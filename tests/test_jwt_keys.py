"""The app's JWT keys: HS256, RS256 and ES256, kid, JWKS, and rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from flows import JWT_SECRET, sign_in
from service.config import ConfigError, load_settings
from service.sandbox import SANDBOX_USERS

USER = SANDBOX_USERS[0]


def write_private(path, key) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def write_public(path, key) -> str:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def jwks(client) -> dict:
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status == 200
    return await resp.json()


def verify_with_jwks(token: str, keyset: dict) -> dict:
    """What an app does: pick the JWK by kid, verify with the algorithm it names."""
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in keyset["keys"] if k["kid"] == kid)
    key = pyjwt.PyJWK.from_dict(jwk)
    return pyjwt.decode(token, key.key, algorithms=[jwk["alg"]], audience="wechat-oa-auth")


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [("RS256", rsa_key), ("ES256", lambda: ec.generate_private_key(ec.SECP256R1()))],
)
async def test_asymmetric_tokens_verify_with_the_published_jwks(
    make_client, browser, tmp_path, algorithm, make_key
):
    key_file = write_private(tmp_path / "key.pem", make_key())
    client = await make_client(jwt_algorithm=algorithm, jwt_private_key_file=key_file)
    token = (await sign_in(client, browser, USER.openid))["token"]
    header = pyjwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    keyset = await jwks(client)
    assert [k["kid"] for k in keyset["keys"]] == [header["kid"]]
    assert "d" not in keyset["keys"][0]  # never the private part
    assert verify_with_jwks(token, keyset)["sub"] == USER.openid
    # And the service itself accepts it.
    resp = await client.get("/wechat/subscribed", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


async def test_hs256_publishes_nothing_and_names_its_key(client, browser):
    token = (await sign_in(client, browser, USER.openid))["token"]
    assert pyjwt.get_unverified_header(token)["kid"].startswith("hs-")
    assert JWT_SECRET[:8] not in pyjwt.get_unverified_header(token)["kid"]
    assert await jwks(client) == {"keys": []}


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    make_client, browser, tmp_path
):
    old_file = write_private(tmp_path / "old.pem", rsa_key())
    new_file = write_private(tmp_path / "new.pem", rsa_key())
    old = await make_client(jwt_algorithm="RS256", jwt_private_key_file=old_file)
    old_token = (await sign_in(old, browser, USER.openid))["token"]

    rotated = await make_client(
        jwt_algorithm="RS256",
        jwt_private_key_file=new_file,
        jwt_previous_key_files=(write_public(tmp_path / "old.pub", _load(old_file)),),
    )
    keyset = await jwks(rotated)
    assert len(keyset["keys"]) == 2
    assert verify_with_jwks(old_token, keyset)["sub"] == USER.openid
    ok = await rotated.get("/wechat/subscribed", headers={"Authorization": f"Bearer {old_token}"})
    assert ok.status == 200
    new_token = (await sign_in(rotated, browser, USER.openid))["token"]
    assert (
        pyjwt.get_unverified_header(new_token)["kid"]
        != pyjwt.get_unverified_header(old_token)["kid"]
    )

    # Once the old key is dropped, its tokens are refused.
    done = await make_client(jwt_algorithm="RS256", jwt_private_key_file=new_file)
    refused = await done.get("/wechat/subscribed", headers={"Authorization": f"Bearer {old_token}"})
    assert refused.status == 401


def _load(path: str):
    with open(path, "rb") as fh:
        return serialization.load_pem_private_key(fh.read(), password=None)


async def test_hs256_previous_secrets_are_accepted(make_client, browser):
    old_secret = "an-old-secret-that-is-long-enough-000001"
    old = await make_client(jwt_secret=old_secret)
    token = (await sign_in(old, browser, USER.openid))["token"]
    rotated = await make_client(jwt_previous_secrets=(old_secret,))
    ok = await rotated.get("/wechat/subscribed", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200


async def test_algorithm_confusion_and_none_are_refused(make_client, browser, tmp_path):
    private = rsa_key()
    client = await make_client(
        jwt_algorithm="RS256", jwt_private_key_file=write_private(tmp_path / "k.pem", private)
    )
    good = (await sign_in(client, browser, USER.openid))["token"]
    claims = pyjwt.decode(good, options={"verify_signature": False})
    kid = pyjwt.get_unverified_header(good)["kid"]
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    # HS256 keyed with the public key (which anyone can fetch): the classic confusion attack.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    confused = f"{head}.{body}.{sig}"
    unsigned = f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{body}."
    for forged in (confused, unsigned):
        resp = await client.get("/wechat/subscribed", headers={"Authorization": f"Bearer {forged}"})
        assert resp.status == 401


BASE_ENV = {
    "WECHAT_APPID": "wxabcdef0123456789",
    "WECHAT_SECRET": "s",
    "WECHAT_TOKEN": "t",
    "MONGODB_URI": "memory://",  # outside sandbox mode the embedded store is asked for by name
}


def test_key_configuration_is_checked_at_start_up(tmp_path):
    with pytest.raises(ConfigError, match="JWT_PRIVATE_KEY_FILE"):
        load_settings({**BASE_ENV, "JWT_ALGORITHM": "RS256"})
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    with pytest.raises(ConfigError, match="2048"):
        load_settings(
            {
                **BASE_ENV,
                "JWT_ALGORITHM": "RS256",
                "JWT_PRIVATE_KEY_FILE": write_private(tmp_path / "weak.pem", weak),
            }
        )
    public_only = write_public(tmp_path / "pub.pem", rsa_key())
    with pytest.raises(ConfigError, match="private key"):
        load_settings({**BASE_ENV, "JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY_FILE": public_only})
    ec_file = write_private(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="RSA"):
        load_settings({**BASE_ENV, "JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY_FILE": ec_file})
    # No JWT_SECRET is needed when tokens are signed with a key file.
    settings = load_settings(
        {**BASE_ENV, "JWT_ALGORITHM": "ES256", "JWT_PRIVATE_KEY_FILE": ec_file}
    )
    assert settings.jwt_algorithm == "ES256"
