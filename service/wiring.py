"""Each account's services, built once at start from the shared resources.

Every area's logic serves one account, given that account's settings (Settings.for_account),
its WeChat client and its scoped store; this module builds one set per account
(account_services.py), which handlers find by the account a request names (`?account=`, a
state, a JWT's appid or a push's path).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from service import keys
from service.account.follow import FollowCheck
from service.account_services import Accounts, AppServices, OfficialServices
from service.accounts import Account
from service.app_jwt.issuer import JwtIssuer
from service.app_jwt.signing_keys import ephemeral_es256_key
from service.config import oidc_signing_key
from service.jssdk.signing import JsSdk
from service.oidc.provider import OidcProvider
from service.push.handling import PushHandler, message_crypto
from service.qr.codes import QrCodes
from service.qr.login import QrSignIn
from service.shared_token.handout import SharedToken
from service.signin.flow import SignIn, SignIns
from service.signin.state_token import KnownContexts, StateSigner, state_keys
from service.tokens.base import BaseTokenKeeper, KeeperDependencies
from service.tokens.jsapi import TicketKeeper
from service.tokens.upkeep import Upkeep, start_scheduler
from service.tokens.web import WebTokenSweeper
from service.wechat.client import WeChatClient

log = logging.getLogger(__name__)


def _account_services(
    app: web.Application, account: Account, states: StateSigner, contexts: KnownContexts
) -> AppServices:
    """One account's services over the app's shared resources."""
    base = app[keys.SETTINGS]
    settings = base.for_account(account)
    clock, metrics = app[keys.CLOCK], app[keys.METRICS]
    store = app[keys.STORE].for_account(account.appid)
    wechat = WeChatClient(
        app[keys.HTTP_SESSION],
        api_base=settings.api_base,
        appid=account.appid,
        secret=account.secret,
        timeout=settings.wechat_timeout,
        observe=functools.partial(metrics.wechat_call, account.name),
    )
    jwt = JwtIssuer(
        keys=app[keys.JWT].keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.jwt_ttl,
        clock=clock,
        appid=account.appid,
    )

    def count_failure(kind: str) -> None:
        metrics.token_refresh_failures.labels(account.name, kind).inc()

    # What every keeper and the sweeper are given (typed: mypy checks the unpacking).
    shared: KeeperDependencies = {
        "store": store,
        "wechat": wechat,
        "settings": settings,
        "clock": clock,
        "instance_id": app[keys.INSTANCE_ID],
        "on_failure": count_failure,
    }
    sign_in = SignIn(
        account=account,
        settings=settings,
        store=store,
        wechat=wechat,
        jwt=jwt,
        states=states,
        contexts=contexts,
    )
    common = {
        "account": account,
        "settings": settings,
        "store": store,
        "wechat": wechat,
        "jwt": jwt,
        "sign_in": sign_in,
        "web_tokens": WebTokenSweeper(**shared),
    }
    if not account.official:
        return AppServices(**common)  # type: ignore[arg-type]
    base_tokens = BaseTokenKeeper(**shared)
    tickets = TicketKeeper(base_tokens=base_tokens, **shared)
    follow = FollowCheck(store=store, base_tokens=base_tokens, wechat=wechat)
    codes = QrCodes(
        store=store,
        base_tokens=base_tokens,
        wechat=wechat,
        clock=clock,
        daily_budget=settings.qrcode_daily_budget,
        owner=app[keys.INSTANCE_ID],
        # A claimant's create may first wait for the base token (LEASE_TTL plus a fetch).
        claim_ttl=settings.lease_ttl + 2 * settings.wechat_timeout,
    )
    qr_sign_in = QrSignIn(
        settings=settings,
        store=store,
        codes=codes,
        follow=follow,
        jwt=jwt,
        clock=clock,
        waiters=app[keys.QR_WAITERS],
    )
    return OfficialServices(
        **common,  # type: ignore[arg-type]
        base_tokens=base_tokens,
        tickets=tickets,
        follow=follow,
        jssdk=JsSdk(settings=settings, tickets=tickets, clock=clock),
        qr_codes=codes,
        qr_sign_in=qr_sign_in,
        push=PushHandler(
            settings=settings,
            clock=clock,
            store=store,
            qr_sign_in=qr_sign_in,
            background=app[keys.BACKGROUND],
            crypto=message_crypto(settings),
            metrics=metrics,
        ),
        shared_token=SharedToken(
            api_keys=settings.api_keys,
            keeper=base_tokens,
            store=store,
            clock=clock,
            on_handout=functools.partial(metrics.shared_token_handout, account.name),
        ),
    )


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every account's services, the scheduler that keeps their tokens fresh, and the OpenID
    Connect provider over their sign-ins."""
    settings = app[keys.SETTINGS]
    # Sign-in states are signed with a key derived from the app JWT's, which every instance has;
    # a state started through one account's sign-in may be finished by any instance.
    states = StateSigner(state_keys(app[keys.JWT].keys))
    contexts = KnownContexts()
    accounts = Accounts(
        [_account_services(app, a, states, contexts) for a in settings.all_accounts]
    )
    app[keys.ACCOUNTS] = accounts
    sign_ins = SignIns({s.account.name: s.sign_in for s in accounts})
    app[keys.SIGN_INS] = sign_ins
    # ID tokens: the configured key, else (sandbox mode only) one made for this process.
    id_token_key = oidc_signing_key(settings) or (
        ephemeral_es256_key() if settings.sandbox else None
    )
    app[keys.OIDC] = OidcProvider(
        settings=settings,
        store=app[keys.STORE],
        sign_ins=sign_ins,
        clock=app[keys.CLOCK],
        key=id_token_key,
    )
    upkeeps = [
        Upkeep(
            name=s.account.name,
            sweeper=s.web_tokens,
            keeper=s.base_tokens if isinstance(s, OfficialServices) else None,
            tickets=s.tickets if isinstance(s, OfficialServices) else None,
        )
        for s in accounts
    ]
    scheduler = (
        start_scheduler(upkeeps=upkeeps, settings=settings) if settings.token_upkeep else None
    )
    if scheduler is not None:
        app[keys.SCHEDULER] = scheduler
    yield
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    for official in accounts.officials():
        await official.base_tokens.release()
        await official.tickets.release()
