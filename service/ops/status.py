"""/wechat/tokens/status: for operators, the state of every token; never a token value."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.access import require_admin
from service.openapi import documented
from service.ops import contract

routes = web.RouteTableDef()


@routes.get("/wechat/tokens/status")
@documented(contract.TOKENS_STATUS)
async def tokens_status(request: web.Request) -> web.Response:
    """Ages, expiries, lease and errors; never a token value."""
    require_admin(request)
    keeper = request.app[keys.BASE_TOKENS]
    scheduler = request.app[keys.SCHEDULER]
    jobs = []
    if scheduler is not None:
        jobs = [
            {
                "id": job.id,
                "nextRunAt": job.next_run_time.isoformat() if job.next_run_time else None,
            }
            for job in scheduler.get_jobs()
        ]
    body = {
        "instance": request.app[keys.INSTANCE_ID],
        "baseToken": await keeper.status(),
        "webTokens": await request.app[keys.STORE].count_web_tokens_by_status(),
        "scheduler": {"running": scheduler is not None and scheduler.running, "jobs": jobs},
        "qrcodeBudget": request.app[keys.QR_CODES].budget.status(),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})
