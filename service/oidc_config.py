"""The OpenID Connect clients the service knows: read from config/ (or OIDC_CLIENTS), checked
at start, and the two demo clients of sandbox mode.

A client is a TOML table in config/*.toml:

    [[oidc_clients]]
    client_id = "shop-web"
    redirect_uris = ["https://shop.example.com/auth/callback"]
    public = true                      # a browser or mobile app: PKCE instead of a secret
    scopes = ["openid", "profile"]     # what it may ask for (profile: nickname and avatar)
    account = "web"                    # which WeChat account signs people in (default: first)

or, for a backend that keeps a secret, `secret_hash = "sha256:<hex>"` instead of `public`: the
SHA-256 of the client secret, never the secret itself. Client secrets are random (32 bytes or
more), so a fast hash is enough: nobody can guess one from its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.config_tables import table_list

OIDC_SCOPES = ("openid", "profile")
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
SECRET_HASH = re.compile(r"sha256:[0-9a-f]{64}")
# Sandbox mode's confidential demo client: public, like every sandbox value.
SANDBOX_CLIENT_SECRET = "sandbox-oidc-client-secret-for-development-only"  # noqa: S105


class ClientConfigError(ValueError):
    """A client entry that cannot serve; the message names the client and the field."""


@dataclass(frozen=True, slots=True)
class OidcClient:
    client_id: str
    redirect_uris: tuple[str, ...]
    public: bool = False
    secret_hash: str = ""
    scopes: tuple[str, ...] = OIDC_SCOPES
    # The WeChat account people sign in through (service/accounts.py); "": the first one.
    account: str = ""

    def secret_matches(self, secret: str) -> bool:
        """Constant-time: the comparison takes as long whatever the secret given."""
        if self.public or not self.secret_hash:
            return False
        given = "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        return hmac.compare_digest(given.encode(), self.secret_hash.encode())


def secret_hash(secret: str) -> str:
    """What secret_hash in config/ holds for a client secret."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def parse_clients(value: object) -> tuple[OidcClient, ...]:
    """[[oidc_clients]] tables from TOML, or OIDC_CLIENTS as a JSON array of the same objects."""
    entries = table_list(value, "oidc_clients", ClientConfigError)
    clients = tuple(_client(entry, index) for index, entry in enumerate(entries))
    ids = [client.client_id for client in clients]
    if len(set(ids)) != len(ids):
        raise ClientConfigError("oidc_clients: each client_id must be unique")
    return clients


def _client(entry: object, index: int) -> OidcClient:
    if isinstance(entry, OidcClient):
        return entry
    if not isinstance(entry, Mapping):
        raise ClientConfigError(f"oidc_clients[{index}] must be a table")
    known = {"client_id", "redirect_uris", "public", "secret_hash", "scopes", "account"}
    unknown = set(entry) - known
    if unknown:
        raise ClientConfigError(f"oidc_clients[{index}]: unknown keys {sorted(unknown)}")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise ClientConfigError(
            f"oidc_clients[{index}].client_id must be 1 to 64 of A-Z a-z 0-9 . _ -"
        )
    where = f"oidc client {client_id!r}"
    uris = entry.get("redirect_uris")
    if not isinstance(uris, list | tuple) or not uris:
        raise ClientConfigError(f"{where}: redirect_uris must list at least one URL")
    for uri in uris:
        parts = urlsplit(uri) if isinstance(uri, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientConfigError(f"{where}: {uri!r} is not an absolute http(s) URL")
        if parts.fragment or "#" in uri:
            raise ClientConfigError(f"{where}: a redirect URI has no #fragment (RFC 6749 §3.1.2)")
    public = entry.get("public", False)
    digest = entry.get("secret_hash", "")
    if not isinstance(public, bool) or not isinstance(digest, str):
        raise ClientConfigError(f"{where}: public is true or false; secret_hash is text")
    if public == bool(digest):
        raise ClientConfigError(
            f'{where}: give either public = true (PKCE) or secret_hash = "sha256:<hex>"'
        )
    if digest and not SECRET_HASH.fullmatch(digest):
        raise ClientConfigError(f"{where}: secret_hash must be sha256: and 64 hex digits")
    scopes = entry.get("scopes", list(OIDC_SCOPES))
    if not isinstance(scopes, list | tuple) or "openid" not in scopes:
        raise ClientConfigError(f"{where}: scopes must include openid")
    if not set(scopes) <= set(OIDC_SCOPES):
        raise ClientConfigError(f"{where}: scopes are among {', '.join(OIDC_SCOPES)}")
    account = entry.get("account", "")
    if not isinstance(account, str):
        raise ClientConfigError(f"{where}: account is the name of a configured account")
    return OidcClient(client_id, tuple(uris), public, digest, tuple(scopes), account)


def sandbox_clients(public_url: str) -> tuple[OidcClient, ...]:
    """Sandbox mode's demo clients: a browser app (public, PKCE) and a backend (a secret)."""
    base = public_url.rstrip("/")
    return (
        OidcClient("demo-spa", (f"{base}/demo/oidc",), public=True),
        OidcClient(
            "demo-backend",
            (f"{base}/demo/oidc/backend",),
            secret_hash=secret_hash(SANDBOX_CLIENT_SECRET),
        ),
    )
