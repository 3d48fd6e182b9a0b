"""Query parameters, declared once: the same declaration reads the request and documents it.

A declaration names the parameter and its rule (a pattern, a set of choices, a range of whole
numbers, a length). `read()` enforces exactly that rule and `document()` states it in the
OpenAPI document, so the two cannot drift. What depends on more than one parameter, on the
settings or on the store (an allowed origin, a scene's range for its QR type) stays with the
area's logic.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from service.errors import InvalidParameter, MissingParameter, ServiceError

# Every parameter's hard ceiling: the server's line limit leaves room for several at this size.
MAX_PARAM_LENGTH = 4096
# Leading zeros are allowed ("007"), up to this many digits in all.
MAX_DIGITS = 10
# How much of an over-long value an error echoes.
ECHOED_PREFIX = 64

Schema = dict[str, Any]
# How a broken rule is answered: the exception class, built with (message, field=, value=).
ErrorClass = Callable[..., ServiceError]


@dataclass(frozen=True)
class Param(abc.ABC):
    """What every query parameter shares: its name, its description, whether it is required."""

    name: str
    description: str = ""
    required: bool = False
    # The answer when a required parameter is absent or empty.
    missing_message: str = ""
    # Some values are never echoed in an error (a PKCE verifier): the error says None.
    echo: bool = True

    def raw(self, request: web.Request) -> str | None:
        """The one value given, or None; repeated or oversized ones are refused, not guessed at."""
        values = request.query.getall(self.name, [])
        if not values:
            self._absent(None)
            return None
        if len(values) > 1:
            raise InvalidParameter(
                f"{self.name} was given more than once",
                field=self.name,
                value=values if self.echo else None,
            )
        value = values[0]
        if len(value) > MAX_PARAM_LENGTH:
            raise InvalidParameter(
                f"{self.name} is longer than {MAX_PARAM_LENGTH} characters",
                field=self.name,
                value=value[:ECHOED_PREFIX] if self.echo else None,
            )
        if not value:
            self._absent(value)
            return None
        return value

    def _absent(self, value: str | None) -> None:
        """A required parameter may not be absent (or empty); others may."""
        if self.required:
            message = self.missing_message or f"{self.name} is required"
            raise MissingParameter(message, field=self.name, value=value)

    @abc.abstractmethod
    def schema(self) -> Schema:
        """The JSON schema of the value, as the rule reads it."""

    def document(self) -> Schema:
        """This parameter as an OpenAPI parameter object."""
        parameter: Schema = {
            "name": self.name,
            "in": "query",
            "required": self.required,
            "schema": self.schema(),
        }
        if self.description:
            parameter["description"] = self.description
        return parameter

    def described(self, description: str, **changes: Any) -> Self:
        """The same rule, described for another route."""
        return dataclasses.replace(self, description=description, **changes)


@dataclass(frozen=True)
class Text(Param):
    """Free text, optionally held to a pattern (matched whole) and a shorter length."""

    pattern: re.Pattern[str] | None = None
    max_length: int = MAX_PARAM_LENGTH
    min_length: int = 0
    # A broken pattern or length: this class, with this message (default: InvalidParameter).
    error: ErrorClass = InvalidParameter
    invalid_message: str = ""
    # Documentation only: OpenAPI's format and an example value.
    format: str = ""
    example: str = ""

    def read(self, request: web.Request) -> str | None:
        value = self.raw(request)
        if value is None:
            return None
        too_long = len(value) > self.max_length
        if too_long and self.pattern is None and not self.invalid_message:
            raise InvalidParameter(
                f"{self.name} is longer than {self.max_length} characters",
                field=self.name,
                value=value,
            )
        if too_long or (self.pattern is not None and not self.pattern.fullmatch(value)):
            raise self.error(
                self.invalid_message or f"{self.name} has an unexpected form",
                field=self.name,
                value=value if self.echo else None,
            )
        return value

    def value(self, request: web.Request) -> str:
        """read() of a required parameter: never None."""
        value = self.read(request)
        assert value is not None, f"{self.name} is declared required"
        return value

    def schema(self) -> Schema:
        schema: Schema = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.pattern is not None:
            schema["pattern"] = f"^{self.pattern.pattern}$"
        if self.format:
            schema["format"] = self.format
        if self.example:
            schema["example"] = self.example
        return schema


@dataclass(frozen=True)
class Choice(Param):
    """One of a few words; absent or empty means the default."""

    choices: tuple[str, ...] = ()
    default: str | None = None
    invalid_message: str = ""

    def read(self, request: web.Request) -> str | None:
        value = self.raw(request)
        if value is None:
            return self.default
        if value not in self.choices:
            message = self.invalid_message or (
                f"{self.name} must be one of {', '.join(self.choices)}"
            )
            raise InvalidParameter(message, field=self.name, value=value)
        return value

    def value(self, request: web.Request) -> str:
        """read() of a choice with a default: never None."""
        value = self.read(request)
        assert value is not None, f"{self.name} is declared with a default"
        return value

    def schema(self) -> Schema:
        schema: Schema = {"type": "string", "enum": list(self.choices)}
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Whole(Param):
    """A whole number in ASCII digits, from `low` to `high`; absent or empty means the default."""

    low: int = 0
    high: int = 0
    default: int | None = None
    invalid_message: str = ""

    def read(self, request: web.Request) -> int | None:
        value = self.raw(request)
        if value is None:
            return self.default
        # ASCII only: str.isdigit() also takes "²" and other scripts' digits, which int() refuses
        # or reads differently. The length bound keeps int() from parsing a huge number.
        if not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS) or not (
            self.low <= int(value) <= self.high
        ):
            message = self.invalid_message or (
                f"{self.name} must be a whole number from {self.low} to {self.high}"
            )
            raise InvalidParameter(message, field=self.name, value=value)
        return int(value)

    def value(self, request: web.Request) -> int:
        """read() of a number with a default: never None."""
        value = self.read(request)
        assert value is not None, f"{self.name} is declared with a default"
        return value

    def schema(self) -> Schema:
        # Query values are text: the service reads whole numbers written in digits.
        schema: Schema = {"type": "integer", "minimum": self.low, "maximum": self.high}
        if self.default is not None:
            schema["default"] = self.default
        return schema
