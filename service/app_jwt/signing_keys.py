"""The keys the app's JWTs are signed and verified with, and their public JWKS.

HS256 (a shared secret) by default; RS256 or ES256 from a PEM private key file as an option,
published at /.well-known/jwks.json so apps verify tokens without any secret. Every key has a
`kid`; keys being rotated out stay accepted for verification until tokens signed with them have
expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


class JwtKeyError(ValueError):
    """A key file or secret that cannot serve; the message says which and why."""


@dataclass(frozen=True)
class JwtKey:
    kid: str
    algorithm: str
    signing: Any = field(repr=False)  # secret bytes or private key; None for verify-only
    verifying: Any = field(repr=False)  # secret bytes or public key
    jwk: dict[str, Any] | None = None  # public JWK (asymmetric keys only)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 of the required members, sorted, no whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def secret_key(secret: str) -> JwtKey:
    # The kid names the secret without revealing it: a truncated hash of a 32+ byte secret.
    kid = "hs-" + hashlib.sha256(secret.encode()).hexdigest()[:12]
    return JwtKey(kid, "HS256", secret.encode(), secret.encode())


def pem_key(path: Path, algorithm: str) -> JwtKey:
    """A key from a PEM file: a private key signs and verifies; a public key only verifies."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JwtKeyError(f"cannot read the key file {path}: {exc.strerror}") from None
    private = None
    try:
        private = serialization.load_pem_private_key(data, password=None)
        public = private.public_key()
    except (ValueError, TypeError):
        try:
            public = serialization.load_pem_public_key(data)
        except ValueError:
            raise JwtKeyError(f"{path} holds no PEM private or public key") from None
    if algorithm == "RS256":
        if not isinstance(public, rsa.RSAPublicKey):
            raise JwtKeyError(f"{path} is not an RSA key, which RS256 needs")
        if public.key_size < 2048:
            raise JwtKeyError(f"{path} is a {public.key_size}-bit RSA key; RS256 needs 2048+")
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif algorithm == "ES256":
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise JwtKeyError(f"{path} is not a P-256 key, which ES256 needs")
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        raise JwtKeyError(f"{algorithm} takes no key file")
    kid = thumbprint(jwk)
    jwk = {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}
    return JwtKey(kid, algorithm, private, public, jwk)


@dataclass(frozen=True)
class KeySet:
    current: JwtKey
    previous: tuple[JwtKey, ...] = ()

    def verifying(self, kid: str | None) -> JwtKey | None:
        for key in (self.current, *self.previous):
            if key.kid == kid:
                return key
        return None

    def jwks(self) -> dict[str, Any]:
        """Public keys only: an HS256 secret is never published."""
        keys = [k.jwk for k in (self.current, *self.previous) if k.jwk is not None]
        return {"keys": keys}


def load_key_set(
    algorithm: str,
    secret: str,
    private_key_file: str,
    previous_secrets: tuple[str, ...],
    previous_key_files: tuple[str, ...],
) -> KeySet:
    if algorithm == "HS256":
        current = secret_key(secret)
    else:
        if not private_key_file:
            raise JwtKeyError(f"JWT_ALGORITHM={algorithm} needs JWT_PRIVATE_KEY_FILE")
        current = pem_key(Path(private_key_file), algorithm)
        if current.signing is None:
            raise JwtKeyError(f"{private_key_file} is a public key; signing needs the private key")
    previous = [secret_key(s) for s in previous_secrets]
    for path in previous_key_files:
        with_algorithm = "ES256" if is_ec_key_file(Path(path)) else "RS256"
        previous.append(pem_key(Path(path), with_algorithm))
    return KeySet(current, tuple(k for k in previous if k.kid != current.kid))


def is_ec_key_file(path: Path) -> bool:
    try:
        text = path.read_text()
    except OSError:
        return False
    if "EC PRIVATE KEY" in text:
        return True
    key: object
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError:
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            return False
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)


def ephemeral_es256_key() -> JwtKey:
    """A P-256 key made at start, for sandbox mode's ID tokens when no key is configured:
    it lives as long as the process (and differs between instances), so never in production."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    kid = thumbprint(jwk)
    return JwtKey(kid, "ES256", private, public, {**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
