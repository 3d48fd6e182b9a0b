"""The Prometheus registry: requests, WeChat calls, the state of the tokens, and the process.

Each app has its own registry (several instances run side by side in tests). Token gauges
are set at scrape time (service/ops/metrics.py) from the store, so every instance reports
the shared truth.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from service.logs import route_of

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Clients may send any of HTTP's dozens of methods (WebDAV's PROPFIND, MKCOL, …, or any token
# with aiohttp's pure-Python parser); one series each would let them grow every scrape.
METHOD_LABELS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_* (CPU, memory, open files, start time; read from /proc on Linux) and
        # python_info, as prometheus_client's default registry has them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route pattern, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer, by route pattern and method",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.wechat_calls = Counter(
            "wechat_api_calls_total",
            "Calls to WeChat's API, by endpoint and errcode (0 = success; 'http', 'timeout', "
            "'unreachable' when no errcode came back)",
            ("account", "endpoint", "errcode"),
            registry=self.registry,
        )
        self.wechat_latency = Histogram(
            "wechat_api_call_duration_seconds",
            "Seconds each call to WeChat's API took, answered or not, by account and endpoint",
            ("account", "endpoint"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.token_refresh_failures = Counter(
            "wechat_token_refresh_failures_total",
            "Failed renewals, by account and token kind (base, jsapi_ticket, web)",
            ("account", "kind"),
            registry=self.registry,
        )
        self.base_token_remaining = Gauge(
            "wechat_base_token_remaining_seconds",
            "Seconds the stored base access_token has left (0 when none is valid), by account",
            ("account",),
            registry=self.registry,
        )
        self.jsapi_ticket_remaining = Gauge(
            "wechat_jsapi_ticket_remaining_seconds",
            "Seconds the stored JS-SDK jsapi_ticket has left (0 when none is valid), by account",
            ("account",),
            registry=self.registry,
        )
        self.lease_held = Gauge(
            "wechat_base_token_lease_held",
            "1 if this instance holds the account's base-token lease now",
            ("account",),
            registry=self.registry,
        )
        self.web_tokens = Gauge(
            "wechat_web_tokens",
            "Stored users' web tokens, by account and state",
            ("account", "state"),
            registry=self.registry,
        )
        self.push_unreadable = Counter(
            "wechat_push_unreadable_total",
            "Encrypted pushes whose msg_signature matched but whose ciphertext did not decrypt "
            "to a message for this account (a wrong WECHAT_AES_KEY, or someone probing)",
            registry=self.registry,
        )
        self.qrcode_budget_remaining = Gauge(
            "wechat_qrcode_budget_remaining",
            "qrcode/create calls this instance may still make today (QRCODE_DAILY_BUDGET, "
            "reset at 00:00 Beijing time), by account",
            ("account",),
            registry=self.registry,
        )
        self.shared_token_handouts = Counter(
            "shared_access_token_handouts_total",
            "Base access_tokens handed to other backends (/wechat/access_token), by account and "
            "API key name",
            ("account", "key"),
            registry=self.registry,
        )
        # (route, method, status) -> the counter's and the histogram's children: looking them
        # up by labels takes a lock and builds a tuple, twice a request.
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def request_done(self, request: web.BaseRequest, status: int, seconds: float) -> None:
        method = request.method if request.method in METHOD_LABELS else "OTHER"
        key = (route_of(request), method, status)
        series = self._request_series.get(key)
        if series is None:
            route = key[0]
            series = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def wechat_call(self, account: str, endpoint: str, outcome: int | str, seconds: float) -> None:
        self.wechat_calls.labels(account, endpoint, str(outcome)).inc()
        self.wechat_latency.labels(account, endpoint).observe(seconds)

    def shared_token_handout(self, account: str, key_name: str) -> None:
        self.shared_token_handouts.labels(account, key_name).inc()
