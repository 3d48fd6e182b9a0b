"""The Prometheus registry: requests, WeChat calls, the state of the tokens, and the process.

Each app has its own registry (several instances run side by side in tests). Token gauges
are set at scrape time (service/ops/metrics.py) from the store, so every instance reports
the shared truth.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample

from service.logs import route_of

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Clients may send any of HTTP's dozens of methods (WebDAV's PROPFIND, MKCOL, …, or any token
# with aiohttp's pure-Python parser); one series each would let them grow every scrape.
METHOD_LABELS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class _Series:
    __slots__ = ("buckets", "created", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.created = time.time()


class RequestSeries:
    """http_requests_total and http_request_duration_seconds, counted without
    prometheus_client's per-child lock: two lock round trips and label look-ups a request were
    3.6% of an authorize's server time (py-spy). Only the event loop's thread counts (the
    service's layer), and a scrape reads plain numbers: at worst it sees one request in the counter
    a moment before the histogram's sum, which the next scrape settles.

    The exposition is the one Counter and Histogram produced: the same names, labels and
    buckets, and their `_created` samples."""

    def __init__(self) -> None:
        # (route, method, status) -> buckets (not cumulative) and the sum of seconds
        self._series: dict[tuple[str, str, int], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        # A bucket's bound is inclusive (le): the first bound >= seconds.
        series.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series.sum += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "http_requests_total",
            "HTTP requests answered, by route pattern, method and status",
            labels=("route", "method", "status"),
        )
        latency = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time to answer, by route pattern and method",
            labels=("route", "method"),
        )
        by_route: dict[tuple[str, str], tuple[list[int], float, float]] = {}
        for (route, method, status), series in list(self._series.items()):
            buckets = list(series.buckets)
            requests.add_metric((route, method, str(status)), sum(buckets), created=series.created)
            merged, total, created = by_route.get(
                (route, method), ([0] * len(buckets), 0.0, series.created)
            )
            by_route[(route, method)] = (
                [a + b for a, b in zip(merged, buckets, strict=True)],
                total + series.sum,
                min(created, series.created),
            )
        bounds = [*(_bound(b) for b in LATENCY_BUCKETS), "+Inf"]
        for (route, method), (counts, total, created) in by_route.items():
            cumulative, running = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric((route, method), cumulative, total)
            # HistogramMetricFamily takes no creation time; Histogram writes one.
            latency.samples.append(
                Sample(
                    "http_request_duration_seconds_created",
                    {"route": route, "method": method},
                    created,
                )
            )
        yield requests
        yield latency


def _bound(value: float) -> str:
    # As prometheus_client writes a bucket's le: floatToGoString (0.005, 1.0, 30.0).
    return repr(float(value))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_* (CPU, memory, open files, start time; read from /proc on Linux) and
        # python_info, as prometheus_client's default registry has them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = RequestSeries()
        self.registry.register(self.requests)
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

    def request_done(
        self, request: web.BaseRequest, status: int, seconds: float, pattern: str | None = None
    ) -> None:
        """`pattern`: the matched route's, when the caller has it (else read from the request:
        a preflight's answered route, or "unmatched")."""
        method = request.method if request.method in METHOD_LABELS else "OTHER"
        self.requests.observe(pattern or route_of(request), method, status, seconds)

    def wechat_call(self, account: str, endpoint: str, outcome: int | str, seconds: float) -> None:
        self.wechat_calls.labels(account, endpoint, str(outcome)).inc()
        self.wechat_latency.labels(account, endpoint).observe(seconds)

    def shared_token_handout(self, account: str, key_name: str) -> None:
        self.shared_token_handouts.labels(account, key_name).inc()
