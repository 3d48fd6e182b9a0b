"""The one error shape, the exceptions that produce it, and how they are rendered."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from service.logs import logged_path
from service.randomness import random_bytes

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every error a client may see. Subclasses fix status and name."""

    status = 500
    name = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        value: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.headers = headers or {}


class BadRequest(ServiceError):
    status = 400
    name = "BAD_REQUEST"


class MissingParameter(BadRequest):
    name = "MISSING_PARAMETER"


class InvalidParameter(BadRequest):
    name = "INVALID_PARAMETER"


class OriginNotAllowed(BadRequest):
    name = "ORIGIN_NOT_ALLOWED"


class InvalidState(BadRequest):
    name = "INVALID_STATE"


class InvalidCode(BadRequest):
    name = "INVALID_CODE"


class InvalidCodeVerifier(BadRequest):
    """PKCE (RFC 7636): the codeVerifier does not match the state's codeChallenge, is missing,
    or was sent for a state started without one. One answer for all, and the state is kept."""

    name = "INVALID_CODE_VERIFIER"


class CodeChallengeRequired(BadRequest):
    """STATE_BINDING=required: every authorization must be bound with PKCE."""

    name = "CODE_CHALLENGE_REQUIRED"


class StateNotBound(BadRequest):
    """The state was started by /wechat/login in another browser (no or another cookie)."""

    name = "STATE_NOT_BOUND"


class Unauthorized(ServiceError):
    status = 401
    name = "UNAUTHORIZED"


class Forbidden(ServiceError):
    status = 403
    name = "FORBIDDEN"


class InvalidSignature(Forbidden):
    name = "INVALID_SIGNATURE"


class SnapshotUser(Forbidden):
    """WeChat's snapshot page (快照页) gave a virtual account, not the person (wechat-api.md §1)."""

    name = "SNAPSHOT_USER"


class UserNotLinked(ServiceError):
    """The person has no record in the account asked about that their unionid links to."""

    status = 404
    name = "USER_NOT_LINKED"


class NotReady(ServiceError):
    status = 503
    name = "NOT_READY"


class QrCodeBudgetExhausted(ServiceError):
    """This instance made QRCODE_DAILY_BUDGET qrcode/create calls today (Beijing time)."""

    status = 429
    name = "QRCODE_BUDGET_EXHAUSTED"


class UpstreamError(ServiceError):
    """WeChat answered with an error the client cannot fix by changing its input."""

    status = 502
    name = "WECHAT_ERROR"


class UpstreamUnavailable(ServiceError):
    status = 502
    name = "WECHAT_UNAVAILABLE"


class UpstreamTimeout(ServiceError):
    status = 504
    name = "WECHAT_TIMEOUT"


def error_id() -> str:
    """A random (version 4) UUID as text, as str(uuid.uuid4()) but without building a UUID:
    every authorize answers an error (its 401), and building one was 4% of its server time.
    The version and variant are set on the hex digits, not the bytes (0.78 → 0.62 µs)."""
    text = random_bytes().hex()
    # Digit 12 is the version (4); digit 16's top two bits are the RFC 4122 variant (10).
    return (
        f"{text[:8]}-{text[8:12]}-4{text[13:16]}-"
        f"{_VARIANT_DIGIT[text[16]]}{text[17:20]}-{text[20:]}"
    )


# A hex digit with its top two bits set to 10, as uuid4 sets byte 8's.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


def error_body(
    status: int,
    name: str,
    message: str,
    field: str = "",
    value: Any = None,
    answer_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": answer_id or error_id(),
        "status": status,
        "name": name,
        "message": message,
        "details": {"field": field, "fieldValue": value},
    }


_json_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str, in C


def dumps_error(body: dict[str, Any]) -> str:
    """json.dumps(body) for the one error shape, the same text, without the encoder's set-up
    per call: authorize answers every request with an error (its 401), and json.dumps was 5%
    of its server time (py-spy). Only fieldValue may be other than a string."""
    details = body["details"]
    return _error_text(
        body["id"],
        body["status"],
        body["name"],
        body["message"],
        details["field"],
        details["fieldValue"],
    )


def _error_text(error_id: str, status: int, name: str, message: str, field: str, value: Any) -> str:
    encoded_value = _json_string(value) if type(value) is str else json.dumps(value)
    return _error_text_encoded(error_id, status, name, message, field, encoded_value)


def _error_text_encoded(
    error_id: str, status: int, name: str, message: str, field: str, encoded_value: str
) -> str:
    frame = _error_frame(status, name, message, field)
    return _json_string(error_id).join(frame) + encoded_value + "}}"


@functools.lru_cache(maxsize=64)
def _error_frame(status: int, name: str, message: str, field: str) -> tuple[str, str]:
    """The text before and after the id, up to the value: the same for every answer of one
    kind (authorize's 401), so encoded once. A message that quotes the request only misses."""
    return (
        '{"id": ',
        f', "status": {int(status)}, "name": {_json_string(name)}, '
        f'"message": {_json_string(message)}, "details": {{"field": {_json_string(field)}, '
        '"fieldValue": ',
    )


JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def json_error_response(
    text: str, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The answer with `text` (ASCII: JSON's encoder escapes the rest) as its body. Bytes and
    a Content-Type header written out: aiohttp's text= and content_type= parse and rebuild
    the header, a third of building the answer (0.45 of 1.86 µs, and authorize answers
    every request with an error)."""
    return web.Response(
        body=text.encode("ascii"),
        status=status,
        headers={**headers, hdrs.CONTENT_TYPE: JSON_CONTENT_TYPE}
        if headers
        else {hdrs.CONTENT_TYPE: JSON_CONTENT_TYPE},
    )


def error_json_response(
    body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_error_response(dumps_error(body), body["status"], headers)


def _http_name(exc: web.HTTPException) -> str:
    return exc.reason.upper().replace(" ", "_").replace("-", "_") or "HTTP_ERROR"


# A field name as logged: names of parameters, headers and cookies. Anything else (the emulator
# names a JSON body's unknown members) is left out, so no request can write into a log line.
_LOGGABLE_FIELD = re.compile(r"[A-Za-z0-9_.:\- ]{1,64}")


def log_error_answer(
    request: web.BaseRequest, body: dict[str, Any], exc: BaseException | None = None
) -> None:
    """The log line of an error answer: status, name, id (what a page shows as "Reference"),
    method, path as access lines name it, and the field at fault:

        error 400 INVALID_STATE id=5b0e…-… on GET /wechat/jwt field=state.usedAt

    4xx at INFO, 5xx at WARNING, an unexpected exception (500) at ERROR with its traceback.
    Never the message or the value: they may quote what the request carried (a state, a code,
    a URL)."""
    status = body["status"]
    field = body["details"]["field"]
    level = logging.INFO if status < 500 else logging.WARNING
    if exc is not None:
        level = logging.ERROR
    if not log.isEnabledFor(level):
        return  # the line's arguments (the path as logged) are not even built
    log.log(
        level,
        "error %s %s id=%s on %s %s%s",
        status,
        body["name"],
        body["id"],
        request.method,
        logged_path(request),
        f" field={field}" if field and _LOGGABLE_FIELD.fullmatch(field) else "",
        exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
    )


def error_answer(
    request: web.BaseRequest,
    status: int,
    name: str,
    message: str,
    field: str = "",
    value: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    encoded_value: str | None = None,
) -> web.Response:
    """The one-shape answer and its log line, for a handler that answers an error rather than
    raising it (authorize's 401: an exception per request cost it a traceback). The body's
    dict is built only for the log line, when it is written. `encoded_value`: the value
    already as JSON text, for a caller that encodes it cheaper (`value` is then not read)."""
    answer_id = error_id()
    if log.isEnabledFor(logging.INFO if status < 500 else logging.WARNING):
        # The line never shows the value.
        log_error_answer(request, error_body(status, name, message, field, None, answer_id))
    text = (
        _error_text(answer_id, status, name, message, field, value)
        if encoded_value is None
        else _error_text_encoded(answer_id, status, name, message, field, encoded_value)
    )
    return json_error_response(text, status, headers)


def response_for(request: web.BaseRequest, exc: Exception) -> web.Response:
    """The one-shape answer to an exception a handler raised, and its log line; redirects
    (HTTPException below 400) are re-raised for aiohttp to send. Unknown errors are logged
    with their traceback, never sent."""
    if isinstance(exc, ServiceError):
        return error_answer(
            request, exc.status, exc.name, exc.message, exc.field, exc.value, exc.headers
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        field, value = "", None
        if exc.status in (404, 405):
            field, value = "path", request.path
        message = exc.reason
        if exc.status == 405:
            message = f"{request.method} is not allowed here"
        elif exc.status == 413:
            message = exc.text or "request body too large"
        return error_answer(request, exc.status, _http_name(exc), message, field, value, headers)
    body = error_body(500, "INTERNAL_ERROR", "internal error; quote the id when reporting it")
    # The id ties the client's answer to the traceback in our logs; the path as access lines
    # name it (a route's pattern), so a crash on a capability URL does not log the capability.
    log_error_answer(request, body, exc)
    return error_json_response(body)


def error_layer(handler: Handler) -> Handler:
    """The error shape alone (a layer of service.pipeline.routing), for the emulator served
    alone and the metrics listener (the service's own requests get it from
    service.pipeline.layer, with the request id, rate limits and metrics)."""

    async def in_error_layer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return response_for(request, exc)

    return in_error_layer
