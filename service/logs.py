"""Logging: one JSON line per event (or readable text for `make run`), a request id on each.

Query strings are never logged: WeChat's code and state, and in sandbox mode the AppSecret,
travel in them. Tokens are never passed to a logger in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from aiohttp.web_urldispatcher import AbstractResource, DynamicResource
from multidict import istr

from service.pipeline.routing import is_unmatched
from service.randomness import random_bytes

# An istr, as aiohttp.hdrs' names: a case-insensitive header look-up then skips folding it.
REQUEST_ID_HEADER = istr("X-Request-ID")
# An incoming id is kept only if it is short and plain, so it cannot forge log lines.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The route a request was answered for although the router matched none: a CORS preflight,
# which the service's layer answers for a route without an OPTIONS handler (pipeline/cors.py).
ANSWERED_ROUTE_KEY = web.RequestKey("answered_route", AbstractResource)

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Fields an access line carries besides the message (JSON keys).
ACCESS_FIELDS = ("method", "path", "route", "status", "latency_ms", "remote")


def new_request_id(incoming: str | None) -> str:
    if incoming and REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    # 128 random bits in hex, as uuid4().hex but without building a UUID on every request.
    return random_bytes().hex()


def begin_request(request: web.Request) -> tuple[str, Token[str]]:
    """Honour the caller's X-Request-ID (or make one) and log this request's lines with it;
    service.pipeline.layer sends it back and resets the log context with the token."""
    request_id = new_request_id(request.headers.get(REQUEST_ID_HEADER))
    return request_id, request_id_var.set(request_id)


def _resource(request: BaseRequest) -> AbstractResource | None:
    try:
        resource: AbstractResource | None = request.match_info.route.resource  # type: ignore[attr-defined]
    except (AttributeError, AssertionError):  # a request refused before routing
        return None
    return request.get(ANSWERED_ROUTE_KEY) if is_unmatched(resource) else resource


def route_of(request: BaseRequest) -> str:
    """The route's pattern (/wechat/qrcode/login/{scene}), not the path, so ids stay out."""
    resource = _resource(request)
    return resource.canonical if resource is not None else "unmatched"


def logged_path(request: BaseRequest) -> str:
    """What an access line names as the path.

    For a route with variable parts, its pattern: a part may be a bearer capability (the
    QR sign-in scene: whoever holds it receives that sign-in's JWT), and log readers must not
    be able to take it. Otherwise the path as sent (percent-encoded, without the query), kept
    for debugging unrouted requests: it cannot carry a newline that would forge a log line,
    nor the codes and tokens query strings carry."""
    resource = _resource(request)
    if isinstance(resource, DynamicResource):
        return resource.canonical
    return request.rel_url.raw_path


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path (a route's pattern if it has variable parts) without
    its query, route, status, latency, id."""

    @property
    def enabled(self) -> bool:
        # aiohttp skips the call (and its formatting) when the line would be dropped.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        latency_ms = round(time * 1000, 1)
        path = logged_path(request)
        self.logger.info(
            "%s %s %s %.1fms",
            request.method,
            path,
            response.status,
            latency_ms,
            extra={
                # The layer's answers carry it; aiohttp's own (a 400 before routing) do not.
                "request_id": response.headers.get(REQUEST_ID_HEADER, "-"),
                "method": request.method,
                "path": path,
                "route": route_of(request),
                "status": response.status,
                "latency_ms": latency_ms,
                "remote": request.remote,
            },
        )


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request being handled (or '-')."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


QUERY_STRING = re.compile(r"\?[^\s\"'<>]*")


class QueryRedactingFilter(logging.Filter):
    """aiohttp's own errors about unparseable requests quote the request line, query and all;
    the query (code, state, tokens) is replaced before the record is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("aiohttp") and record.name != "aiohttp.access":
            record.msg = QUERY_STRING.sub("?…", record.getMessage())
            record.args = ()
            if record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = QUERY_STRING.sub("?…", text)
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(QueryRedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # APScheduler logs every job run at INFO; our jobs log what they did themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
