"""Abuse limits (Flask-Limiter): per IP address, per device, and per account password.

- Per browser IP address, one budget for ``/authorize`` and the page's own calls
  (renewing the code, asking for a short code): ``IDP_LIMIT_BROWSER``.
- Per IP address on enrollment (a password check): ``IDP_LIMIT_ENROLL``; and on the
  rest of the phone API, before the proof is checked: ``IDP_LIMIT_PHONE_IP``.
- Per enrolled device, after its proof is checked, one budget for scanning,
  approving and denying: ``IDP_LIMIT_DEVICE``.
- Per username, wrong passwords at enrollment: ``IDP_LIMIT_PASSWORD``. Once used up,
  enrollment for that username is refused even with the right password until the
  window has passed (a lockout); the per-IP limit slows guessing before that.

Every limit answers 429 ``too_many_requests`` with ``Retry-After``. Counters live in
``IDP_RATELIMIT_STORAGE_URL``: by default the Redis of ``IDP_BROKER_URL`` when there
is one (so that every worker shares them), else this process's memory. If Redis is
unreachable, or stops answering (every call is bounded by ``IDP_REDIS_TIMEOUT``),
each process falls back to its own memory counters: limits stay on, and sign-in
keeps working; Flask-Limiter looks at Redis again now and then, and goes back to it.
The requests already waiting on Redis when it failed pass uncounted (no 500).

A ``Limiter`` is made per app, and limits are attached to the app's registered view
functions, so that several apps in one process (as in the tests) never share counters.
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from idp.errors import RateLimited, render_error
from idp.realtime.broker import bounded_redis_options

#: endpoint -> (setting, scope): limits keyed by the client's IP address. Endpoints of
#: one scope share one budget.
PER_IP = {
    "qrlogin.authorize": ("IDP_LIMIT_BROWSER", "browser"),
    "qrlogin.renew": ("IDP_LIMIT_BROWSER", "browser"),
    "qrlogin.short_code": ("IDP_LIMIT_BROWSER", "browser"),
    "mobile.enroll": ("IDP_LIMIT_ENROLL", "enroll"),
    "mobile.whoami": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.my_devices": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.revoke_my_device": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.scan": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.approve": ("IDP_LIMIT_PHONE_IP", "phone"),
    "mobile.deny": ("IDP_LIMIT_PHONE_IP", "phone"),
}


def init_app(app: Flask) -> None:
    """Make this app's limiter and attach its limits to the registered views."""
    config = app.config
    storage = config["IDP_RATELIMIT_STORAGE_URL"]
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage,
        # Without a timeout a frozen Redis holds each request for ever, and the fallback
        # below (which needs a call to fail) never starts.
        storage_options=bounded_redis_options(config["IDP_REDIS_TIMEOUT"])
        if storage.startswith(("redis://", "rediss://", "unix://"))
        else {},
        strategy="moving-window",
        key_prefix=config["IDP_RATELIMIT_PREFIX"],
        in_memory_fallback_enabled=True,
        # The fallback starts with the first call that fails; calls already waiting on
        # Redis then fail too, and would answer 500. Those few are let through uncounted
        # (and logged) instead; every later request counts in memory.
        swallow_errors=True,
        headers_enabled=False,
        enabled=config["IDP_RATELIMIT_ENABLED"],
    )
    app.extensions["idp.limiter"] = limiter
    views = app.view_functions
    for endpoint, (setting, scope) in PER_IP.items():
        views[endpoint] = limiter.shared_limit(config[setting], scope=scope)(views[endpoint])
    views["mobile.enroll"] = limiter.limit(
        config["IDP_LIMIT_PASSWORD"],
        key_func=_username,
        scope="password",
        deduct_when=lambda response: bool(g.get("idp_wrong_password")),
    )(views["mobile.enroll"])

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        reset_at = current.reset_at if current else time.time() + 60
        retry_after = max(1, int(reset_at - time.time()) + 1)
        if _scope_of(error) == "password":
            description = "too many wrong passwords for this user: wait, then try again"
        else:
            description = f"too many requests ({error.description}): wait, then try again"
        return render_error(RateLimited(description, retry_after=retry_after))


def charge_device(device_id: str) -> None:
    """Count one phone action (scan, approve, deny) against this device's budget; when it
    is used up Flask-Limiter raises ``RateLimitExceeded``, answered as 429 above."""
    limiter: Limiter = current_app.extensions["idp.limiter"]
    budget = limiter.shared_limit(
        current_app.config["IDP_LIMIT_DEVICE"], scope="device", key_func=lambda: device_id
    )
    with budget:  # Flask-Limiter checks (and counts) a limit used as a context manager
        pass


def note_wrong_password() -> None:
    """Count this request's wrong password against its username (see ``IDP_LIMIT_PASSWORD``)."""
    g.idp_wrong_password = True


def _username() -> str:
    body = request.get_json(silent=True, force=True) if request.get_data(cache=True) else None
    username = body.get("username") if isinstance(body, dict) else None
    return username if isinstance(username, str) and len(username) <= 150 else ""


def _scope_of(error: RateLimitExceeded) -> str:
    return str(getattr(error.limit, "scope", "") or "")
