"""A thin client for WeChat's API: one session, one base URL, one timeout, three exception types.

Nothing here logs a URL: WeChat puts the AppSecret, codes and tokens in query strings.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


class WeChatError(Exception):
    """Base for anything that went wrong talking to WeChat."""


@dataclass
class WeChatAPIError(WeChatError):
    """WeChat answered with a non-zero errcode."""

    path: str
    errcode: int
    errmsg: str

    def __str__(self) -> str:
        return f"WeChat {self.path} answered errcode {self.errcode}: {self.errmsg}"


class WeChatUnavailable(WeChatError):
    """WeChat could not be reached, or answered with an HTTP error or a body that is not JSON."""


class WeChatTimeout(WeChatError):
    """WeChat did not answer within the configured timeout."""


@dataclass(frozen=True)
class WebAccessToken:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str = field(repr=False)
    openid: str
    scope: str
    unionid: str | None = None
    is_snapshotuser: bool = False


@dataclass(frozen=True)
class BaseAccessToken:
    access_token: str = field(repr=False)
    expires_in: int


class WeChatClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        appid: str,
        secret: str,
        timeout: float,
        observe: Callable[[str, int | str, float], None] | None = None,
    ) -> None:
        # Each call's endpoint, outcome (errcode, or http/timeout/unreachable) and seconds.
        self._observe = observe or (lambda _path, _outcome, _seconds: None)
        self._session = session
        self._api_base = api_base.rstrip("/")
        self._appid = appid
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return await self._call("GET", path, params)

    async def _call(
        self, method: str, path: str, params: dict[str, str], body: Any = None
    ) -> dict[str, Any]:
        url = f"{self._api_base}/{path}"
        started = time.perf_counter()

        def seen(outcome: int | str) -> None:
            self._observe(path, outcome, time.perf_counter() - started)

        try:
            async with self._session.request(
                method, url, params=params, json=body, timeout=self._timeout
            ) as resp:
                if resp.status >= 400:
                    seen("http")
                    raise WeChatUnavailable(f"WeChat {path} answered HTTP {resp.status}")
                text = await resp.text()
        except TimeoutError:
            seen("timeout")
            raise WeChatTimeout(f"WeChat {path} did not answer in time") from None
        except aiohttp.ClientError as exc:
            seen("unreachable")
            raise WeChatUnavailable(f"WeChat {path} unreachable: {type(exc).__name__}") from None
        try:
            body = json.loads(text)
        except ValueError:
            seen("http")
            raise WeChatUnavailable(f"WeChat {path} answered something that is not JSON") from None
        if not isinstance(body, dict):
            seen("http")
            raise WeChatUnavailable(f"WeChat {path} answered an unexpected JSON value")
        errcode = body.get("errcode", 0)
        seen(int(errcode) if isinstance(errcode, int) else "http")
        if errcode:
            log.info("WeChat %s errcode %s", path, errcode)
            raise WeChatAPIError(path, int(errcode), str(body.get("errmsg", "")))
        return body

    async def exchange_code(self, code: str) -> WebAccessToken:
        """sns/oauth2/access_token: trade an authorization code for the user's web token."""
        body = await self._get(
            "sns/oauth2/access_token",
            {
                "appid": self._appid,
                "secret": self._secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        return _web_token(body)

    async def refresh_web_token(self, refresh_token: str) -> WebAccessToken:
        body = await self._get(
            "sns/oauth2/refresh_token",
            {"appid": self._appid, "grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return _web_token(body)

    async def user_info(
        self, access_token: str, openid: str, lang: str = "zh_CN"
    ) -> dict[str, Any]:
        """sns/userinfo: the profile a snsapi_userinfo token may read."""
        return await self._get(
            "sns/userinfo", {"access_token": access_token, "openid": openid, "lang": lang}
        )

    async def fetch_base_token(self, source: str) -> BaseAccessToken:
        """The account's access_token: cgi-bin/stable_token (normal mode) or cgi-bin/token.

        stable_token answers the same token while it is valid and a new one only in its last
        five minutes, so instances asking at once cannot cancel each other's token; cgi-bin/token
        issues a new token on every call and leaves the previous one five minutes of life.
        """
        if source == "stable":
            body = await self._call(
                "POST",
                "cgi-bin/stable_token",
                {},
                {
                    "grant_type": "client_credential",
                    "appid": self._appid,
                    "secret": self._secret,
                    "force_refresh": False,
                },
            )
        else:
            body = await self._get(
                "cgi-bin/token",
                {"grant_type": "client_credential", "appid": self._appid, "secret": self._secret},
            )
        try:
            return BaseAccessToken(str(body["access_token"]), int(body["expires_in"]))
        except (KeyError, TypeError, ValueError):
            raise WeChatUnavailable(
                "WeChat answered a token without its documented fields"
            ) from None

    async def fetch_jsapi_ticket(self, access_token: str) -> BaseAccessToken:
        """cgi-bin/ticket/getticket?type=jsapi: the JS-SDK's jsapi_ticket (7200 s), which WeChat
        wants cached centrally (its daily quota is small). Returned as a BaseAccessToken: a
        value and its lifetime, kept by the same machinery (tokens/jsapi.py)."""
        body = await self._get(
            "cgi-bin/ticket/getticket", {"access_token": access_token, "type": "jsapi"}
        )
        try:
            return BaseAccessToken(str(body["ticket"]), int(body["expires_in"]))
        except (KeyError, TypeError, ValueError):
            raise WeChatUnavailable(
                "WeChat answered a jsapi_ticket without its documented fields"
            ) from None

    async def create_qrcode(self, access_token: str, body: dict[str, Any]) -> dict[str, Any]:
        """cgi-bin/qrcode/create: a parametric QR code's ticket and url."""
        return await self._call(
            "POST", "cgi-bin/qrcode/create", {"access_token": access_token}, body
        )

    async def follower_info(self, access_token: str, openid: str) -> dict[str, Any]:
        """cgi-bin/user/info: whether the user follows the account, and since when."""
        return await self._get(
            "cgi-bin/user/info", {"access_token": access_token, "openid": openid, "lang": "zh_CN"}
        )


def _web_token(body: dict[str, Any]) -> WebAccessToken:
    try:
        return WebAccessToken(
            access_token=str(body["access_token"]),
            expires_in=int(body["expires_in"]),
            refresh_token=str(body["refresh_token"]),
            openid=str(body["openid"]),
            scope=str(body.get("scope", "")),
            unionid=body.get("unionid") or None,
            is_snapshotuser=bool(body.get("is_snapshotuser")),
        )
    except (KeyError, TypeError, ValueError):
        raise WeChatUnavailable("WeChat answered a token without its documented fields") from None
