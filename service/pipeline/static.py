"""The service's static files (/static/…), with a missing one answered in the one error shape.

aiohttp's add_static decides "not found" only while sending the file, past every middleware, and
answers it with an empty octet-stream body. Here the file is found (or not) before an answer is
made: a missing or out-of-tree name raises HTTPNotFound, which the middleware shapes like every
other error. FileResponse keeps what add_static gave: content types, ETag and Last-Modified with
their 304s, ranges.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


def static_routes(directory: Path) -> web.RouteTableDef:
    root = directory.resolve()
    routes = web.RouteTableDef()

    @routes.get("/static/{path:.+}", name="static")
    async def static_file(request: web.Request) -> web.StreamResponse:
        # resolve() follows ".." and symbolic links: what is served is inside the tree.
        target = (root / request.match_info["path"]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    return routes
