"""Static files (the service's /static/…, the emulator's), a missing one answered in the one
error shape.

aiohttp's add_static decides "not found" only while sending the file, past any layer, and
answers it with an empty octet-stream body; nor is its handler a route's to wrap
(pipeline/routing.py). Here the file is found (or not) before an answer is made: a missing or
out-of-tree name raises HTTPNotFound, which the layer shapes like every other error.
FileResponse keeps what add_static gave: content types, ETag and Last-Modified with their
304s, ranges.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


def static_routes(
    directory: Path, prefix: str = "/static", name: str = "static"
) -> web.RouteTableDef:
    """The files below `directory` at `prefix`/…, the route named `name` (url_for(path=…))."""
    root = directory.resolve()
    routes = web.RouteTableDef()

    @routes.get(prefix + "/{path:.+}", name=name)
    async def static_file(request: web.Request) -> web.StreamResponse:
        # resolve() follows ".." and symbolic links: what is served is inside the tree.
        target = (root / request.match_info["path"]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    return routes
