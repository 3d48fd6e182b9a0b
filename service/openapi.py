"""The OpenAPI 3.1 document, served at /openapi.json: shared parts, and its assembly.

Each area declares its own operations beside its routes (`<area>/contract.py`), with query
parameters declared once (service/params.py) so the document states the very rules the handlers
enforce. This module holds what they share (the one error shape, upstream failures, the request
id, rate limits) and builds the document by walking the routes the app registered: a route is
documented exactly when it exists. tests/test_openapi.py checks it against the answers;
tests/test_schemathesis.py fuzzes the service with it.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from aiohttp import web

from service.logs import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from service.params import Param, Schema
from service.pipeline.ratelimit import ROUTE_GROUPS

TITLE = "wechat-oa-auth"
PACKAGE = "wechat-oa-auth"


def _version() -> str:
    """pyproject.toml's version, as installed (editable or wheel); 0.0.0 if never installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


STRING: Schema = {"type": "string"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}

# -- errors -----------------------------------------------------------------------------------

ERROR_SCHEMA: Schema = {
    "type": "object",
    "description": "The one shape of every error answer of every route.",
    "required": ["id", "status", "name", "message", "details"],
    "additionalProperties": False,
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "Unique per answer; a 500's id is logged beside the traceback.",
        },
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "name": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "message": {"type": "string", "minLength": 1},
        "error": {
            "type": "string",
            "description": "The OpenID Connect endpoints only: the error code RFC 6749 §5.2 "
            "(or RFC 6750 §3) names, beside the service's own `name`.",
        },
        "error_description": {
            "type": "string",
            "description": "The OpenID Connect endpoints only: `message` again, as RFC 6749 "
            "calls it.",
        },
        "details": {
            "type": "object",
            "required": ["field", "fieldValue"],
            "additionalProperties": False,
            "properties": {
                "field": {
                    "type": "string",
                    "description": "The parameter, header or resource at fault; empty if none.",
                },
                "fieldValue": {"description": "Its value as received (any JSON type), or null."},
            },
        },
    },
}


def error(status: int, description: str, *names: str, details: Schema | None = None) -> Schema:
    """A response in the shared error shape, narrowed to its status and the names it may carry."""
    narrowed: Schema = {"properties": {"status": {"const": status}, "name": {"enum": list(names)}}}
    if details is not None:
        narrowed["properties"]["details"] = details
    return {
        "description": description,
        "content": {"application/json": {"schema": {"allOf": [ref("Error"), narrowed]}}},
    }


INTERNAL_ERROR = {"$ref": "#/components/responses/InternalError"}
WWW_AUTHENTICATE = {
    "description": 'Bearer realm="wechat"',
    "schema": {"type": "string"},
}


def upstream_errors() -> dict[str, Schema]:
    """What a route that calls WeChat answers when WeChat fails."""
    return {
        "502": error(
            502,
            "`WECHAT_UNAVAILABLE`: WeChat unreachable, an HTTP error, errcode -1 (busy) or 45011 "
            "(per-minute quota), or no base access_token to be had yet; retrying may work. "
            "`WECHAT_ERROR`: WeChat refused the service itself (40013 appid, 40125 secret, "
            "40164 IP whitelist, 45009 daily quota, …); `details.fieldValue` is the errcode.",
            "WECHAT_UNAVAILABLE",
            "WECHAT_ERROR",
        ),
        "504": error(504, "WeChat did not answer within WECHAT_TIMEOUT seconds.", "WECHAT_TIMEOUT"),
    }


# -- answers ----------------------------------------------------------------------------------


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def html(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": STRING}}}


NO_STORE = {"Cache-Control": {"schema": {"const": "no-store"}, "required": True}}

# -- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One route's piece of the document: its OpenAPI operation object without parameters,
    the query parameters its handler reads, and the component schemas it refers to."""

    spec: Schema
    params: tuple[Param, ...] = ()
    path_params: tuple[Schema, ...] = ()
    schemas: Mapping[str, Schema] = field(default_factory=dict)
    # Calls qrcode/create, and so may answer 429 QRCODE_BUDGET_EXHAUSTED too.
    qrcode_budget: bool = False

    def document(self) -> Schema:
        operation = copy.deepcopy(self.spec)
        parameters = [*self.path_params, *(param.document() for param in self.params)]
        if parameters:
            operation["parameters"] = parameters
        return operation


Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])
_OPERATION = "openapi_operation"


def documented(operation: Operation) -> Callable[[Handler], Handler]:
    """Attach a route's piece of the document to its handler, where the assembly finds it."""

    def attach(handler: Handler) -> Handler:
        setattr(handler, _OPERATION, operation)
        return handler

    return attach


def operation_of(route: web.AbstractRoute) -> Operation | None:
    found = getattr(route.handler, _OPERATION, None)
    return found if isinstance(found, Operation) else None


# -- what every operation shares --------------------------------------------------------------

TAGS = [
    {"name": "sign-in", "description": "WeChat web authorization (OAuth2) and the app's JWT."},
    {"name": "qr", "description": "Parametric QR codes and desktop scan-to-sign-in."},
    {"name": "messages", "description": "WeChat's server-URL check and pushed messages."},
    {"name": "follow", "description": "Does a user follow the Official Account?"},
    {
        "name": "openid-connect",
        "description": "An OpenID Connect provider (code flow, PKCE) over WeChat's sign-in.",
    },
    {"name": "operations", "description": "Health, readiness and token upkeep."},
    {"name": "pages", "description": "HTML pages (no external assets, no inline script)."},
    {"name": "docs", "description": "This document and its page."},
    {
        "name": "sandbox",
        "description": "In sandbox mode (SANDBOX=1) the offline WeChat emulator is mounted at "
        "`/sandbox`: WeChat's own paths below it (`/sandbox/connect/oauth2/authorize`, "
        "`/sandbox/sns/oauth2/access_token`, `/sandbox/cgi-bin/stable_token`, …) answer as "
        "WeChat's documented endpoints do, in WeChat's shapes (errcode/errmsg), not in this "
        "service's error shape; `/sandbox/_sandbox/…` holds its controls (users, faults, clock, "
        "the phone that scans QR codes). It is not documented route by route here: see "
        "docs/sandbox.md in the repository. Outside sandbox mode it does not exist.",
    },
    {"name": "js-sdk", "description": "wx.config signatures for an app's pages (JS-SDK)."},
]


REQUEST_ID_PARAMETER: Schema = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": "Your id for this request, kept when it is 1 to 128 of "
    "`A-Z a-z 0-9 . _ : -`; otherwise the service makes one. Sent back on every answer and "
    "carried by every log line of the request.",
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN.pattern}$"},
}
REQUEST_ID_RESPONSE_HEADER: Schema = {
    "description": "The request's id (yours if acceptable, else a new one).",
    "schema": {"type": "string", "minLength": 1},
    "required": True,
}


def rate_limited(qrcode_budget: bool = False) -> Schema:
    if qrcode_budget:
        response = error(
            429,
            "`RATE_LIMITED`: too many requests from this client address to this group of "
            "endpoints (RATE_LIMIT_QRCODE per minute, bursts of RATE_LIMIT_BURST); "
            "`details.field` is `client`, `details.fieldValue` the client address. "
            "`QRCODE_BUDGET_EXHAUSTED`: this instance has made its QRCODE_DAILY_BUDGET "
            "qrcode/create calls today (the day ends at 00:00 Beijing time, as WeChat's "
            "quotas do); stored, reusable tickets are still served. `details.field` is "
            "`QRCODE_DAILY_BUDGET`, `details.fieldValue` the budget; Retry-After runs to the "
            "reset.",
            "RATE_LIMITED",
            "QRCODE_BUDGET_EXHAUSTED",
            details={"properties": {"field": {"enum": ["client", "QRCODE_DAILY_BUDGET"]}}},
        )
    else:
        response = error(
            429,
            "Too many requests from this client address to this group of endpoints "
            "(RATE_LIMIT_AUTHORIZE, RATE_LIMIT_JWT, RATE_LIMIT_QRCODE per minute, bursts of "
            "RATE_LIMIT_BURST). `details.fieldValue` is the client address.",
            "RATE_LIMITED",
            details={"properties": {"field": {"const": "client"}}},
        )
    response["headers"] = {
        "Retry-After": {
            "description": "Seconds until the next request is accepted.",
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
        }
    }
    return response


def build_openapi(public_url: str, routes: Iterable[web.AbstractRoute]) -> dict[str, Any]:
    """The document of the documented `routes` (an app's router); `public_url` is its server."""
    paths: dict[str, Schema] = {}
    schemas: dict[str, Schema] = {"Error": ERROR_SCHEMA}
    for route in routes:
        operation = operation_of(route)
        if operation is None or route.method == "HEAD" or route.resource is None:
            continue
        template = route.resource.canonical
        item = paths.setdefault(template, {})
        document = operation.document()
        responses = document["responses"]
        if template in ROUTE_GROUPS:
            responses["429"] = rate_limited(operation.qrcode_budget)
        for response in responses.values():
            if "$ref" not in response:
                response.setdefault("headers", {})[REQUEST_ID_HEADER] = REQUEST_ID_RESPONSE_HEADER
        document["responses"] = dict(sorted(responses.items()))
        item[route.method.lower()] = document
        # Inline: Swagger UI 5 does not resolve a path-level $ref to components/parameters.
        item["parameters"] = [REQUEST_ID_PARAMETER]
        schemas.update(operation.schemas)
    internal_error = error(
        500,
        "An unexpected error; the id appears in the service's log beside the traceback, which "
        "is never sent.",
        "INTERNAL_ERROR",
    )
    internal_error["headers"] = {REQUEST_ID_HEADER: REQUEST_ID_RESPONSE_HEADER}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": _version(),
            "summary": "Sign users in through a WeChat Official Account.",
            "description": "WeChat web authorization (OAuth2) run for your app, which gets its "
            "own JWT; QR-code sign-in for desktops; follow checks; WeChat's pushed messages; "
            "token upkeep. Every error of every route has one JSON shape, "
            "`#/components/schemas/Error`. In sandbox mode (SANDBOX=1) an offline WeChat emulator "
            "is mounted at `/sandbox`; it is not documented here route by route (see the sandbox "
            "tag and docs/sandbox.md). A request line or header over 64 KiB is refused by the "
            "HTTP server itself with a plain-text 400, before the service sees it.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": public_url, "description": "PUBLIC_URL"}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"InternalError": internal_error},
            "securitySchemes": {
                "bearerJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The app JWT from /wechat/jwt (or a confirmed QR sign-in), "
                    "as `Authorization: Bearer <token>`.",
                },
                "adminKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Admin-Key",
                    "description": "ADMIN_KEY; the status endpoint and permanent QR codes are "
                    "disabled while it is unset.",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "A key of API_KEYS (the team's other backends); the shared "
                    "access_token is disabled while API_KEYS is unset.",
                },
            },
        },
    }


class ApiDocument:
    """An app's document, built on first request and served as the same text after."""

    def __init__(self, public_url: str, router: web.UrlDispatcher) -> None:
        self._public_url = public_url
        self._router = router

    @functools.cached_property
    def text(self) -> str:
        return json.dumps(
            build_openapi(self._public_url, self._router.routes()), ensure_ascii=False
        )
