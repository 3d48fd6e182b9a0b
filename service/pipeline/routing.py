"""Routes whose handlers run inside a layer, instead of aiohttp middlewares.

A layer is what a middleware would be, applied to each handler when its route is added:
`layer(handler)` returns the handler wrapped, so what the layer needs to know of the route (its
pattern, its rate-limit group, whether CORS applies) is worked out once per route rather than
once per request. aiohttp runs an application's middlewares through a cached chain of
wrappers plus one more layer of its own (it sets `request.app` for each application's part), so
the first middleware costs every request 1.5 µs, the service's /healthz 7% in process and
authorize 2-3% of its throughput under wrk (bench/README.md); a handler wrapped once, at start,
costs one call.

Without a middleware, a request no route takes would meet aiohttp's own text 404 or 405, outside
any layer. So the last route of an application (`add_unmatched`) takes every path and method,
inside the layer, and raises the 404 or 405 (with Allow) the router would have; logs and
metrics treat it as no route (`is_unmatched`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractResource

# Wraps one route's handler; called once per route, when it is added.
Layer = Callable[[Handler], Handler]

# The name of every application's catch-all route (names are unique per router).
UNMATCHED_ROUTE = "unmatched"


def layered(handler: Handler, layer: Layer) -> Handler:
    """`handler` run inside `layer`; its attributes (name, docstring, API document) kept."""
    return functools.update_wrapper(layer(handler), handler)


def add_routes(app: web.Application, routes: Iterable[web.AbstractRouteDef], layer: Layer) -> None:
    for route in routes:
        if not isinstance(route, web.RouteDef):
            raise TypeError(f"only plain routes can be layered, not {route!r}")
        handler = layered(route.handler, layer)
        app.add_routes([web.RouteDef(route.method, route.path, handler, route.kwargs)])


def add_unmatched(app: web.Application, layer: Layer) -> None:
    """The application's last route: every request no other route takes, inside `layer`."""
    app.router.add_route(
        "*", "/{unmatched_path:.*}", layered(_unmatched, layer), name=UNMATCHED_ROUTE
    )


def is_unmatched(resource: AbstractResource | None) -> bool:
    """True for no route, or the catch-all: the request matched none of the application's."""
    return resource is None or resource.name == UNMATCHED_ROUTE


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """What the router answers when no route matched: 405 with the methods the path's routes
    serve, else 404. Only unmatched requests ask every route (a route's own test, a string
    comparison or a pattern match each)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if not is_unmatched(resource):
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
