"""Per-client-IP rate limits on the endpoints that create state or spend WeChat's quota.

A token bucket per (client IP, route group): `per_minute` tokens a minute, up to `burst` at
once. Buckets live in this instance's memory (bounded, least recently used evicted first), so
with N instances behind a load balancer a client gets up to N times the limit; that still stops
one client from filling MongoDB with states or WeChat's quota with QR codes. A client is an IPv4
address or an IPv6 /64 (see client_ip).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from service.clock import Clock
from service.errors import ServiceError

MAX_BUCKETS = 100_000

# Route patterns (as registered) and the group whose limit they share.
ROUTE_GROUPS = {
    "/wechat/authorize": "authorize",
    "/wechat/authorize/retry": "authorize",
    "/wechat/login": "authorize",
    "/wechat/jwt": "jwt",
    # Answered from the kept ticket, but the first call with none stored fetches it.
    "/wechat/jssdk/config": "authorize",
    "/wechat/qrcode": "qrcode",
    "/wechat/qrcode/login": "qrcode",
    "/wechat/qrcode/login/{scene}": "qrcode",
    # OpenID Connect: authorize stores a request per call, as /wechat/authorize stores a state;
    # the callback and the token endpoint spend WeChat's code exchange or check secrets.
    "/oidc/authorize": "authorize",
    "/oidc/callback": "jwt",
    "/oidc/token": "jwt",
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

    def limits(self, group: str) -> bool:
        """Whether the group is limited at all (a rate of 0 turns its limit off)."""
        return group in self._limits

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
) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# An unparsable X-Forwarded-For entry still names a bucket, but not an unbounded one.
MAX_RAW_CLIENT = 64


def client_ip(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The client's bucket: the peer's address, or, when the peer is a trusted proxy, the
    nearest untrusted address in X-Forwarded-For (the leftmost entries are whatever the client
    chose to send). IPv6 clients are keyed by their /64: one subscriber usually holds a whole
    /64, so per-address buckets would hand an attacker 2^64 of them."""
    remote = request.remote or "unknown"
    if not trusted:
        # The hot path: an IPv4 peer (no colon) is its own key, without parsing.
        return remote if ":" not in remote else _bucket(parse_address(remote), remote)
    peer = parse_address(remote)
    if peer is None or not _is_trusted(peer, trusted):
        return _bucket(peer, remote)
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if not hop:
            continue
        address = parse_address(hop)
        if address is None:
            # Cannot say whether it is one of ours, so it is the client, as written.
            return hop[:MAX_RAW_CLIENT]
        if not _is_trusted(address, trusted):
            return _bucket(address, hop)
    return _bucket(peer, remote)


def parse_address(text: str) -> Address | None:
    """An address as proxies write it in X-Forwarded-For: `203.0.113.7`, `203.0.113.7:4711`,
    `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`; None if it is none of these.
    An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, a dual-stack socket's view of an IPv4
    client) is that IPv4 address, so one client cannot use both forms for two buckets."""
    host = text.strip()
    if host.startswith("["):
        host, bracket, port = host[1:].partition("]")
        if not bracket or (
            port and not (port[0] == ":" and port[1:].isascii() and port[1:].isdecimal())
        ):
            return None
    elif host.count(":") == 1:  # IPv4 and a port; an IPv6 address has at least two colons
        host, _, port = host.partition(":")
        if not (port.isascii() and port.isdecimal()):
            return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _bucket(address: Address | None, written: str) -> str:
    if address is None:
        return written[:MAX_RAW_CLIENT]
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    # The network part only (a zone such as %eth0 dropped with the interface id).
    return f"{ipaddress.IPv6Address(int(address) >> 64 << 64)}/64"


def _is_trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address in network for network in trusted)
