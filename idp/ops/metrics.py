"""Prometheus metrics.

Under ``idp serve`` with several workers, each worker writes its figures to
``PROMETHEUS_MULTIPROC_DIR`` (``idp serve`` sets one up) and ``/metrics`` adds
them up; a single process keeps them in memory.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LOGIN_REQUESTS = Counter(
    "idp_login_requests",
    "Login requests by outcome: created, then scanned, approved, denied, expired, completed.",
    ["outcome"],
)
OPEN_WEBSOCKETS = Gauge(
    "idp_open_websockets",
    "Authorize pages waiting on a WebSocket.",
    multiprocess_mode="livesum",
)
APPROVE_TO_NOTIFY = Histogram(
    "idp_approve_to_notify_seconds",
    "From the phone's decision committed to the waiting page's WebSocket message.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
TOKEN_REQUESTS = Counter(
    "idp_token_requests",
    "Token endpoint requests by grant type and result (success or the OAuth error code).",
    ["grant_type", "result"],
)
HTTP_REQUESTS = Counter(
    "idp_http_requests",
    "HTTP requests by route and status code.",
    ["route", "status"],
)
HTTP_DURATION = Histogram(
    "idp_http_request_duration_seconds",
    "Time to answer an HTTP request (a WebSocket counts until it closes), by route.",
    ["route"],
)

#: Grant types reported as themselves; anything else is "other" (bounded labels).
GRANT_TYPES = {
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:openid:params:grant-type:ciba",
}


def exposition() -> tuple[bytes, str]:
    """The metrics page: every worker's figures when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
