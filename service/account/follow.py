"""Does a user follow the Official Account? Asked of WeChat with the base token, kept in MongoDB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.clock import utc
from service.errors import UserNotLinked
from service.store.queries import Store
from service.tokens.base import BaseTokenKeeper
from service.wechat.client import WeChatClient, WeChatError
from service.wechat.upstream import upstream_error


@dataclass(frozen=True, kw_only=True)
class FollowCheck:
    """cgi-bin/user/info for one openid; every answer also updates the stored user."""

    store: Store
    base_tokens: BaseTokenKeeper
    wechat: WeChatClient

    async def check(self, openid: str) -> dict[str, Any]:
        """The follow state, with WeChat's failures as the answers clients get."""
        try:
            return await self.read(openid)
        except WeChatError as exc:
            raise upstream_error(exc) from None

    async def check_linked(self, unionid: str | None, account: str) -> dict[str, Any]:
        """check() for a person signed in through another account (a website app, another
        Official Account): this account's openid for them is found by their unionid."""
        user = await self.store.find_linked_user(unionid) if unionid else None
        if user is None:
            raise UserNotLinked(
                f"account {account} has no record of this person: "
                + (
                    "they have not signed in through it, or been asked about, yet"
                    if unionid
                    else "the sign-in gave no unionid (the accounts are not bound to one Open "
                    "Platform account, or snsapi_base gave none)"
                ),
                field="unionid",
                value=unionid,
            )
        return await self.check(user["openid"])

    async def read(self, openid: str) -> dict[str, Any]:
        """check(), but WeChat's failure is raised as WeChat's (its errcode kept), for callers
        that tell the openid's fault (40003) from WeChat's."""
        info = await self.base_tokens.call(lambda token: self.wechat.follower_info(token, openid))
        # §9: subscribe 0 means not following; WeChat then leaves out nearly everything else.
        subscribed = info.get("subscribe") == 1
        subscribe_time = info.get("subscribe_time") if subscribed else None
        scene = (info.get("subscribe_scene") or None) if subscribed else None
        await self.store.record_follow_state(
            openid,
            subscribed=subscribed,
            subscribe_time=subscribe_time,
            subscribe_scene=scene,
            unionid=info.get("unionid") or None,
        )
        return {
            "openid": openid,
            "subscribed": subscribed,
            "subscribeTime": utc(subscribe_time).isoformat() if subscribe_time else None,
            "subscribeScene": scene,
        }
