"""HTML answers: a template rendered in the reader's language, with the headers every page of
the service carries.

A page of any area (the OIDC provider's too) is `page(request, "its.html", context,
branding=...)`: the template gets `lang` and `t` (service/pipeline/i18n.py says how the
language is chosen and where the texts live) and `branding` (service/pipeline/branding.py:
APP_NAME, the logo, the icon), and extends templates/base.html for the icon, the style sheet
and the block that hands its script its texts. The answer says (Vary) that its words
depend on Accept-Language and User-Agent.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from service.pipeline.branding import Branding
from service.pipeline.i18n import VARY, language_of, translator

# No inline script or style anywhere, so the CSP can forbid both; frame-ancestors stops
# click-jacking of the sign-in pages.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def page(
    request: web.Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    branding: Branding | None = None,
) -> web.Response:
    language = language_of(request)
    values: dict[str, Any] = {
        "lang": language,
        "t": translator(language),
        "branding": branding or Branding(),
        **(context or {}),
    }
    response = aiohttp_jinja2.render_template(template, request, values)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # The callback URL carries WeChat's code; no other site may see it in a Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = VARY
    return response
