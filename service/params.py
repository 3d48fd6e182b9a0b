"""Query-parameter helpers shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from service.errors import InvalidParameter

MAX_PARAM_LENGTH = 4096


def query(request: web.Request, name: str) -> str | None:
    """One query parameter; repeated or oversized ones are refused rather than guessed at."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameter(f"{name} was given more than once", field=name, value=values)
    value = values[0]
    if len(value) > MAX_PARAM_LENGTH:
        raise InvalidParameter(
            f"{name} is longer than {MAX_PARAM_LENGTH} characters", field=name, value=value[:64]
        )
    return value
