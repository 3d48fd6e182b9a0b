"""Per-client-IP rate limits on the endpoints that create state or spend WeChat's quota.

A token bucket per (client IP, route group): `per_minute` tokens a minute, up to `burst` at
once. Buckets live in this instance's memory (bounded, least recently used evicted first), so
with N instances behind a load balancer a client gets up to N times the limit; that still stops
one client from filling MongoDB with states or WeChat's quota with QR codes.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from . import keys
from .clock import Clock
from .errors import ServiceError

MAX_BUCKETS = 100_000

# Route patterns (as registered) and the group whose limit they share.
ROUTE_GROUPS = {
    "/wechat/authorize": "authorize",
    "/wechat/authorize/retry": "authorize",
    "/wechat/login": "authorize",
    "/wechat/jwt": "jwt",
    "/wechat/qrcode": "qrcode",
    "/wechat/qrcode/login": "qrcode",
    "/wechat/qrcode/login/{scene}": "qrcode",
}


class RateLimited(ServiceError):
    status = 429
    name = "RATE_LIMITED"


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Limit:
    per_minute: int
    burst: int


class RateLimiter:
    def __init__(self, limits: dict[str, Limit], clock: Clock) -> None:
        self._limits = {group: limit for group, limit in limits.items() if limit.per_minute > 0}
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def check(self, group: str, client: str) -> None:
        """Take one token, or raise RateLimited saying when the next one comes."""
        limit = self._limits.get(group)
        if limit is None:
            return
        now = self._clock.now()
        rate = limit.per_minute / 60.0
        key = (group, client)
        bucket = self._buckets.pop(key, None) or _Bucket(float(limit.burst), now)
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            retry_after = max(1, math.ceil((1 - bucket.tokens) / rate))
            raise RateLimited(
                f"too many requests to {group} endpoints from this address; "
                f"retry in {retry_after} s",
                field="client",
                value=client,
                headers={"Retry-After": str(retry_after)},
            )
        bucket.tokens -= 1


def parse_networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def client_ip(
    request: web.Request, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> str:
    """The peer's address, or, when the peer is a trusted proxy, the nearest untrusted address
    in X-Forwarded-For (the leftmost entries are whatever the client chose to send)."""
    remote = request.remote or "unknown"
    if not trusted or not _is_trusted(remote, trusted):
        return remote
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted(hop, trusted):
            return hop
    return remote


def _is_trusted(address: str, trusted: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def check_rate_limit(request: web.Request) -> None:
    """Spend one of the client's tokens if the route is limited; RateLimited if none is left."""
    route = request.match_info.route.resource
    group = ROUTE_GROUPS.get(route.canonical) if route is not None else None
    if group is not None:
        app = request.app
        app[keys.RATE_LIMITER].check(group, client_ip(request, app[keys.TRUSTED_PROXIES]))
