"""A thin client for WeChat's API: one session, one base URL, one timeout, three exception types.

Nothing here logs a URL: WeChat puts the AppSecret, codes and tokens in query strings.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
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
    access_token: str
    expires_in: int
    refresh_token: str
    openid: str
    scope: str
    unionid: str | None = None
    is_snapshotuser: bool = False


class WeChatClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        appid: str,
        secret: str,
        timeout: float,
    ) -> None:
        self._session = session
        self._api_base = api_base.rstrip("/")
        self._appid = appid
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self._api_base}/{path}"
        try:
            async with self._session.get(url, params=params, timeout=self._timeout) as resp:
                if resp.status >= 400:
                    raise WeChatUnavailable(f"WeChat {path} answered HTTP {resp.status}")
                text = await resp.text()
        except TimeoutError:
            raise WeChatTimeout(f"WeChat {path} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise WeChatUnavailable(f"WeChat {path} unreachable: {type(exc).__name__}") from None
        try:
            body = json.loads(text)
        except ValueError:
            raise WeChatUnavailable(f"WeChat {path} answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise WeChatUnavailable(f"WeChat {path} answered an unexpected JSON value")
        errcode = body.get("errcode", 0)
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
