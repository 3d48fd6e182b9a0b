"""Each account's services as handlers find them: by name, by appid, or the default.

Built by service/wiring.py at start; kept apart from it so keys.py can name their type.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from service.account.follow import FollowCheck
from service.accounts import Account
from service.app_jwt.issuer import JwtIssuer
from service.config import Settings
from service.errors import InvalidParameter
from service.jssdk.signing import JsSdk
from service.push.handling import PushHandler
from service.qr.codes import QrCodes
from service.qr.login import QrSignIn
from service.shared_token.handout import SharedToken
from service.signin.flow import SignIn
from service.store.queries import Store
from service.tokens.base import BaseTokenKeeper
from service.tokens.jsapi import TicketKeeper
from service.tokens.web import WebTokenSweeper
from service.wechat.client import WeChatClient


@dataclass(frozen=True, kw_only=True)
class AppServices:
    """What every account has: sign-in through WeChat and its users' web tokens kept."""

    account: Account
    settings: Settings  # Settings.for_account(account)
    store: Store  # scoped to the account's appid
    wechat: WeChatClient
    jwt: JwtIssuer
    sign_in: SignIn
    web_tokens: WebTokenSweeper


@dataclass(frozen=True, kw_only=True)
class OfficialServices(AppServices):
    """An Official Account's too: its base token and everything that needs it."""

    base_tokens: BaseTokenKeeper
    tickets: TicketKeeper
    follow: FollowCheck
    jssdk: JsSdk
    qr_codes: QrCodes
    qr_sign_in: QrSignIn
    push: PushHandler
    shared_token: SharedToken


class Accounts:
    """The accounts' services by name and by appid; the first is the default."""

    def __init__(self, services: Sequence[AppServices]) -> None:
        self._all = tuple(services)
        # Asked on every push and shared-token read: filtered once (it was 2.5% of a push).
        self._officials = tuple(s for s in self._all if isinstance(s, OfficialServices))
        self._by_key = {s.account.name: s for s in self._all} | {
            s.account.appid: s for s in self._all
        }

    def __iter__(self) -> Iterator[AppServices]:
        return iter(self._all)

    @property
    def default(self) -> AppServices:
        return self._all[0]

    def officials(self) -> tuple[OfficialServices, ...]:
        return self._officials

    def find(self, key: str) -> AppServices | None:
        """The account of this name or appid, if any."""
        return self._by_key.get(key)

    def get(self, key: str | None) -> AppServices:
        """The account a request names (by name or appid), or the default; 400 if none."""
        if key is None:
            return self.default
        found = self._by_key.get(key)
        if found is None:
            raise InvalidParameter(
                f"account names no account of this service (configured: "
                f"{', '.join(s.account.name for s in self._all)})",
                field="account",
                value=key,
            )
        return found

    def official(self, key: str | None, what: str) -> OfficialServices:
        """get(), for what only an Official Account has (`what` names it in the refusal)."""
        found = self.get(key)
        if not isinstance(found, OfficialServices):
            raise InvalidParameter(
                f"account {found.account.name} is a website app: {what} belong to Official "
                "Accounts",
                field="account",
                value=key if key is not None else found.account.name,
            )
        return found

    def by_appid(self, appid: str | None) -> AppServices | None:
        """The account a JWT's `appid` claim names; the default for tokens without one."""
        if appid is None:
            return self.default
        found = self._by_key.get(appid)
        return found if found is not None and found.account.appid == appid else None
