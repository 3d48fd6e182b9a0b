"""Failures the emulator can be told to produce, so tests see how the service copes with them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KINDS = ("busy", "errcode", "http_error", "slow")


@dataclass
class Fault:
    kind: str
    paths: frozenset[str] | None  # None: every WeChat API path
    remaining: int | None  # None: until cleared
    delay: float
    status: int
    errcode: int | None  # busy and errcode faults: the errcode answered

    def matches(self, path: str) -> bool:
        return self.paths is None or path in self.paths

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "paths": sorted(self.paths) if self.paths is not None else None,
            "count": self.remaining,
            "delay": self.delay,
            "status": self.status,
            "errcode": self.errcode,
        }


class Faults:
    """Active faults, first match wins; each answer a fault causes uses up one of its count.

    busy:       WeChat's errcode -1 "system error", the documented "system busy, retry later".
    errcode:    `{"errcode": N, "errmsg": WeChat's errmsg for N}`, e.g. 40164 (IP not in the
                whitelist), 45009 (daily quota), 40001 (token superseded elsewhere), -1.
    http_error: an HTTP error status (default 500) with no JSON body.
    slow:       the answer comes after `delay` seconds (the call is still carried out).
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def set(
        self,
        kind: str,
        *,
        paths: Iterable[str] | None = None,
        count: int | None = None,
        delay: float = 0.0,
        status: int = 500,
        errcode: int | None = None,
    ) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if kind == "errcode":
            if isinstance(errcode, bool) or not isinstance(errcode, int) or errcode == 0:
                raise ValueError("errcode must be a non-zero integer for an errcode fault")
        elif errcode is not None:
            raise ValueError("errcode is only for kind errcode")
        if kind == "busy":
            errcode = -1
        if count is not None and count < 1:
            raise ValueError("count must be a positive integer, or absent for 'until cleared'")
        if not 0 <= delay <= 120:
            raise ValueError("delay must be between 0 and 120 seconds")
        if kind == "slow" and delay == 0:
            raise ValueError("delay must be above 0 for a slow fault")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        normalized = None if paths is None else frozenset(p.strip("/") for p in paths)
        fault = Fault(kind, normalized, count, delay, status, errcode)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def take(self, path: str) -> Fault | None:
        """The fault to apply to this call of `path`, if any, counting it as used."""
        for fault in self._faults:
            if fault.matches(path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def as_json(self) -> list[dict[str, Any]]:
        return [fault.as_json() for fault in self._faults]
