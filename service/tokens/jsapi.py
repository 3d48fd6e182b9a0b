"""The account's JS-SDK jsapi_ticket, kept exactly as the base token is (base.py).

WeChat's JS-SDK doc: the ticket lives 7200 s, is got with the base access_token
(cgi-bin/ticket/getticket?type=jsapi), and must be cached centrally because getticket has a
small daily quota. So the ticket is a BaseTokenKeeper of its own: stored in MongoDB (beside the
base token, under `jsapi_ticket:<appid>`), fetched only by the holder of its own lease, once per
lifetime across all instances, renewed ahead of expiry by the upkeep scheduler, with the same
back-off on refusals. The fetch itself goes through the base token keeper's `call`, so a 40001
or 42001 (the base token invalid or expired) drops that base token (compare-and-set), gets a
fresh one under the base token's lease and asks once more.

A keeper per Official Account, beside its base token keeper (service/wiring.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.clock import Clock
from service.config import Settings
from service.store.queries import Store
from service.tokens.base import BaseTokenKeeper
from service.wechat.client import BaseAccessToken, WeChatClient

TICKET_SOURCE = "getticket"  # what the status page shows as the ticket's source


class TicketKeeper(BaseTokenKeeper):
    """The stored jsapi_ticket: read by everyone, renewed only under its lease."""

    def __init__(
        self,
        *,
        base_tokens: BaseTokenKeeper,
        store: Store,
        wechat: WeChatClient,
        settings: Settings,
        clock: Clock,
        instance_id: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            store=store,
            wechat=wechat,
            settings=settings,
            clock=clock,
            instance_id=instance_id,
            sleep=sleep,
            on_failure=on_failure,
        )
        self._base_tokens = base_tokens
        self.appid = base_tokens.appid
        self.lease_name = f"jsapi_ticket:{self.appid}"
        self.doc_key = f"jsapi_ticket:{self.appid}"
        self.kind = "jsapi_ticket"
        self.label = "jsapi_ticket"
        self.source = TICKET_SOURCE

    async def _fetch(self, source: str) -> BaseAccessToken:
        # The base keeper's call: 40001/42001 renew the base token once and ask again.
        return await self._base_tokens.call(self._wechat.fetch_jsapi_ticket)

    async def renew_if_due(self) -> bool:
        """As the base token's, but only once a ticket was ever asked for: an account whose
        pages never use the JS-SDK spends none of getticket's quota."""
        if await self._store.get_base_token(self.doc_key) is None:
            return False
        return await super().renew_if_due()
