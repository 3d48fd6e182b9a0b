"""The service's one layer around every handler: request id, the request's origin (sandbox),
CORS preflights, rate limit, error shape, WeChat's verification files, CORS and security
headers, and metrics, in that order.

Each concern lives in its own module (logs, origins, cors, ratelimit, errors, metrics,
ops/verification); they meet here in a single layer because every layer costs each request a
call and a coroutine, whatever it does: as four aiohttp middlewares they held /healthz to 9,400
requests a second under wrk, as one 11,300 (bench/README.md), and as a layer added with each
route rather than a middleware (pipeline/routing.py) it saves aiohttp's own middleware machinery
too. What only some requests need costs the others a comparison: preflights are looked at for
OPTIONS only, the verification files for GET and HEAD requests no route matched, CORS headers
for listed routes. What depends on the route alone (its pattern, rate-limit group, CORS) is
worked out at its first request and kept with its handler. Redirects (HTTPExceptions below 400)
still propagate to aiohttp.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from service import keys
from service.errors import response_for
from service.logs import REQUEST_ID_HEADER, begin_request, request_id_var
from service.ops import verification
from service.pipeline import cors, origins
from service.pipeline.ratelimit import ROUTE_GROUPS, RateLimiter, client_ip
from service.pipeline.routing import Layer, is_unmatched

# One year, the value browsers' preload lists ask for. includeSubDomains covers only hosts
# below PUBLIC_URL's own (auth.example.com's subdomains, never example.com's siblings), which
# nobody serves over plain http on purpose; "preload" is left to the operator, since it is
# hard to undo.
HSTS = "max-age=31536000; includeSubDomains"


@functools.lru_cache(maxsize=8)
def security_headers(public_url: str) -> Mapping[str, str]:
    """Headers every answer carries, computed once per configuration (authorize is hot).

    nosniff: a JSON error or a text answer is never run as a script or a style sheet, whatever
    a browser guesses from its bytes. HSTS only when the service is public over https (browsers
    ignore it over http, and sending it there would suggest a protection that is not there).
    """
    # aiohttp.hdrs' names are istr: set on an answer's headers without being case-folded.
    headers: dict[str, str] = {hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff"}
    if public_url.lower().startswith("https://"):
        headers[hdrs.STRICT_TRANSPORT_SECURITY] = HSTS
    return headers


@dataclass(frozen=True, slots=True)
class _Route:
    """What the layer needs to know of a route, worked out at its first request (a mounted
    application's routes get their prefix only when it is mounted). One per wrapped handler:
    routing.add_routes wraps each route's handler anew, so a wrapper serves one resource (its
    GET and the HEAD aiohttp adds with it)."""

    pattern: str | None  # None: the catch-all, i.e. no route
    limited_group: str | None  # its rate-limit group, if that group is limited
    cors: bool  # a CORS route (pipeline/cors.py)


def _route_of(request: web.Request, limiter: RateLimiter) -> _Route:
    resource = request.match_info.route.resource
    pattern = None if is_unmatched(resource) else resource.canonical  # type: ignore[union-attr]
    group = ROUTE_GROUPS.get(pattern) if pattern is not None else None
    return _Route(
        pattern,
        group if group is not None and limiter.limits(group) else None,
        pattern in cors.CORS_ROUTES,
    )


def service_layer(root: web.Application) -> Layer:
    """The layer of the service (`root`) and of the emulator mounted in it: what it reads (the
    settings, the limiter, the metrics) is the service's, whichever application's route ran.
    Those are read here, once: create_app sets them before it makes the layer and never
    replaces them (a look-up each, per request, was a tenth of the layer's time)."""
    settings = root[keys.SETTINGS]
    metrics = root[keys.METRICS]
    limiter = root[keys.RATE_LIMITER]
    trusted_proxies = root[keys.TRUSTED_PROXIES]
    verify_files = root[keys.VERIFY_FILES]
    answer_headers = security_headers(settings.public_url)
    follows_origin = origins.follows_request_origin(settings)

    def wrap(handler: Handler) -> Handler:
        """One route's handler in the layer; the route's pattern, rate-limit group and CORS
        are read once, not per request (0.6 µs of each)."""
        route: _Route | None = None

        async def in_service_layer(request: web.Request) -> web.StreamResponse:
            nonlocal route
            if route is None:
                route = _route_of(request, limiter)
            request_id, log_context = begin_request(request)
            started = time.perf_counter()
            status = 500  # if the request is cancelled (the client went away)
            # Sandbox mode without PUBLIC_URL: the request's origin is its public URL.
            own_origin = origins.serving(request) if follows_origin else None
            try:
                try:
                    preflight = None
                    if request.method == "OPTIONS":
                        preflight = await cors.preflight(request, settings, root.router)
                    if preflight is not None:
                        response: web.StreamResponse = preflight
                    else:
                        # The client's address is worked out only if its group is limited.
                        if route.limited_group is not None:
                            limiter.check(route.limited_group, client_ip(request, trusted_proxies))
                        response = await handler(request)
                except Exception as exc:
                    # A GET of WeChat's MP_verify_….txt meets no route: answered from memory.
                    file = verification.answer(request, exc, verify_files)
                    # response_for re-raises redirects.
                    response = file if file is not None else response_for(request, exc)
                status = response.status
                response.headers[REQUEST_ID_HEADER] = request_id
                response.headers.update(answer_headers)
                if route.cors:
                    cors.add_headers(request, response.headers, settings, route.pattern)
                return response
            except web.HTTPException as redirect:
                status = redirect.status
                redirect.headers[REQUEST_ID_HEADER] = request_id
                redirect.headers.update(answer_headers)
                if route.cors:
                    cors.add_headers(request, redirect.headers, settings, route.pattern)
                raise
            finally:
                metrics.request_done(request, status, time.perf_counter() - started, route.pattern)
                origins.done(own_origin)
                request_id_var.reset(log_context)

        return in_service_layer

    return wrap
