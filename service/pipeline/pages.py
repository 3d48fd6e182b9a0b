"""HTML answers: a template rendered with the headers every page of the service carries."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

# No inline script or style anywhere, so the CSP can forbid both; frame-ancestors stops
# click-jacking of the sign-in pages.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def page(
    request: web.Request, template: str, context: dict[str, Any] | None = None
) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context or {})
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # The callback URL carries WeChat's code; no other site may see it in a Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
