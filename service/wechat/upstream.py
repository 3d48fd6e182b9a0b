"""WeChat's failures as the answers our clients get: what they can retry, what is ours to fix."""

from __future__ import annotations

import logging

from service.errors import ServiceError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from service.wechat.client import WeChatAPIError, WeChatError, WeChatTimeout, WeChatUnavailable

log = logging.getLogger(__name__)


def upstream_error(exc: WeChatError) -> ServiceError:
    if isinstance(exc, WeChatTimeout):
        return UpstreamTimeout("WeChat did not answer in time; try again")
    if isinstance(exc, WeChatUnavailable):
        return UpstreamUnavailable("WeChat could not be reached; try again")
    assert isinstance(exc, WeChatAPIError)
    if exc.errcode == -1:
        return UpstreamUnavailable(
            "WeChat is busy (errcode -1); try again", field="errcode", value=-1
        )
    if exc.errcode == 45011:
        return UpstreamUnavailable(
            "WeChat's per-minute quota is used up; try again shortly", field="errcode", value=45011
        )
    if exc.errcode == 40003:
        # §9: WeChat does not know this openid for this AppID (another account's openid, or a
        # unionid passed as one). Nothing the operator configured is wrong, and nothing the
        # caller can retry fixes it: a token signed before WECHAT_APPID changed, or one from
        # another deployment sharing the JWT key, names a user this account never had.
        # Still a 502 (WeChat refused the call), but one that points at the openid.
        log.warning("WeChat does not know the openid given to %s (errcode 40003)", exc.path)
        return UpstreamError(
            "WeChat does not know this openid for this Official Account (errcode 40003): the "
            "openid is at fault, not the service's configuration; it may belong to another "
            "account (a token issued under another AppID); sign in again",
            field="errcode",
            value=40003,
        )
    # 40013/40125/40164 and the like: the service's own configuration; the client cannot fix it.
    log.error("WeChat refused the service: %s", exc)
    return UpstreamError(
        f"WeChat refused the request (errcode {exc.errcode}); check the service's configuration",
        field="errcode",
        value=exc.errcode,
    )
